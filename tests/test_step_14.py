"""Step 14 check: log_softmax equals torch's, cross_entropy equals Hugging Face's loss
(GPT2LMHeadModel(ids, labels=labels).loss) on the same weights, also with padding and with logits
of 1e4, sliding_windows scores each token once with as much context as the window allows, and
perplexity equals Hugging Face's sliding-window perplexity of the same stream.

No MAX runs here: the learner's code is NumPy, and the model its perplexity reads is Hugging
Face's GPT-2 on the check's seeded checkpoint, run in the checking process and handed over as a
stand-in (wire.callback). So the expected number and the learner's come from the very same
logits, and a difference is the learner's arithmetic alone (not MAX's rounding against torch's),
and the check compiles nothing. When a number is off, the check compares it with what each
usual mistake gives on the same logits (targets not shifted, padding scored, base 2, a mean of
row or window means, the overlap scored twice, ...) and names the one it matches.
"""

import math

import numpy as np
import torch

from gpt2course.check import harness, wire
from gpt2course.check.compare import compare
from gpt2course.errors import CheckFailure
from gpt2course.hf import perplexity as hfppl
from gpt2course.hf import reference

STEP = 14
IGNORE = -100
LN2 = math.log(2.0)
RTOL = 1e-4  # float32 log-softmax over 50,257 tokens against torch's: differences near 1e-6


# --------------------------------------------------------------------------- what the check feeds

def hf_model():
    folder, _, _ = harness.checkpoint("small")
    return reference.hf_model(str(folder))


def vocab_size() -> int:
    return harness.checkpoint("small")[1].vocab_size


def window_limit() -> int:
    return harness.checkpoint("small")[1].n_positions


# --------------------------------------------------------------------------- NumPy, only to name mistakes

def _log_probs(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) per position; negative targets index from the end, as NumPy does."""
    lp = _log_probs(logits)
    index = np.where(targets < 0, targets + lp.shape[-1], targets)
    return -np.take_along_axis(lp, index[..., None], axis=-1)[..., 0]


def loss_mistakes(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What the usual wrong cross_entropy returns on these logits and labels: {why: value}."""
    pred, tgt = logits[:, :-1], labels[:, 1:]
    scored = tgt != IGNORE
    nll = _nll(pred, tgt)
    right = float(nll[scored].mean())
    out = {}
    same = labels != IGNORE
    out["the targets are not shifted: the logits at position i predict the token at i + 1, so "
        "compare logits[:, :-1] with labels[:, 1:] (you scored each position against its own token)"] = \
        float(_nll(logits, labels)[same].mean())
    out["the shift goes the wrong way: logits[:, :-1] predict labels[:, 1:] (you compared "
        "logits[:, 1:] with labels[:, :-1])"] = float(_nll(logits[:, 1:], labels[:, :-1])[labels[:, :-1] != IGNORE].mean())
    if not scored.all():
        out["the padding is scored: labels of -100 are not tokens, leave them out of the mean "
            "(as an index, -100 picks the 100th token from the end)"] = float(nll.mean())
        out["the padding is scored as token 0: after replacing -100 by a valid id, leave those "
            "positions out of the mean"] = float(np.where(scored, nll, _nll(pred, np.zeros_like(tgt))).mean())
        out["the sum of the scored tokens is divided by every position, padding included: "
            "divide by the number of scored tokens"] = float(nll[scored].sum() / scored.size)
        rows = [nll[r][scored[r]].mean() for r in range(len(nll)) if scored[r].any()]
        out["this is a mean of each row's mean: Hugging Face takes one mean over every scored token "
            "of the batch, so a row with more scored tokens weighs more"] = float(np.mean(rows))
    out["this is in bits (log base 2): use the natural log (np.log), in nats, as Hugging Face does"] = right / LN2
    out["this is the sum of the negative log-likelihoods: return their mean"] = float(nll[scored].sum())
    out["this is the perplexity, exp(loss): return the loss itself"] = math.exp(right) if right < 700 else math.inf
    out["the sign is wrong: the loss is the mean of -log p, a positive number"] = -right
    return out


