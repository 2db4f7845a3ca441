"""Weights by name (gpt2course/hf/hub.py) against a real huggingface_hub client and a fake Hub.

The Hub here is tests/hubserver.py on 127.0.0.1, serving seeded checkpoints under the Hub's
repo ids. Nothing leaves the machine: each test gets its own HF_HOME, huggingface_hub's agent
registry (which it would fetch from huggingface.co) is pre-filled, and a socket guard records
and refuses any connection that is not to 127.0.0.1 (the test fails if one was tried).

Only one test compiles MAX (the end-to-end greedy run, on the "small" checkpoint whose graph
tests/test_run.py also compiles, so MAX's disk cache usually has it); the 6-layer and the wider
checkpoints are checked at the weights level with a NumPy forward pass from the MAX-layout
weights against Hugging Face's logits.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubserver import HubServer, free_port  # noqa: E402

from gpt2course import cli, course  # noqa: E402
from gpt2course.hf import checkpoints, reference, tokenizer, weights  # noqa: E402
from gpt2course.hf import hub  # noqa: E402
from gpt2course.hf.weights import CheckpointError  # noqa: E402

GPT2 = "openai-community/gpt2"
LOCAL = ("127.0.0.1", "::1", "localhost")


# --------------------------------------------------------------------------- isolation

@pytest.fixture
def blocked(monkeypatch):
    """Refuses (and records) every connection and name lookup that is not to this machine."""
    tried: list = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOCAL:
            tried.append(address)
            raise ConnectionRefusedError(f"test_hub: no connection to {address}")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL and host is not None:
            tried.append(host)
            raise socket.gaierror(f"test_hub: no lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield tried
    assert not tried, f"something tried to leave the machine: {tried}"


@pytest.fixture
def hf_home(tmp_path, monkeypatch, blocked):
    """An empty Hugging Face cache of this test's own; online as far as huggingface_hub knows."""
    import huggingface_hub.constants as constants
    import huggingface_hub.utils._detect_agent as detect_agent

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # huggingface_hub read these when it was imported; the server is on this machine, so
    # "online" is safe, and its cache must be this test's.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})
    return home / "hub"


def seeded(tmp_path_factory, name: str, **config) -> Path:
    """A seeded GPT-2 checkpoint folder with the given config (save_pretrained, as the course's)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(5)
    model = GPT2LMHeadModel(GPT2Config(**config))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp(name)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small():
    return checkpoints.seeded_checkpoint("small")


@pytest.fixture(scope="module")
def six_layer(tmp_path_factory):
    """distilgpt2's shape (6 layers; 12 heads of GPT-2 small's width is too slow here): 6 x 48."""
    return seeded(tmp_path_factory, "six", vocab_size=300, n_positions=32, n_embd=48, n_layer=6,
                  n_head=4, initializer_range=0.1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Wider than "small" (96 vs 64), more heads, and an MLP width of its own (n_inner)."""
    return seeded(tmp_path_factory, "wide", vocab_size=300, n_positions=48, n_embd=96, n_layer=2,
                  n_head=6, n_inner=200, initializer_range=0.1)


def fetch(server: HubServer, spec: str, cache: Path, **kw) -> Path:
    return hub.fetch(spec, endpoint=server.url, cache_dir=cache, offline=False, **kw)


def blobs(cache: Path, repo_id: str) -> list[Path]:
    folder = cache / ("models--" + repo_id.replace("/", "--")) / "blobs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- a NumPy GPT-2 (MAX layout)

