"""GPT-2 weights by name: ``gpt2``, ``distilgpt2``, ..., any Hub repo id, or a local folder.

``fetch(spec)`` returns a local checkpoint folder (config.json + model.safetensors):

* a local folder is returned as it is;
* a name or repo id is looked up in the standard Hugging Face cache first (no request);
* else, when the Hub answers within ``timeout`` seconds, ``huggingface_hub.snapshot_download``
  fetches only the files the course needs into that cache, with its progress bar (an
  interrupted download resumes where it stopped on the next try);
* else ``HubUnavailable`` (one line: offline, or no answer) so the caller can fall back.

Every file that comes from the Hub is checked before it is used (config.json says GPT-2;
model.safetensors is whole and of a dtype the course runs). A snapshot that fails is
deleted from the cache, blobs included, so a later download starts clean.

Settings come in as parameters (``offline``, ``endpoint``, ``cache_dir``); left at None,
huggingface_hub's own settings apply (HF_HUB_OFFLINE, HF_ENDPOINT, HF_HOME / HF_HUB_CACHE),
with HF_HUB_OFFLINE also read when ``fetch`` is called, not only when huggingface_hub was
imported.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from gpt2course import course
from gpt2course.hf.weights import (CheckpointError, CorruptCheckpoint, check_gpt2_config,
                                check_safetensors, read_config_json)

# The names learners type -> the repo id transformers uses, then older ids it may be cached
# under (transformers once downloaded "gpt2" itself, before the openai-community org).
KNOWN: dict[str, tuple[str, ...]] = {
    "gpt2": ("openai-community/gpt2", "gpt2"),
    "gpt2-medium": ("openai-community/gpt2-medium", "gpt2-medium"),
    "gpt2-large": ("openai-community/gpt2-large", "gpt2-large"),
    "gpt2-xl": ("openai-community/gpt2-xl", "gpt2-xl"),
    "distilgpt2": ("distilbert/distilgpt2", "distilgpt2"),
}
# What the course reads; generation_config.json is small and lets transformers' generate()
# use the checkpoint's own settings when a check runs Hugging Face on the same folder.
COURSE_FILES = ["config.json", "model.safetensors", "generation_config.json"]
REQUIRED_FILES = ("config.json", "model.safetensors")
DEFAULT_TIMEOUT = 5.0  # seconds for the Hub to answer its first request
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class HubError(ValueError):
    """Weights by name that cannot be had (unknown repo, no safetensors, ...): one line."""


class HubUnavailable(HubError):
    """The Hub cannot be asked: ``reason`` is "offline" or "no answer"; the message is one line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    now = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip()
    return now.upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def repo_ids(spec: str) -> tuple[str, ...]:
    """The Hub repo ids a name stands for: the one to download first, then cached aliases."""
    if spec in KNOWN:
        return KNOWN[spec]
    if not _REPO_ID.match(spec) or ".." in spec:
        raise HubError(f"--weights {spec}: not a local folder, a known name ({', '.join(KNOWN)}) "
                       "or a Hub repo id such as openai-community/gpt2")
    return (spec,)


