"""`eval` (gpt2course/evaluate/): a dataset through Hugging Face's ``datasets`` from a fake Hub, the
course's perplexity equal to Hugging Face's on the same stream, for the reference model and for a
learner's step files, and one clear line for what cannot be evaluated.

The Hub is tests/hubserver.py on 127.0.0.1 serving a small dataset repository under WikiText's
real id (Salesforce/wikitext: a README whose YAML names the configs, a parquet file per config),
the layout ``datasets.load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1")`` reads. Nothing
leaves the machine: the command runs in a new process (huggingface_hub and datasets read
HF_ENDPOINT when imported) under tests/netguard.py, which refuses any other host and logs it. MAX runs only on the seeded "small" checkpoint,
compiled for [batch, seq]: the graph harness.solution_model compiles for step 12's check.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from hubserver import HubServer  # noqa: E402

from gpt2course import cli, course  # noqa: E402
from gpt2course.evaluate import texts  # noqa: E402
from gpt2course.hf import checkpoints, reference, tokenizer  # noqa: E402
from gpt2course.hf import perplexity as hfppl  # noqa: E402

REPO = "Salesforce/wikitext"
WINDOW, STRIDE = 64, 32
README = b"""---
configs:
- config_name: wikitext-2-raw-v1
  data_files:
  - split: test
    path: wikitext-2-raw-v1/test-*
- config_name: wikitext-103-raw-v1
  data_files:
  - split: test
    path: wikitext-103-raw-v1/test-*
---
# WikiText (a few rows, for tests)
"""


def rows() -> list[str]:
    """WikiText-like rows (empty lines, headings) cut from the text the course ships."""
    paragraphs = [p for p in texts.SHIPPED.read_text().split("\n\n") if p.strip()][:6]
    return ["", " = The Declaration = \n", ""] + [f" {p.strip()} \n" for p in paragraphs]


def parquet(column: list[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": column}), buf)
    return buf.getvalue()


@pytest.fixture
def wikitext_hub():
    """The fake Hub serving Salesforce/wikitext."""
    server = HubServer({})
    server.add_dataset(REPO, {"README.md": README,
                              "wikitext-2-raw-v1/test-00000-of-00001.parquet": parquet(rows()),
                              "wikitext-103-raw-v1/test-00000-of-00001.parquet": parquet(["unused"])})
    with server:
        yield server


def guarded_eval(tmp_path, server: HubServer, *args, offline: bool = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``eval`` in a new process whose Hub is ``server`` (HF_ENDPOINT, read at import), with its
    own empty caches, and netguard refusing any other host: (the process, what it refused)."""
    refused = tmp_path / "refused.log"
    refused.unlink(missing_ok=True)
    argv = ["eval", "--weights", "seeded-small", "--window", str(WINDOW), "--stride", str(STRIDE), "--quiet", *args]
    code = ("import sys; sys.path.insert(0, %r); import netguard; netguard.install(%r); "
            "from gpt2course import cli; sys.exit(cli.main(%r))" % (str(TESTS), str(refused), argv))
    env = dict(os.environ, PYTHONPATH=str(course.ROOT), HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf"),
               HF_DATASETS_CACHE=str(tmp_path / "datasets"), HF_HUB_DISABLE_TELEMETRY="1",
               # datasets pings a download counter on S3 (config.S3_DATASETS_BUCKET_PREFIX) unless told not to
               HF_UPDATE_DOWNLOAD_COUNTS="0")
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        env.pop(key, None)
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=course.ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    return proc, refused.read_text().split() if refused.exists() else []


def printed(out: str, label: str) -> float:
    m = re.search(rf"^{re.escape(label)}\s*([\d,.]+)", out, re.M)
    assert m, f"no {label!r} line in:\n{out}"
    return float(m.group(1).replace(",", ""))


def hf_reference(text: str) -> float:
    """Hugging Face's sliding-window perplexity of ``text`` with the seeded small checkpoint."""
    stream = np.asarray(tokenizer.encode(text), dtype=np.int64)
    folder = checkpoints.seeded_checkpoint("small")
    return hfppl.hf_sliding_window(reference.hf_model(str(folder)), stream, WINDOW, STRIDE).perplexity