def expect_number(what: str, got, expected: float, mistakes: dict[str, float], hint: str,
                  rtol: float = RTOL) -> None:
    """``got`` equals ``expected`` (relative ``rtol``); else the failure names the mistake it matches."""
    try:
        value = float(np.asarray(got, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        shape = list(np.shape(got)) if hasattr(got, "shape") else type(got).__name__
        raise CheckFailure(f"{what}: returned {shape}, expected one number", "return a Python float: float(...)")
    if not math.isfinite(value) and math.isfinite(expected):
        raise CheckFailure(
            f"{what}: returned {value}, Hugging Face gives {expected:.6f}\n  looks like: np.exp overflowed: "
            "exp of a logit above ~89 is inf in float32 (and inf / inf is NaN). Subtract each row's "
            "maximum before np.exp, as log_softmax does (TODO 1)", hint)
    if abs(value - expected) <= rtol * abs(expected) + 1e-6:
        return
    lines = [f"{what}: differs from Hugging Face's",
             f"  expected {expected:.6f}", f"  got      {value:.6f} (relative error {abs(value - expected) / abs(expected):.2e})"]
    for why, trap in mistakes.items():
        if math.isfinite(trap) and abs(trap - expected) > rtol * abs(expected) + 1e-6 \
                and abs(value - trap) <= 1e-4 * abs(trap) + 1e-5:
            lines.append(f"  looks like: {why}")
            break
    raise CheckFailure("\n".join(lines), hint)


def call(step, export: str, *args, **kwargs):
    fn = step.get(export)
    shown = ", ".join([*(f"[{', '.join(map(str, np.shape(a)))}]" if hasattr(a, "shape") else "model"
                         for a in args), *(f"{k}={v}" for k, v in kwargs.items())])
    with step.errors(f"{export}({shown})"):
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- log_softmax and cross_entropy

def test_log_softmax(step):
    """log_softmax equals torch.log_softmax, also on logits of 1e4 (no overflow)"""
    rng = harness.rng(14)
    for label, scale in (("logits ~ N(0, 3)", 3.0), ("logits up to ~1e4", 3000.0)):
        x = (rng.normal(0.0, 1.0, size=(2, 5, 1000)) * scale).astype(np.float32)
        want = torch.log_softmax(torch.from_numpy(x), dim=-1).numpy()
        got = np.asarray(call(step, "log_softmax", x))
        if got.shape == want.shape and not np.isfinite(got).all():
            raise CheckFailure(
                f"log_softmax({label}): {int((~np.isfinite(got)).sum())} values are inf or NaN; torch's "
                "are all finite\n  looks like: np.exp overflowed (exp(89) is already inf in float32): "
                "subtract each row's maximum before np.exp",
                "shifted = logits - logits.max(axis=-1, keepdims=True); shifted - np.log(np.exp(shifted).sum(...))")
        compare(f"log_softmax({label})", got, want, atol=1e-4, rtol=1e-5, traps={
            "softmax": (np.exp(want), "these are probabilities (softmax); return their log"),
            "log2": (want / LN2, "this is log base 2: use np.log (natural log)"),
            "no-normalise": (x - x.max(-1, keepdims=True), "the log of the sum of exp(x - max) is not "
                             "subtracted: log_softmax = shifted - log(sum(exp(shifted)))"),
        }, hint="subtract each row's max, then subtract the log of the sum of the exponentials")


def test_cross_entropy_matches_hf(step):
    """cross_entropy equals Hugging Face's GPT2LMHeadModel(ids, labels=ids).loss"""
    model = hf_model()
    ids = harness.input_ids(vocab_size(), batch=2, seq=12, seed=141)
    logits = hfppl.hf_logits(model, ids)
    expected = hfppl.hf_loss(model, ids, ids)
    got = call(step, "cross_entropy", logits, ids)
    expect_number("cross_entropy(logits [2, 12, 50257], labels = the ids)", got, expected,
                  loss_mistakes(logits, ids),
                  "the mean over positions 0..seq-2 of -log_softmax(logits)[position, the NEXT token]")


def test_cross_entropy_ignores_padding(step):
    """labels of -100 (padding, a prompt) are not scored: equals Hugging Face's loss with the same labels"""
    model = hf_model()
    ids = harness.input_ids(vocab_size(), batch=2, seq=16, seed=142)
    ids[1, 10:] = 50256                      # row 1 is a shorter text, padded with <|endoftext|>
    labels = ids.copy()
    labels[1, 10:] = IGNORE                  # ... and its padding is not scored
    labels[0, :4] = IGNORE                   # row 0: a 4-token prompt that is context, not scored
    logits = hfppl.hf_logits(model, ids)
    expected = hfppl.hf_loss(model, ids, labels)
    got = call(step, "cross_entropy", logits, labels)
    expect_number("cross_entropy(logits [2, 16, 50257], labels with -100 on row 0's first 4 and "
                  "row 1's last 6)", got, expected, loss_mistakes(logits, labels),
                  "score only the targets that are not -100, and take one mean over all of them "
                  "(the batch's scored tokens, not each row's mean)")


def test_cross_entropy_large_logits(step):
    """logits of 1e4 give a finite loss equal to Hugging Face's (the maximum is subtracted)"""
    model = hf_model()
    ids = harness.input_ids(vocab_size(), batch=2, seq=8, seed=143)
    logits = hfppl.hf_logits(model, ids)
    logits = (logits / np.abs(logits).max() * 1e4).astype(np.float32)  # the same ranking, values to 1e4
    expected = hfppl.hf_loss_function(logits, ids)
    got = call(step, "cross_entropy", logits, ids)
    expect_number("cross_entropy(logits scaled to 1e4)", got, expected, loss_mistakes(logits, ids),
                  "np.exp(1e4) is inf: compute log-softmax with each row's maximum subtracted first")


# --------------------------------------------------------------------------- the windows

PLANS = [(300, 64, 32), (300, 64, 64), (50, 64, 32), (100, 40, 25), (10, 8, 3), (64, 64, 16)]


def _coverage(n_tokens: int, windows) -> str | None:
    """How a plan fails to score each token once (the first token is context only), or None."""
    counts = np.zeros(n_tokens, dtype=int)
    for i, (begin, end, n_new) in enumerate(windows):
        counts[max(end - n_new, 0):end] += 1
    counts[0] = max(counts[0] - 1, 0)  # token 0 is "scored" by no one: it has nothing before it
    twice = np.flatnonzero(counts[1:] > 1) + 1
    never = np.flatnonzero(counts[1:] == 0) + 1
    if twice.size:
        return (f"tokens {int(twice[0])}..{int(twice[-1])} are scored more than once: a window's "
                "n_new must count only the tokens after the previous window's end (the overlap is "
                "context, already scored)")
    if never.size:
        return (f"tokens {int(never[0])}..{int(never[-1])} are never scored: the windows must go on "
                "until one ends at n_tokens, and each scores from the previous window's end")
    return None


def test_sliding_windows(step):
    """sliding_windows: each token scored once, with as much context as the window allows (Hugging Face's loop)"""
    for n_tokens, window, stride in PLANS:
        expected = hfppl.window_plan(n_tokens, window, stride)
        what = f"sliding_windows({n_tokens}, window={window}, stride={stride})"
        got = call(step, "sliding_windows", n_tokens, window, stride)
        try:
            got = [tuple(int(v) for v in w) for w in got]
        except (TypeError, ValueError):
            raise CheckFailure(f"{what}: returned {str(got)[:200]}, expected a list of (begin, end, n_new)",
                               "append one (begin, end, n_new) tuple of ints per window") from None
        if got == expected:
            continue
        lines = [f"{what}: differs from Hugging Face's windows",
                 f"  expected {expected}", f"  got      {got}"]
        too_long = [w for w in got if len(w) == 3 and w[1] - w[0] > window]
        starts = [w[0] for w in got if len(w) == 3]
        why = None
        if any(len(w) != 3 for w in got):
            why = "each window is a tuple of three numbers: (begin, end, n_new)"
        elif too_long:
            why = f"window {too_long[0]} reads {too_long[0][1] - too_long[0][0]} tokens; at most {window}"
        elif len(starts) > 1 and starts[1] - starts[0] == window != stride:
            why = f"the windows start every {window} tokens: they must move on by the stride ({stride})"
        elif got and got[-1][1] == n_tokens and len(got) > len(expected):
            why = "windows go on after one reached the end of the stream: stop once end == n_tokens"
        else:
            why = _coverage(n_tokens, got)
        if why:
            lines.append(f"  looks like: {why}")
        raise CheckFailure("\n".join(lines), "begin = 0, stride, 2 * stride, ...; end = min(begin + window, "
                           "n_tokens); n_new = end - the previous end; stop after end == n_tokens")


# --------------------------------------------------------------------------- perplexity

class StandIn:
    """Hugging Face's GPT-2 as the model the learner's perplexity calls: ids [batch, seq] -> logits.
    It remembers what it was asked, to say what went wrong with the windows."""

    def __init__(self, model, stream: np.ndarray, window: int):
        self.model, self.stream, self.window = model, stream, window
        self.calls: list[tuple[int, ...]] = []
        self.foreign = 0

    def __call__(self, ids):
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"the model takes token ids [batch, seq] (integers); got shape "
                             f"{list(ids.shape)}, dtype {ids.dtype} (a window is ids[begin:end][None, :])")
        if ids.shape[1] > self.window:
            raise ValueError(f"the model was asked to read {ids.shape[1]} tokens at once; the window is "
                             f"{self.window} (window = the most tokens one call reads)")
        if ids.shape[1] == 0:
            raise ValueError("the model was called on an empty window")
        self.calls.append(tuple(ids.shape))
        return hfppl.hf_logits(self.model, ids.astype(np.int64))


def _window_nll(model, stream, plan):
    """Per window of ``plan``: (-log p of each position's next token [len - 1], the tokens it scores)."""
    out = []
    for begin, end, trg_len in plan:
        ids = stream[begin:end][None, :]
        nll = _nll(hfppl.hf_logits(model, ids)[:, :-1], ids[:, 1:])[0]
        out.append((nll, min(trg_len, end - begin - 1)))
    return out


def perplexity_mistakes(model, stream, window, stride) -> dict[str, float]:
    """What the usual wrong perplexity returns on this stream, with Hugging Face's logits."""
    plan = hfppl.window_plan(stream.size, window, stride)
    per = _window_nll(model, stream, plan)
    scored = [nll[len(nll) - k:] if k else nll[:0] for nll, k in per]
    flat = np.concatenate(scored)
    mean = float(flat.mean())
    out = {
        "the windows' overlap is scored twice: each window must score only its last n_new tokens "
        "(the ones after the previous window's end); the rest is context":
            math.exp(float(np.concatenate([nll for nll, _ in per]).mean())),
        "this averages the windows' losses (a mean of means): weight each window by the tokens it "
        "scored, i.e. sum the negative log-likelihoods and divide once by the number of tokens":
            math.exp(float(np.mean([s.mean() for s in scored if s.size]))),
        "this averages the windows' perplexities: take exp once, of the mean over all tokens":
            float(np.mean([math.exp(s.mean()) for s in scored if s.size])),
        "this is 2 to the power of the mean loss in nats: the loss is in nats (natural log), so "
        "perplexity = np.exp(mean loss)": 2.0 ** mean,
        "this is exp of a loss in bits: use the natural log throughout (np.log, np.exp)": math.exp(mean / LN2),
        "each window's first n_new tokens are scored (the ones with the least context): score the "
        "LAST n_new tokens of the window":
            math.exp(float(np.concatenate([nll[:k] for nll, k in per]).mean())),
        "this is the mean loss, not the perplexity: return np.exp(mean loss)": mean,
    }
    if stride != window:
        plain = _window_nll(model, stream, hfppl.window_plan(stream.size, window, window))
        out["the windows do not overlap (they move on by the window, not the stride): each token "
            "then has less context"] = math.exp(float(np.concatenate([n for n, _ in plain]).mean()))
    return out


def check_perplexity(step, n_tokens: int, window: int, stride: int, seed: int) -> None:
    model = hf_model()
    stream = harness.input_ids(vocab_size(), batch=1, seq=n_tokens, seed=seed)[0]
    expected = hfppl.hf_sliding_window(model, stream, window, stride).perplexity
    stand_in = StandIn(model, stream, window)
    what = f"perplexity(model, {n_tokens} token ids, window={window}, stride={stride})"
    with step.errors(what):
        got = step.get("perplexity")(wire.callback("stand-in model (Hugging Face's GPT-2)", stand_in),
                                     stream, window=window, stride=stride)
    plan = hfppl.window_plan(n_tokens, window, stride)
    calls = f"\n  the model was called {len(stand_in.calls)} times (Hugging Face's loop: {len(plan)} windows)"
    try:
        expect_number(what, got, expected, perplexity_mistakes(model, stream, window, stride),
                      "sum -log p over each window's last n_new tokens, count them, and return "
                      "np.exp(total / count) once at the end")
    except CheckFailure as exc:
        raise CheckFailure(exc.message + (calls if len(stand_in.calls) != len(plan) else ""), exc.hint) from None


def test_perplexity_matches_hf(step):
    """perplexity of a 300-token stream (window 64, stride 32) equals Hugging Face's sliding-window perplexity"""
    check_perplexity(step, 300, 64, 32, seed=144)


def test_perplexity_edge_cases(step):
    """stride = window (no overlap), a stream shorter than the window, a short last window: Hugging Face's numbers"""
    for n_tokens, window, stride, seed in ((150, 64, 64, 145), (40, 64, 32, 146), (130, 48, 20, 147)):
        check_perplexity(step, n_tokens, window, stride, seed)
