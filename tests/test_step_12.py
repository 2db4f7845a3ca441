"""Step 12 check: greedy decoding equals Hugging Face generate(do_sample=False); sampling follows
the distribution Hugging Face's temperature / top-k / top-p warpers define, survives extreme
logits, draws each row and each position afresh, and generation stops at end-of-text.

When a sampler is wrong, the check names how: the drawn frequencies are compared with the
distributions the usual mistakes would give (no temperature, top-k keeping k + 1, ...)."""

import numpy as np
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from gpt2course.check import harness, wire
from gpt2course.hf import reference
from gpt2course.errors import CheckFailure
from gpt2course.check.compare import expect_equal
from gpt2course.check.learner import TodoNotDone

STEP = 12
DRAWS = 20000
EOS = 50256  # GPT-2's <|endoftext|>


def fixed_logits(rows=3, vocab=50257, seed=12):
    return harness.rng(seed).normal(0, 3, size=(rows, vocab)).astype(np.float32)


def hf_probs(logits: np.ndarray, temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """The distribution Hugging Face's sampling draws from, via its own logits warpers."""
    scores = torch.from_numpy(np.array(logits, dtype=np.float32))
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1).numpy()


def _keep(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    kept = np.where(mask, probs, 0.0)
    return kept / kept.sum(-1, keepdims=True)


def _top_k_mask(row: np.ndarray, k: int, smallest: bool = False) -> np.ndarray:
    order = np.argsort(row)
    mask = np.zeros(row.shape, dtype=bool)
    mask[order[:k] if smallest else order[-k:]] = True
    return mask


def mistakes(row: np.ndarray, temperature=1.0, top_k=None, top_p=None) -> dict[str, np.ndarray]:
    """What the usual wrong samplers draw from, for one row: {explanation: probabilities}."""
    out = {}
    t, k, p = temperature, top_k, top_p
    if t != 1.0:
        out["the temperature has no effect on the draws: divide the LOGITS by the temperature, "
            "before softmax (dividing the probabilities by it and renormalising cancels out)"] = \
            hf_probs(row[None], 1.0, k, p)[0]
        out["the logits are multiplied by the temperature; divide them by it "
            "(T < 1 must sharpen, T > 1 flatten)"] = hf_probs(row[None] * t * t, t, k, p)[0]
    if k is not None:
        n = row.shape[-1]
        if k + 1 <= n:
            out[f"top-k keeps {k + 1} tokens, one too many: keep exactly the {k} largest "
                f"(the k-th largest is np.sort(x)[:, -k]; drop what is below it)"] = hf_probs(row[None], t, k + 1, p)[0]
        if k > 1:
            out[f"top-k keeps {k - 1} tokens, one too few: the k-th largest itself must stay "
                "(set to -inf only what is strictly below it)"] = hf_probs(row[None], t, k - 1, p)[0]
        out[f"top-k keeps the {k} SMALLEST logits: np.sort sorts ascending, so the k largest "
            "are the last k"] = _keep(hf_probs(row[None], t)[0], _top_k_mask(row, k, smallest=True))
        out["top-k is not applied (or not with the others): filter to the k largest, then apply top-p "
            "to what is left"] = hf_probs(row[None], t, None, p)[0]
    if p is not None:
        out["top-p is not applied (or not together with top-k): apply top-k, then top-p to the "
            "renormalised result"] = hf_probs(row[None], t, k, None)[0]
        if t != 1.0:
            untempered = hf_probs(row[None], 1.0, k, p)[0] > 0
            out["the top-p set is chosen before the temperature is applied: divide by the "
                "temperature first, then top-k, softmax, top-p"] = _keep(hf_probs(row[None], t, k)[0], untempered)
    return out


def fits(freq: np.ndarray, probs: np.ndarray, draws: int) -> bool:
    """Frequencies consistent with ``probs`` (5 binomial standard deviations per token)."""
    sigma = np.sqrt(probs * (1 - probs) / draws)
    return bool(np.all(np.abs(freq - probs) <= 5 * sigma + 1e-3)) and not np.any((probs == 0) & (freq > 0))


_RAISED = {
    "contain NaN": "the probabilities contain NaN: np.exp overflowed (large logits, or logits divided by "
                   "a small temperature, reach e.g. 1e4) and inf / inf is NaN. Subtract each row's max "
                   "before np.exp (TODO 4)",
    "do not sum to 1": "a row's probabilities do not sum to 1: normalise over the last axis "
                       "(exp.sum(axis=-1, keepdims=True)), and apply the temperature to the logits, "
                       "before softmax, not to the probabilities after it",
    "not non-negative": "some probabilities are negative: they must come from softmax (np.exp, then "
                        "normalise), and filtered tokens get -inf logits, not negative probabilities",
}


def sample(step, logits, **kw):
    fn = step.get("sample_next_token")
    args = ", ".join(f"{k}={v}" for k, v in kw.items() if k != "rng")
    try:
        with step.errors(f"sample_next_token({args})"):
            out = fn(logits, **kw)
    except TodoNotDone:
        raise
    except CheckFailure as exc:
        for key, why in _RAISED.items():
            if key in exc.message:
                raise CheckFailure(f"sample_next_token({args}): {why}\n  {exc.message}", exc.hint) from None
        raise
    out = np.asarray(out)
    if out.shape != (len(logits),):
        raise CheckFailure(f"sample_next_token({args}): returned shape {list(out.shape)}, "
                           f"expected [{len(logits)}] (one token per row)",
                           "draw one token per row; return a 1-D int64 array")
    if not np.issubdtype(out.dtype, np.integer):
        raise CheckFailure(f"sample_next_token({args}): returned dtype {out.dtype}, expected int64",
                           "token ids are integers: .astype(np.int64)")
    return out


def check_distribution(step, label, logits_row, **kw):
    """Draws DRAWS tokens for one row (as a batch of identical rows) and compares frequencies."""
    expected = hf_probs(logits_row[None], **kw)[0]
    batch = np.repeat(logits_row[None], DRAWS, axis=0)
    tokens = sample(step, batch, rng=np.random.default_rng(7), **kw).astype(np.int64)
    if expected.max() < 0.99 and np.all(tokens == tokens[0]):
        raise CheckFailure(
            f"{label}: all {DRAWS} rows of the batch (the same logits in every row) drew the same token "
            f"{int(tokens[0])}: the rows share one random number, or the draw is not random at all",
            "draw each row separately from its own probabilities: rng.choice(vocab_size, p=row) per row")
    freq = np.bincount(tokens, minlength=len(expected)) / DRAWS
    if fits(freq, expected, DRAWS):
        return
    for why, probs in mistakes(logits_row, **kw).items():
        if not np.allclose(probs, expected, atol=2e-3) and fits(freq, probs, DRAWS):
            raise CheckFailure(f"{label}: sampled frequencies differ from Hugging Face's distribution\n"
                               f"  looks like: {why}",
                               "order: divide by the temperature, top-k, softmax, top-p, then draw")
    impossible = np.flatnonzero((expected == 0) & (freq > 0))
    if impossible.size:
        raise CheckFailure(f"{label}: drew token {int(impossible[0])}, which has probability 0 "
                           f"(filtered out)", "tokens outside the top-k / top-p set must get -inf / probability 0")
    sigma = np.sqrt(expected * (1 - expected) / DRAWS)
    bad = np.flatnonzero(np.abs(freq - expected) > 5 * sigma + 1e-3)
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


def test_rows_independent(step):
    """each row of a batch is drawn from its own logits, with its own random number"""
    # Row r has its best token at r (probability ~1): a sampler using one row's probabilities
    # for the whole batch, or mixing rows up, gives other rows' tokens.
    n = 6
    logits = np.zeros((n, 10), dtype=np.float32)
    logits[np.arange(n), np.arange(n)] = 30.0
    got = sample(step, logits, temperature=1.0, rng=np.random.default_rng(6))
    if not np.array_equal(got, np.arange(n)):
        r = int(np.flatnonzero(got != np.arange(n))[0])
        same = np.all(got == got[0])
        raise CheckFailure(
            f"sample_next_token: row {r} drew token {int(got[r])}, but its logits give token {r} "
            f"probability ~1 (each row r of this batch has its best token at r)"
            + ("\n  every row got row 0's token: the draw uses row 0's probabilities for the whole batch"
               if same else ""),
            "draw each row from ITS OWN probabilities: rng.choice(vocab_size, p=row) for row in probs")
    # 200 identical, almost flat rows (1000 tokens): independent draws differ from row to row.
    flat = np.repeat(np.linspace(0.0, 0.01, 1000, dtype=np.float32)[None], 200, axis=0)
    got = sample(step, flat, rng=np.random.default_rng(8))
    if np.all(got == 999):
        raise CheckFailure("sample_next_token: 200 rows of almost equal logits all drew the most likely token "
                           "999: the draw is greedy, it ignores the probabilities",
                           "draw with the probabilities: rng.choice(vocab_size, p=row)")
    if len(set(got.tolist())) < 100:
        raise CheckFailure(f"sample_next_token: 200 identical rows over 1000 almost equally likely tokens drew "
                           f"only {len(set(got.tolist()))} different tokens: the rows share one random number",
                           "each row needs its own draw: rng.choice(vocab_size, p=row) per row, or "
                           "rng.random(batch) -- one number per row")


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


def test_extreme_logits(step):
    """logits of 1e4 and temperature 1e-3 still pick the argmax (no overflow, no NaN)"""
    rows = np.array([[1e4, 0.0, -1e4, 5e3, 9e3],
                     [-1e4, 2e4, 0.0, 1e4, -3e4],
                     [0.0, 0.0, 0.0, 0.0, 1e4]], dtype=np.float32)
    rows = np.repeat(rows, 20, axis=0)
    got = sample(step, rows, rng=np.random.default_rng(3))
    expect_equal("sample_next_token(logits up to 1e4)", got, rows.argmax(-1),
                 "a logit 1000 above the others has probability 1; np.exp(1e4) overflows to inf: "
                 "subtract each row's max before np.exp")
    row = np.array([1.0, 2.0, 0.5, 1.95, -3.0, 0.0], dtype=np.float32)  # best beats second by 0.05
    rows = np.repeat(row[None], 200, axis=0)
    got = sample(step, rows, temperature=1e-3, rng=np.random.default_rng(4))
    expect_equal("sample_next_token(temperature=0.001)", got, rows.argmax(-1),
                 "logits / 0.001 are large: subtract each row's max before np.exp; a tiny temperature "
                 "must behave like greedy")
    got = sample(step, rows, temperature=0.05, top_k=2, top_p=0.9, rng=np.random.default_rng(5))
    if not np.isin(got, [1, 3]).all():
        raise CheckFailure("sample_next_token(temperature=0.05, top_k=2, top_p=0.9): drew a token outside "
                           f"the top 2 ({sorted(set(got.tolist()) - {1, 3})})",
                           "filtered tokens get -inf before softmax")


def test_top_k_top_p_together(step):
    """temperature 0.7, top_k=3 and top_p=0.8 in one call: temperature, then top-k, then top-p"""
    row = np.array([3.0, 2.6, 2.2, 1.9, 1.7, 1.5, 0.5, -1.0], dtype=np.float32)
    check_distribution(step, "temperature=0.7, top_k=3, top_p=0.8", row, temperature=0.7, top_k=3, top_p=0.8)


class ConstantModel:
    """A stand-in model whose last-position logits are always ``row`` (any ids, any length)."""

    def __init__(self, row):
        self.row = np.asarray(row, dtype=np.float32)

    def __call__(self, ids):
        ids = np.asarray(ids)
        return np.broadcast_to(self.row, (ids.shape[0], ids.shape[1], self.row.shape[-1])).copy()


def test_generate_sampling(step):
    """generate_tokens samples: one Generator for the loop, fresh draws at every position, same seed same tokens"""
    generate = step.get("generate_tokens")
    row = np.array([1.0, 0.6, 0.3, 0.0, -0.2, -0.5, -0.8, -1.0], dtype=np.float32)
    model = ConstantModel(row)
    ids = np.tile(np.array([[1, 2, 3]], dtype=np.int64), (32, 1))
    what = "generate_tokens(model, ids[32, 3], 40, seed=3, temperature=0.6)"
    with step.errors(what):
        model = wire.callback("stand-in model", model)
        first = np.asarray(generate(model, ids, 40, seed=3, temperature=0.6))
        again = np.asarray(generate(model, ids, 40, seed=3, temperature=0.6))
    expect_equal(f"{what}: ids shape", list(first.shape), [32, 43], "40 new columns after the prompt")
    expect_equal(f"{what}: the prompt", first[:, :3], ids, "keep the prompt and append to it")
    new = first[:, 3:].astype(np.int64)
    if np.all(new == row.argmax()):
        raise CheckFailure(f"{what}: every new token is the argmax {int(row.argmax())}: the loop appends "
                           "the best token, not the sampled one",
                           "pass the sampling options (**sampling) and rng on to sample_next_token")
    if np.all(new == new[:, :1]):
        raise CheckFailure(f"{what}: every position of a row drew the same token (the model's logits are "
                           "the same at every step, so the draws repeat the same random number): the "
                           "Generator is re-created (reseeded) for each token",
                           "create rng = np.random.default_rng(seed) once, before the loop, and pass that rng")
    if not np.array_equal(first, again):
        raise CheckFailure(f"{what}: two runs with seed=3 gave different tokens",
                           "the draws must come from np.random.default_rng(seed), passed as rng")
    freq = np.bincount(new.ravel(), minlength=len(row)) / new.size
    if not fits(freq, hf_probs(row[None], 0.6)[0], new.size):
        flat = fits(freq, hf_probs(row[None])[0], new.size)
        raise CheckFailure(f"{what}: the {new.size} drawn tokens do not follow softmax(logits / 0.6)"
                           + ("\n  they follow softmax(logits): the temperature does not reach sample_next_token"
                              if flat else ""),
                           "pass the sampling options (**sampling) on to sample_next_token")


WRONG_POSITION = 42


def eos_model(stops: dict[int, int], prompt_len: int, vocab: int = 50257):
    """Greedy stand-in: the row whose first id is f emits 100, 101, ... and EOS as new token stops[f]."""
    def model(ids):
        ids = np.asarray(ids)
        b, s = ids.shape
        n = s - prompt_len  # new tokens so far
        out = np.zeros((b, s, vocab), dtype=np.float32)
        out[:, :-1, WRONG_POSITION] = 10.0  # what the earlier positions predict
        for r in range(b):
            out[r, -1, EOS if n == stops[int(ids[r, 0])] else 100 + n] = 10.0
        return out
    return model


def expected_eos(stops, prompt, max_new):
    """Hugging Face's semantics: a finished row continues with EOS; stop when all rows are finished."""
    rows, width = [], min(max_new, max(stops[int(p[0])] for p in prompt) + 1)
    for p in prompt:
        s = stops[int(p[0])]
        new = [100 + n if n < s else EOS for n in range(width)]
        rows.append(list(p) + new)
    return np.array(rows, dtype=np.int64)


def test_generate_eos(step):
    """generate_tokens stops at end-of-text (50256): a finished row gets only EOS, the loop ends when all are"""
    generate = step.get("generate_tokens")
    cases = [("one row, EOS as the 3rd new token", {7: 2}, [[7, 8]], 10),
             ("three rows ending at new tokens 2, 4 and 6", {7: 1, 8: 3, 9: 5}, [[7, 1], [8, 1], [9, 1]], 10),
             ("max_new_tokens reached before EOS", {7: 8}, [[7, 1]], 4)]
    for label, stops, prompt, max_new in cases:
        prompt = np.array(prompt, dtype=np.int64)
        with step.errors(f"generate_tokens(model, ids, {max_new}, eos_token_id={EOS}, greedy=True)"):
            got = np.asarray(generate(wire.callback("stand-in model", eos_model(stops, prompt.shape[1])),
                                      prompt, max_new, eos_token_id=EOS, greedy=True))
        want = expected_eos(stops, prompt, max_new)
        if got.ndim == 2 and np.any(got[:, prompt.shape[1]:] == WRONG_POSITION):
            raise CheckFailure(f"generate_tokens, {label}: appended token {WRONG_POSITION}, which only the "
                               "earlier positions' logits predict: the next token comes from the LAST "
                               f"position\n  got {got.tolist()}", "model(input_ids)[:, -1, :]")
        if got.ndim == 2 and got.shape[0] == want.shape[0] and got.shape[1] != want.shape[1]:
            n_got, n_want = got.shape[1] - prompt.shape[1], want.shape[1] - prompt.shape[1]
            leaks = [r for r in range(len(got)) if (EOS in got[r, prompt.shape[1]:].tolist()) and np.any(
                got[r, prompt.shape[1] + got[r, prompt.shape[1]:].tolist().index(EOS):] != EOS)]
            if n_got == max_new and n_want < max_new and len(prompt) > 1 and leaks:
                why = (f"rows {leaks} kept generating after their end-of-text and the loop ran all "
                       f"{max_new} steps: it stops only if every row produces EOS at the SAME step. A row "
                       "that produced EOS is finished for good: keep a `finished` mask, append eos_token_id "
                       "to finished rows, stop when all are finished")
            elif n_got == max_new and n_want < max_new:
                why = "the loop ignores eos_token_id: it must stop once every row has produced it"
            elif n_got < n_want and np.any(got[:, -1] == EOS) and not np.all(got == EOS, axis=1).any():
                why = ("the loop stops as soon as ONE row produced EOS: the other rows had not finished "
                       "(stop when every row has produced it)")
            elif n_got == n_want - 1:
                why = "the EOS token itself is not in the output: append it, then stop"
            else:
                why = f"{n_got} new tokens, expected {n_want}"
            raise CheckFailure(f"generate_tokens, {label}: {why}\n  expected {want.tolist()}\n  got      {got.tolist()}",
                               "append the token; a row that produced eos_token_id is finished; stop when all are")
        if got.shape == want.shape and not np.array_equal(got, want):
            r, c = (int(i) for i in np.argwhere(got != want)[0])
            after = np.flatnonzero(got[r, prompt.shape[1]:c] == EOS)
            if after.size:
                raise CheckFailure(
                    f"generate_tokens, {label}: row {r} has token {int(got[r, c])} after its end-of-text "
                    f"(EOS at new position {int(after[0])}): a finished row must emit only eos_token_id",
                    "keep a `finished` mask; for finished rows append eos_token_id (np.where), as Hugging "
                    "Face pads them")
        expect_equal(f"generate_tokens, {label}", got, want,
                     "append the token; a row that produced eos_token_id is finished and gets only "
                     "eos_token_id after it; stop when every row is finished")
    with step.errors("generate_tokens(model, ids, 5, eos_token_id=None, greedy=True)"):
        got = np.asarray(generate(wire.callback("stand-in model", eos_model({7: 1}, 2)), np.array([[7, 1]]), 5,
                                  greedy=True))
    expect_equal("generate_tokens without eos_token_id: ids shape", list(got.shape), [1, 7],
                 "with eos_token_id=None never stop early: always max_new_tokens new tokens")


def stand_in_logits(ids):
    """A deterministic fake model, ids -> logits over 50 tokens, that costs nothing to run."""
    ids = np.asarray(ids)
    rng = np.random.default_rng(int(ids.sum()) % 1000)
    return rng.normal(size=(ids.shape[0], ids.shape[1], 50)).astype(np.float32)

def test_generate_matches_hf(step):
    """greedy generate_tokens with the MAX model equals Hugging Face generate(do_sample=False), 12 tokens"""
    generate = step.get("generate_tokens")
    folder, config, _ = harness.checkpoint("small")
    ids = harness.input_ids(config.vocab_size, batch=2, seq=5, seed=5)
    # First a stand-in model (NumPy, instant): a broken loop fails here, before a compile.
    expected = ids.copy()
    for _ in range(4):
        expected = np.concatenate([expected, stand_in_logits(expected)[:, -1].argmax(-1)[:, None]], axis=1)
    with step.errors("generate_tokens(stand_in_model, ids, 4, greedy=True)"):
        got = np.asarray(generate(wire.callback("stand-in model", stand_in_logits), ids, 4, greedy=True))
    expect_equal("generated ids (a stand-in model)", got, expected,
                 "each loop: logits of the LAST position -> argmax -> append as a new column")
    model = harness.solution_model("small", step.device_name)
    with step.errors("generate_tokens(model, ids, 12, greedy=True)"):
        ours = np.asarray(generate(wire.callback("reference GPT-2", model), ids, 12, greedy=True))
    theirs = reference.hf_generate_greedy(folder, ids, 12)
    expect_equal("generated ids", ours, theirs,
                 "append the argmax of the last position's logits, one token per loop, 12 times")
