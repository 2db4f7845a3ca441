"""Where `eval`'s text comes from: a dataset by name through Hugging Face's ``datasets`` (into its
standard cache, so the second run is offline), a local text file, or the text the course ships.

Each dataset is one split joined into one stream, as Hugging Face's perplexity guide joins
WikiText ("\\n\\n".join(test["text"])). What fails is said in one line (``TextUnavailable``):
an unknown name, an empty text, a file that is not there, or no network and no cached copy,
naming what to run instead.

Where a dataset lives on the Hub (repo id, config, split, field) is written below; WikiText's
is what Hugging Face's guide loads. The PTB and LAMBADA ids follow the repositories that the
evaluation harnesses read; they could not be reached from the machine this was written on, so
they are the ones to check first if a download fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gpt2course import course

SHIPPED = Path(__file__).resolve().parent / "data" / "declaration_of_independence.txt"


class TextUnavailable(ValueError):
    """The text cannot be had; the message is one line, with what to run instead."""


@dataclass(frozen=True)
class Dataset:
    title: str
    repo: str | None          # None: the text the course ships
    config: str | None = None
    split: str = "test"
    field: str = "text"
    joiner: str = "\n\n"
    revision: str | None = None
    data_files: str | None = None  # a glob inside the repo, when the repo has no config for it


DATASETS: dict[str, Dataset] = {
    "wikitext-2": Dataset("WikiText-2 (test, raw)", "Salesforce/wikitext", "wikitext-2-raw-v1"),
    "wikitext-103": Dataset("WikiText-103 (test, raw; the same test articles as WikiText-2)",
                            "Salesforce/wikitext", "wikitext-103-raw-v1"),
    # The repo's own loading script is refused by datasets 4+; its parquet export is read instead.
    "ptb": Dataset("Penn Treebank (test)", "ptb-text-only/ptb_text_only", split="test", field="sentence",
                   joiner="\n", revision="refs/convert/parquet", data_files="penn_treebank/test/*.parquet"),
    "lambada": Dataset("LAMBADA (test, OpenAI's version)", "EleutherAI/lambada_openai", "default"),
    "declaration": Dataset("the Declaration of Independence (public domain; ships with the course)", None),
}


@dataclass(frozen=True)
class Text:
    text: str
    title: str
    key: str | None  # the DATASETS key (for the paper's table), None for a file

    @property
    def words(self) -> int:
        return len(self.text.split())


def _fallback_hint() -> str:
    return (f"to evaluate offline, {course.command('eval', args=['--dataset', 'declaration'])} scores a "
            "public-domain text the course ships, and --text FILE any text file")


def load(dataset: str | None = None, text_file: str | None = None, *, cache_dir: str | None = None) -> Text:
    """The text to score: ``text_file`` if given, else the dataset named (default wikitext-2)."""
    if text_file is not None:
        path = Path(text_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TextUnavailable(f"--text {text_file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TextUnavailable(f"--text {text_file}: cannot be read as UTF-8 text ({type(exc).__name__})") from None
        return _nonempty(Text(text, str(path), None), f"--text {text_file}")
    key = (dataset or "wikitext-2").lower()
    spec = DATASETS.get(key)
    if spec is None:
        raise TextUnavailable(f"--dataset {dataset}: not a dataset the course knows ({', '.join(DATASETS)}); "
                              "give a text file with --text FILE")
    if spec.repo is None:
        return _nonempty(Text(SHIPPED.read_text(encoding="utf-8"), spec.title, key), f"--dataset {key}")
    return _nonempty(Text(_from_hub(key, spec, cache_dir), spec.title, key), f"--dataset {key}")


def _nonempty(text: Text, what: str) -> Text:
    if not text.text.strip():
        raise TextUnavailable(f"{what}: the text is empty: there is nothing to score")
    return text


def _offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


PROBE_TIMEOUT = 5.0  # seconds for the Hub to answer before a download is tried


def _from_hub(key: str, spec: Dataset, cache_dir: str | None) -> str:
    """The split's texts joined: from the datasets cache if it is there (no request), else, when
    the Hub answers a short request, downloaded by ``datasets.load_dataset`` into that cache."""
    import datasets

    datasets.logging.set_verbosity_error()
    rows = _load(spec, cache_dir, cache_only=True)
    if rows is None:
        if _offline():
            raise TextUnavailable(f"--dataset {key}: offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set) "
                                  f"and {spec.repo} is not in the datasets cache; run it once with the "
                                  f"network to cache it; {_fallback_hint()}")
        _probe(key, spec)
        rows = _load(spec, cache_dir, cache_only=False, key=key)
    if spec.field not in rows.column_names:
        raise TextUnavailable(f"--dataset {key}: {spec.repo} has no column {spec.field!r} "
                              f"(it has {', '.join(rows.column_names)})")
    return spec.joiner.join(rows[spec.field])


def _probe(key: str, spec: Dataset) -> None:
    """One short request (does the Hub answer, is the dataset there?) before a download, so that
    no network means one line in seconds, not a minute of retries."""
    import datasets.config
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from gpt2course.hf.hub import _network_errors

    where = datasets.config.HF_ENDPOINT
    try:
        HfApi(endpoint=where).dataset_info(spec.repo, timeout=PROBE_TIMEOUT)
    except RepositoryNotFoundError:
        raise TextUnavailable(f"--dataset {key}: {spec.repo} is not on the Hub ({where}); "
                              f"{_fallback_hint()}") from None
    except _network_errors() as exc:
        raise TextUnavailable(f"--dataset {key}: the Hub ({where}) did not answer within {PROBE_TIMEOUT:g} s "
                              f"({type(exc).__name__}) and {spec.repo} is not in the datasets cache; "
                              f"{_fallback_hint()}") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise TextUnavailable(f"--dataset {key}: the Hub ({where}) answered HTTP {status} for {spec.repo}; "
                              f"{_fallback_hint()}") from None


def _load(spec: Dataset, cache_dir: str | None, *, cache_only: bool, key: str = ""):
    """``datasets.load_dataset`` for the spec; with ``cache_only``, the cached copy or None."""
    import datasets
    import datasets.config
    from datasets.exceptions import DatasetNotFoundError

    kwargs = dict(split=spec.split, cache_dir=cache_dir)
    if spec.revision:
        kwargs["revision"] = spec.revision
    if spec.data_files:
        kwargs["data_files"] = {spec.split: spec.data_files}
    was = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = was or cache_only
    try:
        return datasets.load_dataset(spec.repo, spec.config, **kwargs)
    except Exception as exc:
        if cache_only:
            return None
        if isinstance(exc, DatasetNotFoundError):
            raise TextUnavailable(f"--dataset {key}: {spec.repo} is not on the Hub "
                                  f"({str(exc).splitlines()[0][:160]}); {_fallback_hint()}") from None
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            raise TextUnavailable(f"--dataset {key}: the download of {spec.repo} stopped "
                                  f"({type(exc).__name__}); run it again to resume") from None
        if isinstance(exc, ValueError):  # a config or split that is not there
            raise TextUnavailable(f"--dataset {key}: {spec.repo} has no {spec.config or ''} {spec.split} "
                                  f"split ({str(exc).splitlines()[0][:160]})") from None
        raise
    finally:
        datasets.config.HF_HUB_OFFLINE = was