def test_wikitext_from_the_hub_equals_hugging_face(wikitext_hub, tmp_path):
    """make eval --dataset wikitext-2: datasets fetches it from the (fake) Hub into its cache; the
    course's perplexity equals Hugging Face's on the same stream; a second run (online, then offline)
    reads the datasets cache and asks for nothing."""
    proc, refused = guarded_eval(tmp_path, wikitext_hub, "--dataset", "wikitext-2", "--compare-hf")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = printed(proc.stdout, "perplexity per token:")
    theirs = hf_reference("\n\n".join(rows()))  # the stream as Hugging Face's guide joins WikiText
    assert abs(ours - theirs) / theirs < 1e-4, (ours, theirs)
    assert abs(printed(proc.stdout, "Hugging Face, same stream and windows:") - theirs) / theirs < 1e-6
    assert "GPT-2 paper (" not in proc.stdout and "GPT-2 paper: no figure for these weights" in proc.stdout
    gets = [p for m, p in wikitext_hub.requests if m == "GET" and p.endswith(".parquet")]
    assert len(gets) == 1 and gets[0].endswith("/wikitext-2-raw-v1/test-00000-of-00001.parquet"), gets
    # The dataset viewer (datasets-server.<the endpoint's host>) is the one other host datasets
    # asks, for dataset infos it does without: refused here, never reached.
    assert all(host.startswith("datasets-server.") for host in refused), refused
    before = len(wikitext_hub.requests)
    again, refused = guarded_eval(tmp_path, wikitext_hub, "--dataset", "wikitext-2")  # online, cached
    assert again.returncode == 0, again.stderr[-3000:]
    assert printed(again.stdout, "perplexity per token:") == ours
    assert len(wikitext_hub.requests) == before and not refused, (wikitext_hub.requests[before:], refused)
    offline, refused = guarded_eval(tmp_path, wikitext_hub, "--dataset", "wikitext-2", offline=True)
    assert offline.returncode == 0 and printed(offline.stdout, "perplexity per token:") == ours, offline.stderr
    assert len(wikitext_hub.requests) == before and not refused


def run_eval(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["eval", "--weights", "seeded-small", "--window", str(WINDOW), "--stride", str(STRIDE),
                     "--quiet", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_learners_step_files(tmp_path, capsys):
    """--model steps with a folder of step files (copies of the solutions: the same graph, no new
    compile) passes the gate (steps 11 and 14) and equals Hugging Face's perplexity."""
    for n in (11, 14):
        shutil.copy(course.solution_file(n), tmp_path / f"step_{n:02d}.py")
    text = tmp_path / "notes.txt"
    text.write_text(texts.SHIPPED.read_text()[:1500])
    code, out, err = run_eval(capsys, "--model", "steps", "--target", str(tmp_path), "--text", str(text))
    assert code == 0, err
    assert "yours" in out
    ours = printed(out, "perplexity per token:")
    theirs = hf_reference(text.read_text())
    assert abs(ours - theirs) / theirs < 1e-4, (ours, theirs)


def cli_eval(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m gpt2course eval`` as make runs it (a new process: what a learner sees)."""
    base = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                             "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    return subprocess.run([sys.executable, "-m", "gpt2course", "eval", "--weights", "seeded-small", *args],
                          cwd=course.ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(base, PYTHONPATH=str(course.ROOT), **(env or {})))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_offline_without_the_dataset_says_what_to_run(tmp_path):
    """Offline with an empty datasets cache: one line, naming the text that ships with the course."""
    proc = cli_eval("--dataset", "wikitext-2", env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                                    "HF_HOME": str(tmp_path / "hf"),
                                                    "HF_DATASETS_CACHE": str(tmp_path / "ds")})
    line = one_line_error(proc)
    assert "offline" in line and "not in the datasets cache" in line, line
    assert course.command("eval", args=["--dataset", "declaration"]) in line, line


def test_no_answer_from_the_hub_is_one_line_in_seconds(tmp_path):
    """No network (an endpoint where nothing listens), not offline by setting: one short request
    fails, and one line says so and names the shipped text (not a minute of retries)."""
    from hubserver import free_port

    proc = cli_eval("--dataset", "wikitext-2", env={"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                                    "HF_HOME": str(tmp_path / "hf"), "HF_UPDATE_DOWNLOAD_COUNTS": "0",
                                                    "HF_DATASETS_CACHE": str(tmp_path / "ds")})
    line = one_line_error(proc)
    assert "did not answer" in line and "not in the datasets cache" in line, line
    assert course.command("eval", args=["--dataset", "declaration"]) in line, line
    assert "Retrying" not in proc.stderr, proc.stderr


def test_bad_dataset_name_and_empty_text(tmp_path):
    """An unknown dataset name, an empty text file, a missing file: one clear line each, before any compile."""
    line = one_line_error(cli_eval("--dataset", "wikitxt-2"))
    assert "not a dataset the course knows" in line and "wikitext-2" in line, line
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    assert "the text is empty" in one_line_error(cli_eval("--text", str(empty)))
    assert "no such file" in one_line_error(cli_eval("--text", str(tmp_path / "nope.txt")))


def test_paper_figure_only_for_the_papers_models():
    from gpt2course.evaluate import paper

    assert paper.figure("gpt2", "wikitext-2") == ("117M", 29.41)
    assert paper.figure("gpt2", "lambada") == ("117M", 35.13)
    assert paper.figure("gpt2", "ptb") == ("117M", 65.85)
    assert paper.figure("gpt2", "wikitext-103") == ("117M", 37.50)
    assert paper.figure("gpt2-xl", "wikitext-2") == ("1542M", 18.34)
    assert paper.figure("distilgpt2", "wikitext-2") is None
    assert paper.figure("gpt2", "declaration") is None
    assert math.isclose(paper.TABLE_3["ptb"][1], 47.33)
