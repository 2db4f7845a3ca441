"""`python -m gpt2course gpt2`: checkpoints refused by name, context limits, generation logic,
and the finished model producing Hugging Face's greedy tokens, offline.

Everything that runs MAX uses the "small" seeded checkpoint and one compiled graph (the
run path's cached GPT-2), compiled once for the whole file and cached on disk after that.
"""

import builtins
import json
import re

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

    def prefill(self, ids, capacity=None):
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


def test_a_cache_without_room_grows_and_keeps_what_it_held(small):
    """The in-place cache: a caller that asks for too little room gets a grown cache whose
    first positions are what was written, not a crash or a stale read."""
    folder, engine = small
    ids = reference.fixed_input_ids(engine.config.vocab_size, 1, 9)
    want = reference.capture(folder, ids).logits
    logits, cache = engine.prefill(ids[:, :3], capacity=3)
    assert cache.capacity == 3
    for pos in range(3, 9):
        logits, cache = engine.decode(ids[:, pos:pos + 1], cache)
        np.testing.assert_allclose(logits, want[:, pos], atol=1e-4, rtol=1e-4)
    assert cache.length == 9 and cache.capacity >= 9


# --------------------------------------------------------------------------- weights in fewer bytes

def test_bf16_bits_are_torchs_rounding():
    """Our float32 -> bfloat16 (NumPy has none) rounds as torch does: to nearest, ties to even."""
    import torch

    from gpt2course.run.precision import bf16_bits, bf16_to_float32

    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, -2.5, 3.0e38, 1e-39, 0.0, -0.0, 0.1],
                 dtype=np.float32)
    x = np.concatenate([x, np.random.default_rng(0).standard_normal(1000).astype(np.float32)])
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bf16_bits(x), theirs)
    np.testing.assert_array_equal(bf16_to_float32(theirs), torch.from_numpy(x).to(torch.bfloat16).float().numpy())


def test_q4_0_blocks_are_ggmls_layout():
    """GGML's Q4_0, as MAX's kernel reads it: per 32 weights of a row, the scale d (float16, 2
    bytes) = the weight of largest magnitude / -8, then 16 bytes holding q = trunc(w / d + 8.5)
    clipped to [0, 15], weight j in the low nibble of byte j and weight j + 16 in the high one;
    rows padded with zeros to a multiple of 32."""
    from gpt2course.run import precision

    w = np.random.default_rng(3).normal(0, 0.1, size=(40, 64)).astype(np.float32)
    w[5, :32] = 0.0                                    # a block of zeros: d = 0, every q = 8
    w[6, :32] = np.arange(32, dtype=np.float32) - 16   # its largest magnitude is -16: d = 2
    blocks = precision.q4_0_blocks(w)
    assert blocks.dtype == np.uint8 and blocks.shape == (64, 2 * 18)  # 40 rows -> 64
    b = blocks.reshape(64, 2, 18)
    d = b[..., :2].copy().view(np.float16)[..., 0]
    q = np.concatenate([b[..., 2:] & 15, b[..., 2:] >> 4], axis=-1)    # [row, block, 32]
    assert d[6, 0] == 2.0
    assert list(q[6, 0]) == [min(15, int((j - 16) / 2 + 8.5)) for j in range(32)]  # 15.5 -> 15
    assert d[5, 0] == 0 and (q[5, 0] == 8).all()
    assert (d[40:] == 0).all() and (q[40:] == 8).all()  # the padding rows: zeros
    back = precision.q4_0_to_float32(blocks, 64)[:40]
    step = np.abs(np.repeat(d[:40].astype(np.float32), 32, axis=1))
    error, top = np.abs(back - w), q[:40].reshape(40, 64) == 15
    # half a step (the float16 scale aside), a whole one where +8 steps was clipped to +7
    assert (error[~top] <= step[~top] / 2 * 1.01 + 1e-7).all() and (error <= step * 1.01 + 1e-7).all()
    assert error.max() > 0
    with pytest.raises(CheckFailure, match=r"q4_0 stores rows in blocks of 32 weights; this model has "
                                           r"a \[40, 48\] matrix"):
        precision.q4_0_blocks(w[:, :48])


