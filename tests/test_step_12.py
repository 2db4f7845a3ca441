"""Step 12 check: greedy decoding equals Hugging Face generate(do_sample=False); sampling follows
the distribution Hugging Face's temperature / top-k / top-p warpers define."""

import numpy as np
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from gpt2course.check import harness
from gpt2course.hf import reference
from gpt2course.errors import CheckFailure
from gpt2course.check.compare import expect_equal

STEP = 12
DRAWS = 20000


def fixed_logits(rows=3, vocab=50257, seed=12):
    return np.random.default_rng(seed).normal(0, 3, size=(rows, vocab)).astype(np.float32)


def hf_probs(logits: np.ndarray, temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """The distribution Hugging Face's sampling draws from, via its own logits warpers."""
    scores = torch.from_numpy(logits.copy())
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1).numpy()


def stand_in_logits(ids):
    """A deterministic fake model, ids -> logits over 50 tokens, that costs nothing to run."""
    ids = np.asarray(ids)
    rng = np.random.default_rng(int(ids.sum()) % 1000)
    return rng.normal(size=(ids.shape[0], ids.shape[1], 50)).astype(np.float32)


def sample(step, logits, **kw):
    fn = step.get("sample_next_token")
    with step.errors(f"sample_next_token({', '.join(f'{k}={v}' for k, v in kw.items() if k != 'rng')})"):
        out = fn(logits, **kw)
    return np.asarray(out)


def check_distribution(step, label, logits_row, **kw):
    """Draws DRAWS tokens for one row (as a batch of identical rows) and compares frequencies."""
    expected = hf_probs(logits_row[None], **kw)[0]
    batch = np.repeat(logits_row[None], DRAWS, axis=0)
    tokens = sample(step, batch, rng=np.random.default_rng(7), **kw)
    expect_equal(f"{label}: tokens shape", list(tokens.shape), [DRAWS], "one token per row")
    freq = np.bincount(tokens.astype(np.int64), minlength=len(expected)) / DRAWS
    impossible = np.flatnonzero((expected == 0) & (freq > 0))
    if impossible.size:
        raise CheckFailure(f"{label}: drew token {int(impossible[0])}, which has probability 0 "
                           f"(filtered out)", "tokens outside the top-k / top-p set must get -inf / probability 0")
    # 5 standard deviations of a binomial frequency: a correct sampler fails this about never.
    sigma = np.sqrt(expected * (1 - expected) / DRAWS)
    bad = np.flatnonzero(np.abs(freq - expected) > 5 * sigma + 1e-3)
    if bad.size:
        i = int(bad[np.argmax(np.abs(freq - expected)[bad])])
        raise CheckFailure(
            f"{label}: sampled frequencies differ from Hugging Face's distribution\n"
            f"  token {i}: expected probability {expected[i]:.4f}, drawn {freq[i]:.4f} of {DRAWS} draws",
            "divide by the temperature, filter, then softmax, then draw with the probabilities")


def test_greedy(step):
    """greedy picks the highest logit of each row"""
    logits = fixed_logits()
    expect_equal("sample_next_token(greedy=True)", sample(step, logits, greedy=True).tolist(),
                 logits.argmax(-1).tolist(), "np.argmax over the vocabulary axis")


def test_temperature(step):
    """temperature 0.7 and 1.5 sample from softmax(logits / T)"""
    row = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 3.0], dtype=np.float32)
    check_distribution(step, "temperature=0.7", row, temperature=0.7)
    check_distribution(step, "temperature=1.5", row, temperature=1.5)


def test_top_k(step):
    """top_k=3 only ever draws the three best tokens, in Hugging Face's proportions"""
    row = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 3.0, 1.5], dtype=np.float32)
    check_distribution(step, "top_k=3", row, temperature=0.9, top_k=3)


def test_top_p(step):
    """top_p=0.8 keeps the smallest set of tokens reaching 80% probability"""
    row = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 3.0, 1.5], dtype=np.float32)
    check_distribution(step, "top_p=0.8", row, top_p=0.8)


def test_generate_matches_hf(step):
    """greedy generate_tokens with the MAX model equals Hugging Face generate(do_sample=False), 12 tokens"""
    generate = step.get("generate_tokens")
    folder, config, _ = harness.checkpoint("small")
    ids = reference.fixed_input_ids(config.vocab_size, batch=2, seq=5, seed=5)
    # First a stand-in model (NumPy, instant): a broken loop fails here, before a compile.
    expected = ids.copy()
    for _ in range(4):
        expected = np.concatenate([expected, stand_in_logits(expected)[:, -1].argmax(-1)[:, None]], axis=1)
    with step.errors("generate_tokens(stand_in_model, ids, 4, greedy=True)"):
        got = np.asarray(generate(stand_in_logits, ids, 4, greedy=True))
    expect_equal("generated ids (a stand-in model)", got, expected,
                 "each loop: logits of the LAST position -> argmax -> append as a new column")
    model = harness.solution_model("small", step.device_name)
    with step.errors("generate_tokens(model, ids, 12, greedy=True)"):
        ours = np.asarray(generate(model, ids, 12, greedy=True))
    theirs = reference.hf_generate_greedy(folder, ids, 12)
    expect_equal("generated ids", ours, theirs,
                 "append the argmax of the last position's logits, one token per loop, 12 times")