def numpy_logits(config, w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """GPT-2's forward pass from ``weights.to_max`` weights ([out, in] Linear layout)."""
    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + config.layer_norm_epsilon) * w[p + ".weight"] + w[p + ".bias"]

    def linear(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))

    b, s = ids.shape
    d, nh = config.n_embd, config.n_head
    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:s]
    mask = np.triu(np.full((s, s), -np.inf, dtype=np.float32), 1)
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        q, k, v = np.split(linear(ln(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        q, k, v = (t.reshape(b, s, nh, d // nh).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // nh) + mask
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a = (a / a.sum(-1, keepdims=True)) @ v
        x = x + linear(a.transpose(0, 2, 1, 3).reshape(b, s, d), p + "attn.c_proj")
        x = x + linear(gelu(linear(ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    return ln(x, "transformer.ln_f") @ w["lm_head.weight"].T


def assert_matches_hf(folder: Path) -> None:
    config, state = weights.load_hf_state(folder)
    ids = reference.fixed_input_ids(config.vocab_size, 2, 9)
    ours = numpy_logits(config, weights.to_max(state), ids)
    np.testing.assert_allclose(ours, reference.capture(folder, ids).logits, atol=2e-4, rtol=1e-4)


# --------------------------------------------------------------------------- download, cache, load

def test_names_map_to_the_hub_ids_transformers_uses():
    assert hub.repo_ids("gpt2")[0] == "openai-community/gpt2"
    assert hub.repo_ids("distilgpt2")[0] == "distilbert/distilgpt2"
    assert hub.repo_ids("gpt2-xl")[0] == "openai-community/gpt2-xl"
    assert hub.repo_ids("someone/gpt2-finetuned") == ("someone/gpt2-finetuned",)
    with pytest.raises(hub.HubError, match="not a local folder, a known name"):
        hub.repo_ids("bad name!")


def test_empty_cache_downloads_with_progress_then_runs_greedy_like_hugging_face(
        small, hf_home, monkeypatch, capsys):
    """make gpt2 with an empty cache and a Hub that answers: download (progress bar), cache,
    load, and the run path's greedy tokens are Hugging Face's on the same checkpoint."""
    with HubServer({GPT2: small}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        code = cli.main(["gpt2", "--prompt", "Hello", "--greedy", "--max-new-tokens", "12",
                         "--show-ids"])
        out, err = capsys.readouterr()
        assert code == 0, err
        got = [p for m, p in server.requests if m == "GET" and p.endswith("/model.safetensors")]
        assert len(got) == 1, server.requests
        assert "Fetching" in err  # huggingface_hub's progress bar
        assert "weights: pretrained GPT-2 from the Hugging Face cache" in err
        snapshot = next((hf_home / "models--openai-community--gpt2" / "snapshots").iterdir())
        assert (snapshot / "model.safetensors").read_bytes() == (small / "model.safetensors").read_bytes()
    ours = [int(t) for t in next(line for line in out.splitlines() if line.startswith("ids: ")).split()[1:]]
    prompt = np.array([tokenizer.encode("Hello")], dtype=np.int64)
    theirs = reference.hf_generate_greedy(small, prompt, 12)[0, prompt.shape[1]:].tolist()
    if tokenizer.EOS_TOKEN_ID in theirs:
        theirs = theirs[:theirs.index(tokenizer.EOS_TOKEN_ID) + 1]
    assert ours == theirs


def test_second_run_makes_no_request(small, hf_home):
    with HubServer({GPT2: small}) as server:
        first = checkpoints.resolve_weights(None, endpoint=server.url, cache_dir=hf_home,
                                            offline=False, fallback="small")
        assert first.pretrained and server.count() > 0
        before = server.count()
        again = checkpoints.resolve_weights(None, endpoint=server.url, cache_dir=hf_home,
                                            offline=False, fallback="small")
        by_name = checkpoints.resolve_weights("gpt2", endpoint=server.url, cache_dir=hf_home)
        assert again.path == first.path == by_name.path and again.pretrained
        assert server.count() == before, server.requests[before:]


def test_only_the_files_the_course_needs_are_fetched(small, hf_home):
    files = {p.name: p.read_bytes() for p in small.iterdir()}
    files["pytorch_model.bin"] = b"x" * 1000
    files["README.md"] = b"# a model card"
    with HubServer({GPT2: files}) as server:
        folder = fetch(server, "gpt2", hf_home)
        fetched = {p.rsplit("/", 1)[1] for m, p in server.requests if m == "GET" and "/resolve/" in p}
    assert fetched == {"config.json", "model.safetensors", "generation_config.json"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(fetched)


def test_an_interrupted_download_resumes(small, hf_home):
    """The connection drops halfway through model.safetensors: huggingface_hub resumes it
    (a Range request) and the file that lands is whole."""
    with HubServer({GPT2: small}) as server:
        size = (small / "model.safetensors").stat().st_size
        server.cut_once["model.safetensors"] = size // 3
        folder = fetch(server, "gpt2", hf_home, progress=False)
        gets = [p for m, p in server.requests if m == "GET" and p.endswith("model.safetensors")]
    assert len(gets) == 2  # cut, then resumed
    assert (folder / "model.safetensors").read_bytes() == (small / "model.safetensors").read_bytes()


# --------------------------------------------------------------------------- offline and no answer

def test_server_down_gives_the_one_line_notice_and_the_seeded_fallback(small, hf_home):
    down = f"http://127.0.0.1:{free_port()}"
    w = checkpoints.resolve_weights(None, endpoint=down, cache_dir=hf_home, offline=False,
                                    fallback="small", timeout=2)
    assert not w.pretrained and w.path == small
    assert "\n" not in w.description
    assert w.description.startswith("the Hub did not answer")
    assert f"{course.command('download-gpt2')} fetches GPT-2 later" in w.description
    with pytest.raises(hub.HubUnavailable, match="did not answer") as info:
        hub.fetch("gpt2", endpoint=down, cache_dir=hf_home, offline=False, timeout=2)
    assert info.value.reason == "no answer"


def test_a_server_that_never_answers_times_out_quickly(small, hf_home):
    import time

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        with pytest.raises(hub.HubUnavailable, match="did not answer within 0.5 s"):
            hub.fetch("gpt2", endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}",
                      cache_dir=hf_home, offline=False, timeout=0.5)
        assert time.monotonic() - t0 < 5


def test_hf_hub_offline_gives_the_notice_and_makes_no_request(small, hf_home, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with HubServer({GPT2: small}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        w = checkpoints.resolve_weights(None, fallback="small", **hub.settings_from_env())
        assert not w.pretrained and w.path == small
        assert w.description.startswith("offline: using the seeded random checkpoint")
        assert f"{course.command('download-gpt2')} fetches GPT-2 later" in w.description

        # the command prints it as one line before loading anything
        class Stop(Exception):
            pass

        def stop(*a, **k):
            raise CheckpointError("stopped here by the test")
        monkeypatch.setattr(checkpoints, "seeded_checkpoint", lambda name="small": small)
        monkeypatch.setattr("gpt2course.run.engine.load_engine", stop)
        assert cli.main(["gpt2", "--prompt", "Hello"]) == 2
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if line.startswith("note: offline")]
        assert len(notes) == 1 and f"{course.command('download-gpt2')} fetches GPT-2 later" in notes[0]
        assert server.count() == 0


def test_offline_still_uses_a_cached_copy(small, hf_home):
    with HubServer({GPT2: small}) as server:
        folder = fetch(server, "gpt2", hf_home, progress=False)
    assert hub.fetch("gpt2", offline=True, cache_dir=hf_home) == folder
    w = checkpoints.resolve_weights(None, offline=True, cache_dir=hf_home, fallback="small")
    assert w.pretrained and w.path == folder


def test_a_named_checkpoint_offline_and_not_cached_is_an_error_not_a_fallback(hf_home):
    with pytest.raises(hub.HubUnavailable, match="offline .* distilbert/distilgpt2 is not in"):
        checkpoints.resolve_weights("distilgpt2", offline=True, cache_dir=hf_home)


# --------------------------------------------------------------------------- bad checkpoints leave nothing

def test_a_truncated_file_is_a_clear_error_and_does_not_poison_the_cache(small, hf_home):
    with HubServer({GPT2: small}) as server:
        size = (small / "model.safetensors").stat().st_size
        server.truncate["model.safetensors"] = size - 1000
        with pytest.raises(CheckpointError) as info:
            fetch(server, "gpt2", hf_home, progress=False)
        message = str(info.value)
        assert "\n" not in message
        assert "truncated safetensors file" in message and "removed from the Hugging Face cache" in message
        assert blobs(hf_home, GPT2) == []
        assert hub.cached("gpt2", cache_dir=hf_home) is None
        server.truncate.clear()  # the Hub is fixed: the next download works
        folder = fetch(server, "gpt2", hf_home, progress=False)
    assert (folder / "model.safetensors").read_bytes() == (small / "model.safetensors").read_bytes()
    weights.load_hf_state(folder)


def test_a_corrupt_cached_blob_is_removed_and_fetched_again(small, hf_home):
    with HubServer({GPT2: small}) as server:
        folder = fetch(server, "gpt2", hf_home, progress=False)
        blob = Path(os.path.realpath(folder / "model.safetensors"))
        with open(blob, "r+b") as f:
            f.truncate(blob.stat().st_size // 2)
        assert hub.cached("gpt2", cache_dir=hf_home) is None  # refused and removed
        assert not blob.exists()
        before = server.count()
        again = fetch(server, "gpt2", hf_home, progress=False)
        assert server.count() > before
    assert (again / "model.safetensors").read_bytes() == (small / "model.safetensors").read_bytes()


def test_a_checkpoint_that_is_not_gpt2_is_refused_before_its_weights_move(small, hf_home):
    files = {p.name: p.read_bytes() for p in small.iterdir()}
    config = json.loads(files["config.json"])
    config.update(model_type="llama", architectures=["LlamaForCausalLM"])
    files["config.json"] = json.dumps(config).encode()
    with HubServer({"someone/not-gpt2": files}) as server:
        with pytest.raises(CheckpointError, match=r"someone/not-gpt2: .*not a GPT-2 checkpoint "
                           r"\(model_type 'llama', architectures \['LlamaForCausalLM'\]\)"):
            fetch(server, "someone/not-gpt2", hf_home)
        assert not any(p.endswith("model.safetensors") for _, p in server.requests)
    assert blobs(hf_home, "someone/not-gpt2") == []


def test_an_unsupported_dtype_is_named_and_removed(small, hf_home, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(small / "model.safetensors"))
    name = "transformer.h.0.mlp.c_fc.weight"
    tensors[name] = np.zeros(tensors[name].shape, dtype=np.int8)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    files = {"config.json": (small / "config.json").read_bytes(),
             "model.safetensors": (tmp_path / "model.safetensors").read_bytes()}
    with HubServer({"someone/gpt2-int8": files}) as server:
        with pytest.raises(CheckpointError, match=rf"tensor {name} has dtype int8; the course runs "
                           "float32, float16 and bfloat16"):
            fetch(server, "someone/gpt2-int8", hf_home, progress=False)
        assert blobs(hf_home, "someone/gpt2-int8") == []
        # downloaded by someone else (whole, just not runnable here): refused, and kept
        from huggingface_hub import snapshot_download

        snapshot_download("someone/gpt2-int8", endpoint=server.url, cache_dir=str(hf_home))
    kept = blobs(hf_home, "someone/gpt2-int8")
    with pytest.raises(CheckpointError, match="has dtype int8"):
        hub.fetch("someone/gpt2-int8", offline=True, cache_dir=hf_home)
    assert kept and blobs(hf_home, "someone/gpt2-int8") == kept


def test_a_local_truncated_file_is_one_line_too(small, tmp_path):
    (tmp_path / "config.json").write_bytes((small / "config.json").read_bytes())
    data = (small / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated safetensors file"):
        weights.load_hf_state(tmp_path)


def test_an_unknown_repo_is_named(hf_home, small):
    with HubServer({GPT2: small}) as server:
        with pytest.raises(hub.HubError, match="nobody/nothing: no such model on the Hub"):
            fetch(server, "nobody/nothing", hf_home)


# --------------------------------------------------------------------------- shapes from the checkpoint

def test_a_six_layer_and_a_wider_checkpoint_load_by_name_and_match_hugging_face(
        six_layer, wide, hf_home):
    with HubServer({"distilbert/distilgpt2": six_layer, "openai-community/gpt2-medium": wide}) as server:
        distil = fetch(server, "distilgpt2", hf_home, progress=False)
        medium = fetch(server, "gpt2-medium", hf_home, progress=False)
    config, _ = weights.load_hf_state(distil)
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (6, 48, 4, 32)
    config, _ = weights.load_hf_state(medium)
    assert (config.n_embd, config.n_head, config.inner_dim, config.n_positions) == (96, 6, 200, 48)
    assert_matches_hf(distil)
    assert_matches_hf(medium)


# --------------------------------------------------------------------------- the command

def test_download_gpt2_command(small, hf_home, monkeypatch, capsys):
    with HubServer({GPT2: small}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert cli.main(["download-gpt2"]) == 0
        out, err = capsys.readouterr()
        assert "downloading openai-community/gpt2" in err and str(hf_home) in out
        before = server.count()
        assert cli.main(["download-gpt2", "gpt2"]) == 0
        assert "already in the Hugging Face cache" in capsys.readouterr().out
        assert server.count() == before
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["download-gpt2", "distilgpt2"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: offline")


# --------------------------------------------------------------------------- the lean loader

def test_the_lean_loader_gives_what_load_hf_state_and_to_max_give(six_layer, wide, small):
    for folder in (six_layer, wide, small):
        config, lean = weights.load_max_state(folder)
        _, state = weights.load_hf_state(folder)
        full = weights.to_max(state)
        assert sorted(lean) == sorted(full)
        for key in full:
            assert lean[key].dtype == np.float32 and lean[key].flags.c_contiguous, key
            np.testing.assert_array_equal(lean[key], full[key], err_msg=key)
        assert lean["lm_head.weight"] is lean["transformer.wte.weight"]  # tied: no copy


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_lean_loader_widens_half_precision_as_load_hf_state_does(six_layer, tmp_path, dtype):
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(getattr(torch, dtype)) for k, v in
               load_file(str(six_layer / "model.safetensors")).items()}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_bytes((six_layer / "config.json").read_bytes())
    _, lean = weights.load_max_state(tmp_path)
    full = weights.to_max(weights.load_hf_state(tmp_path)[1])
    for key in full:
        assert lean[key].dtype == np.float32
        np.testing.assert_array_equal(lean[key], full[key], err_msg=key)


def test_the_lean_loader_refuses_what_load_hf_state_refuses(small, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(small / "model.safetensors"))
    del tensors["transformer.h.1.mlp.c_proj.bias"]
    (tmp_path / "config.json").write_bytes((small / "config.json").read_bytes())
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    for load in (weights.load_max_state, weights.load_hf_state):
        with pytest.raises(CheckpointError, match="tensor transformer.h.1.mlp.c_proj.bias is missing"):
            load(tmp_path)


# --------------------------------------------------------------------------- checks on pretrained weights

def _check(args, env_extra=None, tmp_path=None):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=str(course.ROOT), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"),
               **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "gpt2course", "check", *args], cwd=course.ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_a_check_against_pretrained_weights_on_disk_says_so(tmp_path):
    """`make s03 ARGS='--weights FOLDER'`: the step is checked against that checkpoint, and the
    header line says which weights."""
    import shutil

    folder = tmp_path / "my-gpt2"
    shutil.copytree(checkpoints.seeded_checkpoint("small"), folder)
    proc = _check(["03", "--target", "solutions", "--weights", str(folder)], tmp_path=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.splitlines()[0].startswith("Checking step 03 (Layer normalization) against pretrained ")
    assert f"weights: {folder} (pretrained)" in out.splitlines()[0]
    assert "step 03 passed" in out


def test_a_check_against_weights_not_on_disk_says_how_to_fetch_them(tmp_path):
    """The checks never download: --weights gpt2 with an empty cache is one clear line naming the
    command that fetches it, and no traceback."""
    proc = _check(["03", "--target", "solutions", "--weights", "gpt2"], tmp_path=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--weights gpt2: not in the local Hugging Face cache" in out, out[-3000:]
    assert course.command("download-gpt2") in out
    assert "Traceback" not in out


def test_a_check_reads_the_weights_it_is_given(tmp_path):
    """--weights is not a label: a truncated checkpoint given to it fails the check with one line."""
    import shutil

    folder = tmp_path / "cut-gpt2"
    shutil.copytree(checkpoints.seeded_checkpoint("small"), folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    proc = _check(["03", "--target", "solutions", "--weights", str(folder)], tmp_path=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "model.safetensors" in out and "Traceback" not in out, out[-3000:]