def is_local(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.exists() or spec.startswith(("/", "./", "../", "~", ".\\")) or os.sep in spec and \
        spec.count("/") > 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


# --------------------------------------------------------------------------- checks and cleanup

def verify(folder: str | Path) -> None:
    """Raises CheckpointError (one line) unless the folder is a whole GPT-2 checkpoint."""
    folder = Path(folder)
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: no {name}")
    check_gpt2_config(read_config_json(folder), folder / "config.json")
    check_safetensors(folder / "model.safetensors")


def purge_snapshot(snapshot: str | Path) -> None:
    """Deletes a cached snapshot: its links, the blobs they point to, its tree listing, and
    partial downloads of the repo, so nothing of it is found (or resumed) again."""
    snapshot = Path(snapshot)
    repo_folder = snapshot.parent.parent  # .../models--org--name/snapshots/<commit>
    if snapshot.parent.name != "snapshots" or not repo_folder.name.startswith("models--"):
        raise ValueError(f"{snapshot} is not a snapshot in a Hugging Face cache")
    for entry in snapshot.rglob("*"):
        if entry.is_symlink():
            blob = Path(os.path.realpath(entry))
            if blob.is_file() and repo_folder in blob.parents:
                blob.unlink()
    shutil.rmtree(snapshot, ignore_errors=True)
    (repo_folder / "trees" / f"{snapshot.name}.json").unlink(missing_ok=True)
    for partial in (repo_folder / "blobs").glob("*.incomplete"):
        partial.unlink(missing_ok=True)
    refs = repo_folder / "refs"
    for ref in refs.glob("*") if refs.is_dir() else []:
        if ref.is_file() and ref.read_text().strip() == snapshot.name:
            ref.unlink()


def _verified_or_purged(folder: Path, repo_id: str, *, ours: bool = True) -> Path:
    """``folder`` if it verifies; else it is deleted from the cache and CheckpointError raised.

    A snapshot found in the cache (``ours=False``) that is whole but not one the course runs
    (another model type, an int8 checkpoint) belongs to whoever downloaded it: refused, kept."""
    try:
        verify(folder)
    except CheckpointError as exc:
        if not ours and not isinstance(exc, CorruptCheckpoint):
            raise CheckpointError(f"{repo_id}: {_short(exc, folder)}") from None
        purge_snapshot(folder)
        raise type(exc)(f"{repo_id}: {_short(exc, folder)} (removed from the Hugging Face "
                              "cache; nothing of it is kept)") from None
    return folder


def _short(exc: Exception, folder: Path) -> str:
    """The message without the long snapshot path (the repo id says which checkpoint)."""
    return str(exc).replace(f"{folder}{os.sep}", "").replace(str(folder), "the checkpoint")


# --------------------------------------------------------------------------- the cache

def cached(spec: str, *, cache_dir: str | Path | None = None) -> Path | None:
    """The checkpoint from the local Hugging Face cache (never a request), verified, or None.

    A cached copy that is not whole (an old truncated blob) is removed and None returned; one
    that is whole but not a GPT-2 the course runs raises CheckpointError and is kept."""
    from huggingface_hub import snapshot_download

    for repo_id in repo_ids(spec):
        try:
            path = Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=COURSE_FILES,
                                          cache_dir=str(cache_root(cache_dir))))
        except Exception:
            continue
        if not all((path / name).is_file() for name in REQUIRED_FILES):
            continue
        try:
            return _verified_or_purged(path, repo_id, ours=False)
        except CorruptCheckpoint:
            continue  # removed: a download starts clean
    return None


def local_checkpoint(spec: str, *, cache_dir: str | Path | None = None) -> Path:
    """A checkpoint already on disk (a folder, or a name in the Hugging Face cache), verified;
    never a request. HubError (one line, with the command that fetches it) when it is not there."""
    if is_local(spec):
        verify(spec)
        return Path(spec).expanduser()
    found = cached(spec, cache_dir=cache_dir)
    if found is None:
        raise HubError(f"--weights {spec}: not in the local Hugging Face cache; "
                       f"{course.command('download-gpt2', args=[spec] if spec != 'gpt2' else None)} "
                       "fetches it (the checks never download)")
    return found


# --------------------------------------------------------------------------- fetch

def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import OfflineModeIsEnabled

    errors: list[type[BaseException]] = [OfflineModeIsEnabled, ConnectionError, TimeoutError]
    # huggingface_hub 2.x is built on httpx2, 1.x on httpx; either may also be installed
    # for something else, so both are caught when present.
    for name in ("httpx2", "httpx"):
        try:
            errors.append(__import__(name).TransportError)
        except ImportError:
            pass
    return tuple(errors)


def fetch(spec: str, *, offline: bool | None = None, endpoint: str | None = None,
          cache_dir: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT,
          progress: bool = True) -> Path:
    """A local GPT-2 checkpoint folder for ``spec`` (see the module's docstring).

    Raises HubUnavailable (offline / no answer), HubError (not on the Hub, no
    model.safetensors), CheckpointError (not GPT-2, corrupt, unsupported dtype: the bad
    snapshot is deleted first) or FileNotFoundError (a local path that is not there).
    """
    if is_local(spec):
        path = Path(spec).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"--weights {spec}: no config.json there. Give a Hugging Face GPT-2 checkpoint "
                "folder (config.json + model.safetensors), a name such as gpt2, or a Hub repo id.")
        return path
    ids = repo_ids(spec)
    found = cached(spec, cache_dir=cache_dir)
    if found is not None:
        return found
    repo_id = ids[0]
    if offline is None:
        offline = offline_mode()
    if offline:
        raise HubUnavailable("offline", f"offline (HF_HUB_OFFLINE is set) and {repo_id} is not in "
                             f"the Hugging Face cache ({cache_root(cache_dir)})")
    return _download(repo_id, endpoint=endpoint, cache_dir=cache_dir, timeout=timeout,
                     progress=progress)


