"""`python -m gpt2course gpt2`: checkpoints refused by name, context limits, generation logic,
and the finished model producing Hugging Face's greedy tokens, offline.

Everything that runs MAX uses the "small" seeded checkpoint and one compiled graph (the
run path's cached GPT-2), compiled once for the whole file and cached on disk after that.
"""

import builtins
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gpt2course import cli, course, skeleton
from gpt2course.errors import CheckFailure
from gpt2course.hf import checkpoints, reference, tokenizer
from gpt2course.hf.weights import CheckpointError, load_hf_state
from gpt2course.run import engine as run_engine
from gpt2course.run.gate import gate_learner_steps
from gpt2course.run.generate import fit_context, generate

TINY = dict(vocab_size=100, n_positions=16, n_embd=8, n_layer=1, n_head=2)


# --------------------------------------------------------------------------- broken checkpoints

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    GPT2LMHeadModel(GPT2Config(**TINY)).save_pretrained(folder)
    return folder


def broken(tiny_checkpoint, tmp_path, edit):
    """A copy of the tiny checkpoint with its tensors edited by ``edit(dict) -> dict``."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    save_file(edit(dict(tensors)), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_tiny_checkpoint_loads(tiny_checkpoint):
    config, state = load_hf_state(tiny_checkpoint)
    assert config.n_embd == 8 and state["lm_head.weight"] is state["transformer.wte.weight"]


def test_missing_tensor_is_named(tiny_checkpoint, tmp_path):
    name = "transformer.h.0.attn.c_attn.weight"
    folder = broken(tiny_checkpoint, tmp_path, lambda t: {k: v for k, v in t.items() if k != name})
    with pytest.raises(CheckpointError, match=rf"tensor {name} is missing"):
        load_hf_state(folder)


def test_wrong_shape_is_named(tiny_checkpoint, tmp_path):
    name = "transformer.h.0.mlp.c_fc.weight"

    def edit(t):
        t[name] = np.zeros((8, 31), dtype=np.float32)
        return t
    folder = broken(tiny_checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=rf"tensor {name} has shape \(8, 31\); config.json implies \(8, 32\)"):
        load_hf_state(folder)


def test_wrong_dtype_is_named(tiny_checkpoint, tmp_path):
    name = "transformer.ln_f.weight"

    def edit(t):
        t[name] = np.ones((8,), dtype=np.int32)
        return t
    folder = broken(tiny_checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=rf"tensor {name} has dtype int32"):
        load_hf_state(folder)


def test_config_mismatch_is_named(tiny_checkpoint, tmp_path):
    folder = broken(tiny_checkpoint, tmp_path, lambda t: t)
    config = json.loads((folder / "config.json").read_text())
    config["n_embd"] = 16  # the tensors are 8 wide
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"tensor transformer.wte.weight has shape \(100, 8\)"):
        load_hf_state(folder)


def test_cli_refuses_broken_checkpoint_with_the_tensor_name(tiny_checkpoint, tmp_path, capsys):
    name = "transformer.h.0.ln_2.bias"
    folder = broken(tiny_checkpoint, tmp_path, lambda t: {k: v for k, v in t.items() if k != name})
    code = cli.main(["gpt2", "--weights", str(folder), "--prompt", "Hello"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"tensor {name} is missing" in err and "Traceback" not in err


def test_cli_refuses_a_folder_without_config(tmp_path, capsys):
    assert cli.main(["gpt2", "--weights", str(tmp_path), "--prompt", "Hello"]) == 2
    assert "no config.json" in capsys.readouterr().err


# --------------------------------------------------------------------------- context and generation logic

def test_fit_context_keeps_a_prompt_that_fits_and_shrinks_the_budget():
    ids, budget, notes = fit_context(list(range(1000)), 50, 1024)
    assert len(ids) == 1000 and budget == 24 and "at most 24 new tokens" in notes[0]
    ids, budget, notes = fit_context([1, 2, 3], 50, 1024)
    assert ids == [1, 2, 3] and budget == 50 and notes == []


def test_fit_context_truncates_a_prompt_longer_than_the_context():
    prompt = list(range(3000))
    ids, budget, notes = fit_context(prompt, 50, 1024)
    assert ids == prompt[-974:] and budget == 50 and len(ids) + budget == 1024
    assert "keeping its last 974 tokens" in notes[0]
    ids, budget, _ = fit_context(prompt, 5000, 1024)
    assert len(ids) == 512 and budget == 512


class FakeEngine:
    """A NumPy stand-in with the engine interface: the next token is (last token + 1) % vocab."""

    cached = True
    device_name = "fake"

    def __init__(self, vocab=10, n_positions=16):
        from solutions.solution_01 import GPT2Config

        self.config = GPT2Config(vocab_size=vocab, n_positions=n_positions)
        self.calls = []

    def _logits(self, ids):
        logits = np.zeros((ids.shape[0], self.config.vocab_size), dtype=np.float32)
        logits[np.arange(ids.shape[0]), (ids[:, -1] + 1) % self.config.vocab_size] = 5.0
        return logits

    def prefill(self, ids):
        self.calls.append(("prefill", ids.shape[1]))
        return self._logits(ids), ids.shape[1]

    def decode(self, token, length):
        self.calls.append(("decode", length))
        return self._logits(token), length + 1


def test_generate_prefills_once_then_decodes_one_token_at_a_time():
    engine = FakeEngine()
    seen = []
    new, stats = generate(engine, [1, 2], 5, greedy=True, eos_token_id=None, on_token=seen.append)
    assert new == seen == [3, 4, 5, 6, 7]
    assert engine.calls == [("prefill", 2), ("decode", 2), ("decode", 3), ("decode", 4), ("decode", 5)]
    assert stats.prompt_tokens == 2 and stats.new_tokens == 5 and stats.stopped == "token budget"


def test_generate_stops_at_end_of_text():
    engine = FakeEngine()
    new, stats = generate(engine, [5], 20, greedy=True, eos_token_id=8)
    assert new == [6, 7, 8] and stats.stopped == "end of text"


def test_generate_respects_the_context():
    engine = FakeEngine(n_positions=16)
    new, stats = generate(engine, list(range(40)), 20, greedy=True, eos_token_id=None)
    assert stats.prompt_tokens + len(new) <= 16 and stats.notices


def test_same_seed_same_tokens():
    engine = FakeEngine(vocab=1000)
    a, _ = generate(engine, [1], 8, temperature=5.0, seed=3, eos_token_id=None)
    b, _ = generate(engine, [1], 8, temperature=5.0, seed=3, eos_token_id=None)
    c, _ = generate(engine, [1], 8, temperature=5.0, seed=4, eos_token_id=None)
    assert a == b and a != c


# --------------------------------------------------------------------------- the learner's model

def test_steps_model_refused_naming_the_first_unfinished_step(tmp_path):
    for n in (11, 12):
        (tmp_path / f"step_{n:02d}.py").write_text(course.solution_file(n).read_text())
    (tmp_path / "step_10.py").write_text(skeleton.pristine_skeleton(10))
    with pytest.raises(CheckFailure, match=r"step 10 is not done yet: TODO 1"):
        gate_learner_steps(str(tmp_path))


def test_steps_model_refused_when_a_step_does_not_import(tmp_path):
    for n in (10, 12):
        (tmp_path / f"step_{n:02d}.py").write_text(course.solution_file(n).read_text())
    (tmp_path / "step_11.py").write_text("def broken(:\n")
    with pytest.raises(CheckFailure, match=r"step 11: syntax error"):
        gate_learner_steps(str(tmp_path))


def test_steps_model_refused_when_a_done_step_fails_its_check(tmp_path):
    source = course.solution_file(12).read_text()
    wrong = source.replace("np.argmax(logits, axis=-1).astype(np.int64)",
                           "np.argmin(logits, axis=-1).astype(np.int64)")
    assert wrong != source
    (tmp_path / "step_12.py").write_text(wrong)
    with pytest.raises(CheckFailure, match=r"step 12 does not pass its check yet"):
        gate_learner_steps(str(tmp_path), steps=(12,), quiet=True)


# --------------------------------------------------------------------------- the finished model (MAX)

@pytest.fixture(scope="module")
def small():
    folder = checkpoints.seeded_checkpoint("small")
    return folder, run_engine.CachedEngine(folder, quiet=True)


def test_cli_greedy_equals_hugging_face(small, capsys):
    """The issue's definition of done: `gpt2 --prompt "Hello" --greedy` gives HF's tokens, offline."""
    folder, _ = small
    code = cli.main(["gpt2", "--weights", str(folder), "--prompt", "Hello", "--greedy",
                     "--max-new-tokens", "24", "--show-ids"])
    out = capsys.readouterr().out
    assert code == 0
    ids_line = next(line for line in out.splitlines() if line.startswith("ids: "))
    ours = [int(t) for t in ids_line.split()[1:]]
    prompt = np.array([tokenizer.encode("Hello")], dtype=np.int64)
    theirs = reference.hf_generate_greedy(folder, prompt, 24)[0, prompt.shape[1]:].tolist()
    if tokenizer.EOS_TOKEN_ID in theirs:
        theirs = theirs[:theirs.index(tokenizer.EOS_TOKEN_ID) + 1]
    assert ours == theirs
    assert out.startswith("Hello" + tokenizer.decode([t for t in ours if t != tokenizer.EOS_TOKEN_ID]))
    last = out.strip().splitlines()[-1]
    for figure in ("prompt 1 tokens", "new tokens", "prefill", "tokens/s", "weights:", "device: cpu"):
        assert figure in last


def test_engine_logits_equal_hugging_face(small):
    folder, engine = small
    ids = reference.fixed_input_ids(engine.config.vocab_size, 2, 9)
    want = reference.capture(folder, ids).logits
    logits, cache = engine.prefill(ids[:, :5])
    np.testing.assert_allclose(logits, want[:, 4], atol=1e-4, rtol=1e-4)
    for pos in range(5, 9):
        logits, cache = engine.decode(ids[:, pos:pos + 1], cache)
        np.testing.assert_allclose(logits, want[:, pos], atol=1e-4, rtol=1e-4)
    assert cache.length == 9


def test_seeded_sampling_is_reproducible(small):
    _, engine = small
    a, _ = generate(engine, [15496], 12, temperature=1.0, top_k=50, seed=7)
    b, _ = generate(engine, [15496], 12, temperature=1.0, top_k=50, seed=7)
    assert a == b


def test_prompt_longer_than_the_context_is_truncated_not_a_crash(small):
    _, engine = small
    n = engine.config.n_positions  # 128 for "small"
    new, stats = generate(engine, list(range(300, 300 + 2 * n)), 10, greedy=True)
    assert stats.prompt_tokens + len(new) <= n and len(new) == 10
    assert "keeping its last" in stats.notices[0]


def test_interactive_loop_quits_on_empty_line_and_ctrl_d(small, monkeypatch, capsys):
    folder, engine = small
    monkeypatch.setattr(run_engine, "load_engine", lambda *a, **k: (engine, None, "reference"))
    lines = iter(["Hello", ""])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(lines))
    assert cli.main(["gpt2", "--weights", str(folder), "--greedy", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("new tokens") == 1

    def eof(prompt=""):
        raise EOFError
    monkeypatch.setattr(builtins, "input", eof)
    assert cli.main(["gpt2", "--weights", str(folder)]) == 0


def test_steps_model_runs_the_learners_model_and_sampling(small, tmp_path, monkeypatch):
    """--model steps: the learner's MaxGPT2LMHeadModel (step 11) and sample_next_token (step 12),
    uncached, give Hugging Face's greedy tokens. (The gate itself is tested above.)"""
    folder, _ = small
    for n in (10, 11, 12):
        (tmp_path / f"step_{n:02d}.py").write_text(course.solution_file(n).read_text())
    monkeypatch.setattr(run_engine, "gate_learner_steps", lambda *a, **k: None)
    engine, sample_fn, desc = run_engine.load_engine("steps", folder, quiet=True, target=str(tmp_path))
    assert not engine.cached and "yours" in desc and sample_fn.__module__ == "steps.step_12"
    prompt = [15496, 11, 616]
    new, stats = generate(engine, prompt, 8, greedy=True, sample_fn=sample_fn, eos_token_id=None)
    theirs = reference.hf_generate_greedy(folder, np.array([prompt]), 8)[0, 3:].tolist()
    assert new == theirs and stats.new_tokens == 8