def test_stored_weights_take_a_half_and_a_quarter_of_the_bytes():
    from gpt2course.hf import weights as weights_mod
    from gpt2course.run import precision

    _, state = weights_mod.load_max_state(checkpoints.seeded_checkpoint("small"))
    fp32, bf16, int8 = (precision.weight_bytes(state, d) for d in ("fp32", "bf16", "int8"))
    matrices = [state[n].shape for n in precision.linear_weight_names(state)]
    assert len(matrices) == 4 * 2 + 1  # c_attn, attn c_proj, c_fc, mlp c_proj per block; lm_head
    assert fp32 == 4 * sum(o * i for o, i in matrices) and bf16 * 2 == fp32
    assert int8 == sum(o * i + 4 * o for o, i in matrices)  # one float32 scale per row
    # 18 bytes per 32 weights, the LM head's 50,257 rows padded to 50,272
    assert precision.weight_bytes(state, "q4_0") == sum(-(-o // 32) * 32 * i // 32 * 18 for o, i in matrices)
    stored = precision.stored_weights(dict(state), "int8")
    head, scale = stored["lm_head.weight"], stored["lm_head.scale"]
    assert head.dtype == np.int8 and scale.shape == (state["lm_head.weight"].shape[0],)
    assert stored["transformer.wte.weight"].dtype == np.float32  # the embedding lookup stays fp32
    np.testing.assert_allclose(head * scale[:, None], state["lm_head.weight"],
                               atol=float(scale.max()) / 2 * 1.0001)


# bf16 keeps 8 significant bits a weight; int8 is off by at most half a step, 1/254 of each
# row's largest magnitude. Measured on the seeded "small" checkpoint (random weights, logits up
# to ~3.9): the largest logit error against Hugging Face fp32 over 9 positions and 2 rows was
# 0.016 for bf16 and 0.062 for int8 (fp32: 2e-6); greedily from "Hello", bf16 gave fp32's
# 100 tokens out of 100, int8 its first 47. The bounds leave room (3x and 1.6x) without
# letting a wrong dequantization (errors of ~1) through.
#
# q4_0 (4 bits, a scale per 32 weights) moves these logits by up to ~1 (measured 0.75-1.01), as
# much as a wrong dequantization would, so its logits are compared with Hugging Face's on the
# q4_0 weights dequantized (a checkpoint written from them): measured 0.052-0.063, the rest of
# the difference being MAX's kernel rounding each activation row to 8 bits (GGML's Q8_0) before
# it multiplies. Greedily from "Hello" on these random weights it differs from fp32 at the first
# token already (the top logits lie closer than q4_0's error), and gives the tokens of fp32 on the
# dequantized weights: 48 of 48 (measured).
LOGIT_TOLERANCE = {"bf16": 0.05, "int8": 0.1, "q4_0": 0.15}
GREEDY_AGREE = 24  # greedy tokens that must equal fp32's (q4_0: on its dequantized weights), from "Hello"


@pytest.fixture(scope="module", params=["bf16", "int8", "q4_0"])
def small_at(request, small):
    folder, _ = small
    return request.param, run_engine.CachedEngine(folder, quiet=True, dtype=request.param)


def _dequantized_q4_0(folder, dest):
    """A checkpoint whose Linear weights are ``folder``'s after a q4_0 round trip (the LM head
    stored untied, since ``wte`` itself stays float32)."""
    from gpt2course.hf import weights as weights_mod
    from gpt2course.run import precision

    _, state = weights_mod.load_max_state(folder)
    linear, out = set(precision.linear_weight_names(state)), {}
    for key, w in state.items():
        if key in linear:
            w = precision.q4_0_to_float32(precision.q4_0_blocks(w), w.shape[1])[: w.shape[0]]
        out[key] = np.ascontiguousarray(w.T if key.endswith(weights_mod.CONV1D_SUFFIXES) else w)
    dest.mkdir()
    (dest / "config.json").write_bytes((folder / "config.json").read_bytes())
    save_file(out, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def test_lower_precision_logits_stay_near_fp32(small_at, small, tmp_path):
    dtype, engine = small_at
    folder, _ = small
    ids = reference.fixed_input_ids(engine.config.vocab_size, 2, 9)
    want = reference.capture(folder if dtype != "q4_0" else _dequantized_q4_0(folder, tmp_path / "q"),
                             ids).logits
    logits, cache = engine.prefill(ids[:, :5])
    errors = [np.abs(logits - want[:, 4]).max()]
    for pos in range(5, 9):
        logits, cache = engine.decode(ids[:, pos:pos + 1], cache)
        errors.append(np.abs(logits - want[:, pos]).max())
    assert 0 < max(errors) < LOGIT_TOLERANCE[dtype], (dtype, errors)  # 0: the weights did change


def test_lower_precision_greedy_tokens_agree_with_fp32(small_at, small, tmp_path):
    dtype, engine = small_at
    folder, fp32 = small
    if dtype == "q4_0":
        fp32 = run_engine.CachedEngine(_dequantized_q4_0(folder, tmp_path / "q"), quiet=True)
    prompt = tokenizer.encode("Hello")
    ours, _ = generate(engine, prompt, GREEDY_AGREE, greedy=True, eos_token_id=None)
    theirs, _ = generate(fp32, prompt, GREEDY_AGREE, greedy=True, eos_token_id=None)
    assert ours == theirs, dtype


def test_cli_dtype_says_how_the_weights_are_stored(small_at, small, monkeypatch, capsys):
    dtype, engine = small_at
    folder, _ = small
    real = run_engine.CachedEngine
    monkeypatch.setattr(run_engine, "CachedEngine", lambda *a, **k: engine if k.get("dtype") == dtype else real(*a, **k))
    code = cli.main(["gpt2", "--weights", str(folder), "--prompt", "Hello", "--greedy",
                     "--max-new-tokens", "4", "--dtype", dtype])
    assert code == 0
    assert f"{dtype} weights" in capsys.readouterr().out.strip().splitlines()[-1]


def test_a_dtype_max_cannot_compile_gets_one_clear_line(small, monkeypatch, capsys):
    folder, _ = small

    def cannot(*a, **k):
        raise RuntimeError("bfloat16 is not supported by this kernel\n  (a long MAX trace)")
    monkeypatch.setattr(run_engine, "_compile", cannot)
    code = cli.main(["gpt2", "--weights", str(folder), "--prompt", "Hello", "--dtype", "bf16"])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"error: MAX cannot run bf16 weights on this device \(cpu.*\): bfloat16 is not "
                     r"supported by this kernel\n", err)
    assert "hint: run with --dtype fp32" in err and "a long MAX trace" not in err


def test_dtype_is_for_the_reference_model(small, capsys):
    folder, _ = small
    assert cli.main(["gpt2", "--weights", str(folder), "--model", "steps", "--dtype", "int8",
                     "--prompt", "Hi"]) == 1
    assert "--dtype int8 runs the reference model only" in capsys.readouterr().err