def _download(repo_id: str, *, endpoint: str | None, cache_dir: str | Path | None,
              timeout: float, progress: bool) -> Path:
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    where = (endpoint or constants.ENDPOINT).rstrip("/")
    network = _network_errors()
    try:
        # One short request first: does the Hub answer, which commit, which files?
        info = HfApi(endpoint=endpoint).model_info(repo_id, timeout=timeout)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise HubError(f"{repo_id}: no such model on the Hub ({where})") from None
    except network as exc:
        raise HubUnavailable("no answer", f"the Hub ({where}) did not answer within {timeout:g} s "
                             f"({exc.__class__.__name__})") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        if status in (401, 403):
            raise HubError(f"{repo_id}: the Hub refuses it (HTTP {status}: private or gated)") from None
        raise HubUnavailable("no answer", f"the Hub ({where}) answered HTTP {status}") from None
    files = {s.rfilename for s in (info.siblings or [])}
    if files and "model.safetensors" not in files:
        raise HubError(f"{repo_id}: no model.safetensors on the Hub (the course reads safetensors "
                       "only; sharded or .bin checkpoints are not supported)")
    cache = str(cache_root(cache_dir))
    try:
        # config.json alone first: a checkpoint that is not GPT-2 is refused before any weights
        # move. Asked for at "main", so the cache records main -> commit (refs/main), which is
        # what a later lookup without a request needs; the rest comes from that same commit.
        config = Path(hf_hub_download(repo_id, "config.json", revision="main", cache_dir=cache,
                                      endpoint=endpoint, etag_timeout=max(timeout, 10)))
        commit = config.parent.name
        try:
            check_gpt2_config(read_config_json(config.parent), "config.json")
        except CheckpointError as exc:
            purge_snapshot(config.parent)
            raise CheckpointError(f"{repo_id}: {exc}") from None
        with _ProgressBars(progress):
            folder = Path(snapshot_download(repo_id, revision=commit, allow_patterns=COURSE_FILES,
                                            cache_dir=cache, endpoint=endpoint,
                                            etag_timeout=max(timeout, 10)))
    except network as exc:
        raise HubUnavailable("no answer", f"the download from {where} stopped "
                             f"({exc.__class__.__name__}); run it again to resume") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise HubError(f"{repo_id}: no such model on the Hub ({where})") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise HubUnavailable("no answer", f"the download from {where} failed (HTTP {status})") from None
    except OSError as exc:  # huggingface_hub's size check ("Consistency check failed")
        raise HubUnavailable("no answer", f"the download from {where} was cut short "
                             f"({str(exc).splitlines()[0]}); run it again") from None
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            purge_snapshot(folder)
            raise HubError(f"{repo_id}: the Hub sent no {name}")
    return _verified_or_purged(folder, repo_id)


class _ProgressBars:
    """huggingface_hub's progress bars on or off for one download (they are on by default)."""

    def __init__(self, show: bool) -> None:
        self.show = show

    def __enter__(self):
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        self.was_disabled = are_progress_bars_disabled()
        if not self.show:
            disable_progress_bars()
        return self

    def __exit__(self, *exc):
        from huggingface_hub.utils import enable_progress_bars

        if not self.show and not self.was_disabled:
            enable_progress_bars()


# --------------------------------------------------------------------------- `download-gpt2`

def cmd_download(args) -> int:
    name = args.name
    try:
        ids = repo_ids(name) if not is_local(name) else None
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ids is None:
        print(f"error: {name} is a local path; download-gpt2 takes a name such as gpt2 or a Hub "
              "repo id", file=sys.stderr)
        return 2
    settings = settings_from_env()
    found = cached(name, cache_dir=settings["cache_dir"])
    if found is not None:
        print(f"{name}: already in the Hugging Face cache: {found}")
        return 0
    print(f"downloading {ids[0]} ({', '.join(REQUIRED_FILES)}) into the Hugging Face cache "
          f"({cache_root(settings['cache_dir'])}) ...", file=sys.stderr, flush=True)
    try:
        folder = fetch(name, timeout=args.timeout, **settings)
    except (HubError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: {folder}")
    if name == "gpt2":
        print(f"{course.command('gpt2')} now uses it.")
    else:
        print(f"{course.command('gpt2', args=['--weights', name])} runs it.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("download-gpt2", help="download GPT-2 (or another GPT-2 checkpoint) into "
                       "the Hugging Face cache",
                       description="Download a GPT-2 checkpoint (config.json and model.safetensors "
                       "only) into the standard Hugging Face cache, with a progress bar; an "
                       "interrupted download resumes. Later runs use the cached copy offline.")
    p.add_argument("name", nargs="?", default="gpt2",
                   help=f"{', '.join(KNOWN)} or a Hub repo id (default gpt2)")
    p.add_argument("--timeout", type=float, default=15.0,
                   help="seconds to wait for the Hub's first answer (default 15)")
    p.set_defaults(func=cmd_download)


def settings_from_env() -> dict:
    """``offline``, ``endpoint`` and ``cache_dir`` for ``fetch`` from the environment as it is
    now (HF_HUB_OFFLINE, HF_ENDPOINT, HF_HUB_CACHE or HF_HOME), for the commands to pass on."""
    cache = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    return {"offline": offline_mode(), "endpoint": os.environ.get("HF_ENDPOINT") or None,
            "cache_dir": cache}
