"""`python -m gpt2course serve`: the course's GPT-2 behind MAX's OpenAI-compatible server.

One server for the whole file (module fixture), started through the course's own command
on 127.0.0.1 and a free port with the seeded "small" checkpoint, offline. The first start
compiles the model inside MAX's worker (minutes on a loaded CPU; MAX caches it on disk), so
the fixture waits up to SERVER_START_S and shows the server's log when it gives up.

The checks: /v1/models names the model; greedy completions are Hugging Face's greedy tokens;
streaming gives the same text; four concurrent requests are each right; bad requests get a
4xx with a message and the server goes on answering; SIGTERM to the command stops the server
and every process it started. No timings are asserted (bench/bench_serve.py measures them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gpt2course import cli, course
from gpt2course.hf import checkpoints, reference, tokenizer
from gpt2course.serve import command as serve_command
from gpt2course.serve.folder import SETTINGS_FILE, read_settings, servable_folder
from gpt2course.skeleton import open_todos
from gpt2course.state import read_text

SERVER_START_S = 1800  # a cold compile on a busy 2-core machine took 18 minutes once
NAME = "gpt2-test"
N_NEW = 16
PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog."]
CONTEXT = checkpoints.CONFIGS["small"]["n_positions"]

MISSING = serve_command.serve_extra_missing()
needs_serve = pytest.mark.skipif(
    MISSING is not None,
    reason=f"`max serve` needs MAX's serving extra (pip install 'max[serve]'); {MISSING} is not "
           "importable here")


# --------------------------------------------------------------------------- without a server

def test_serve_is_a_command_and_a_task():
    assert "gpt2course.serve.command" in cli.COMMAND_MODULES
    assert "serve" in course.TASKS
    assert course.command("serve", args="--port 8001") == \
        "`make serve ARGS='--port 8001'` (pixi run serve --port 8001)"


def test_servable_folder_links_the_checkpoint_and_adds_a_tokenizer(tmp_path):
    src = checkpoints.seeded_checkpoint("small")
    before = sorted(p.name for p in src.iterdir())
    folder = servable_folder(src, model="steps", cache=tmp_path)
    assert sorted(p.name for p in src.iterdir()) == before, "the checkpoint folder was modified"
    assert folder.is_relative_to(tmp_path)
    for name in ("config.json", "model.safetensors"):
        assert (folder / name).resolve() == (src / name).resolve()
    assert (folder / "tokenizer.json").exists() and not (folder / "tokenizer.json").is_symlink()
    assert read_settings(folder) == {"model": "steps", "target": "steps", "checkpoint": str(src),
                                     "dtype": "fp32"}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok("Hello world").input_ids == tokenizer.encode("Hello world") == [15496, 995]
    # again, for the other model: the same checkpoint, another folder; writing twice is fine
    again = servable_folder(src, model="solutions", cache=tmp_path)
    assert again != folder and read_settings(again)["model"] == "solutions"
    assert servable_folder(src, model="solutions", cache=tmp_path) == again
    # int8 weights (make serve --dtype int8): a folder of its own, saying so
    int8 = servable_folder(src, model="solutions", cache=tmp_path, dtype="int8")
    assert int8 not in (folder, again) and read_settings(int8)["dtype"] == "int8"
    # a checkpoint with its own tokenizer files: those are linked, not replaced
    own = tmp_path / "own"
    own.mkdir()
    for name in ("config.json", "model.safetensors"):
        (own / name).symlink_to(src / name)
    tokenizer.load().save_pretrained(str(own))
    linked = servable_folder(own, cache=tmp_path)
    assert (linked / "tokenizer.json").resolve() == (own / "tokenizer.json").resolve()
    assert json.loads((linked / SETTINGS_FILE).read_text())["model"] == "solutions"


@needs_serve
def test_serve_steps_is_gated_like_gpt2_steps():
    """--model steps runs only when the learner's steps 10-12 pass (run/gate.py), as gpt2's."""
    if not any(open_todos(read_text(course.step_file(n)) or "", n) for n in (10, 11, 12)):
        pytest.skip("steps/step_10-12.py are filled in here; the refusal needs an open TODO")
    out = subprocess.run([sys.executable, "-m", "gpt2course", "serve", "--model", "steps",
                          "--weights", "seeded-small", "--port", str(free_port())],
                         cwd=course.ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "--model steps needs your steps 10-12 to pass" in out.stderr
    assert "starting MAX's server" not in out.stderr


@needs_serve
def test_serve_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = subprocess.run([sys.executable, "-m", "gpt2course", "serve", "--weights",
                              "seeded-small", "--port", str(taken.getsockname()[1])],
                             cwd=course.ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr
    assert "is in use" in out.stderr and "starting MAX's server" not in out.stderr


# --------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path
    folder: Path  # the seeded checkpoint Hugging Face reads

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.base, api_key="none", max_retries=0, timeout=300)

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def post(self, body: bytes, path: str = "/completions") -> tuple[int, str]:
        req = urllib.request.Request(self.base + path, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    proc.poll()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if MISSING is not None:
        pytest.skip(f"`max serve` needs MAX's serving extra; {MISSING} is not importable here")
    pytest.importorskip("openai", reason="the tests talk to the server with the openai package")
    pytest.importorskip("psutil", reason="the SIGTERM test looks for leftover processes with psutil")
    folder = checkpoints.seeded_checkpoint("small")
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, MAX_SERVE_DISABLE_TELEMETRY="1", OTEL_SDK_DISABLED="true",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpt2course", "serve", "--weights", "seeded-small",
             "--host", "127.0.0.1", "--port", str(port), "--name", NAME],
            cwd=course.ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    srv = Server(proc, port, log, folder)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not serve_command.is_ready("127.0.0.1", port):
            if proc.poll() is not None:
                pytest.fail(f"the serve command exited with {proc.returncode} before the server "
                            f"was ready; its log:\n{srv.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer on port {port} after {SERVER_START_S}s; the log:\n"
                            f"{srv.log_tail()}")
            time.sleep(2)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pass
        _kill_tree(proc)


def hf_greedy_text(folder: Path, prompt: str, n: int = N_NEW) -> str:
    """Hugging Face's greedy tokens as a server writes them: MAX's detokenizer releases text
    once it decodes, so a last token that ends inside a multi-byte character (a seeded model
    picks byte tokens) is held back, not sent as U+FFFD."""
    ids = np.asarray([tokenizer.encode(prompt)], dtype=np.int64)
    out = reference.hf_generate_greedy(folder, ids, n)
    return tokenizer.decode(out[0, ids.shape[1]:]).rstrip("\ufffd")


def complete(srv: Server, prompt: str, n: int = N_NEW, **kw):
    # ignore_eos: exactly n tokens, as HF's min_new_tokens=n (a seeded model may pick EOS)
    return srv.client().completions.create(model=NAME, prompt=prompt, max_tokens=n,
                                           temperature=0, extra_body={"ignore_eos": True}, **kw)


@needs_serve
def test_models_lists_the_model(server):
    assert [m.id for m in server.client().models.list().data] == [NAME]


@needs_serve
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_completion_is_hugging_faces(server, prompt):
    r = complete(server, prompt)
    assert r.usage.completion_tokens == N_NEW
    assert r.usage.prompt_tokens == len(tokenizer.encode(prompt))
    assert r.choices[0].text == hf_greedy_text(server.folder, prompt)


@needs_serve
def test_streaming_gives_the_same_text(server):
    chunks = [ev.choices[0].text for ev in complete(server, PROMPTS[1], stream=True)
              if ev.choices and ev.choices[0].text]
    assert len(chunks) > 1, "the answer came in one piece: not streamed"
    assert "".join(chunks) == hf_greedy_text(server.folder, PROMPTS[1])


@needs_serve
def test_four_concurrent_requests_are_each_right(server):
    prompts = [*PROMPTS, "Once upon a time", PROMPTS[0]]
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda p: complete(server, p).choices[0].text, prompts))
    assert texts == [hf_greedy_text(server.folder, p) for p in prompts]


@needs_serve
@pytest.mark.parametrize("case", ["prompt past the context", "max_tokens negative",
                                  "unknown model", "malformed JSON"])
def test_bad_request_gets_a_4xx_with_a_message(server, case):
    body = {"prompt past the context": {"model": NAME, "prompt": "hello " * (CONTEXT + 50),
                                        "max_tokens": 4},
            "max_tokens negative": {"model": NAME, "prompt": "hi", "max_tokens": -5},
            "unknown model": {"model": "no-such-model", "prompt": "hi", "max_tokens": 4},
            "malformed JSON": None}[case]
    raw = b'{"model": "gpt2", "prompt": ' if body is None else json.dumps(body).encode()
    status, text = server.post(raw)
    assert 400 <= status < 500, (status, text)
    detail = json.loads(text)
    assert str(detail.get("detail") or detail.get("message") or detail.get("error")).strip(), text
    # and the server goes on answering
    assert complete(server, PROMPTS[0], n=4).choices[0].text == \
        hf_greedy_text(server.folder, PROMPTS[0], 4)


@needs_serve
def test_absurd_max_tokens_is_capped_at_the_context(server):
    """MAX 26.7 does not refuse max_tokens past the context: it answers 200 and stops at the
    context's end with finish_reason "length" (bench/README.md and the book say so)."""
    prompt_ids = tokenizer.encode(PROMPTS[0])
    r = complete(server, PROMPTS[0], n=10**9)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == CONTEXT - len(prompt_ids)


@needs_serve
def test_sigterm_stops_the_server_and_every_process_it_started(server):
    """Last in the file: it stops the module's server."""
    import psutil

    leader = psutil.Process(server.proc.pid)
    started = leader.children(recursive=True)
    assert len(started) >= 2, f"expected max serve and its model worker, found {started}"
    groups = {p.pid: os.getpgid(p.pid) for p in started}
    server.proc.send_signal(signal.SIGTERM)
    rc = server.proc.wait(timeout=300)
    assert rc == 0, server.log_tail()
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after SIGTERM: {left}\n{server.log_tail()}"
    for pgid in set(groups.values()):
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    assert "no process of the server is left" in server.log.read_text()
    assert not serve_command.is_ready("127.0.0.1", server.port)


def test_a_settings_file_with_an_unknown_dtype_is_refused(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"model": "solutions", "dtype": "int3"}))
    with pytest.raises(ValueError, match="dtype 'int3' is not one of"):
        read_settings(tmp_path)


def test_dtype_serves_the_reference_model_only(capsys):
    assert cli.main(["serve", "--model", "steps", "--dtype", "int8", "--weights", "seeded-small"]) == 2
    assert "--dtype int8 serves the reference model only" in capsys.readouterr().err
