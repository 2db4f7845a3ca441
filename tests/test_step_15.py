"""Step 15 check: per-row int8 quantization of the LM head equals a NumPy reference on the same
weights (the int8 values and the scales exactly), and Int8LMHead computes the logits from them:
the reference's (h @ q.T) * scale within float32 rounding, and so Hugging Face's float32 logits
within the error quantization allows.

The quantization is NumPy, so its sub-checks come first and compile nothing: a mistake there
(one scale for the whole matrix, a scale per column, no rounding, no clipping) fails in seconds.
Only the head's logits compile a MAX graph, once, with the reference's int8 weight loaded, so
that sub-check judges the Module alone. The last line reports the bytes the int8 head saves for
GPT-2 small (computed from the dtypes your code returns; nothing here is timed).
"""

import numpy as np
import pytest

from gpt2course.check import harness
from gpt2course.check.compare import compare
from gpt2course.errors import CheckFailure

STEP = 15
QMAX = 127
U32 = 2.0 ** -24     # float32's unit roundoff
TIE = 1e-4           # w / scale this close to a half-way point may round either way (see _check_q)
GPT2_SMALL_WEIGHTS = 123_654_912  # the numbers decoding reads a token (book: Make it fast)
GPT2_SMALL = (768, 50257)  # the LM head's n_embd x vocab_size


# --------------------------------------------------------------------------- the NumPy reference

def ref_scales(w: np.ndarray) -> np.ndarray:
    absmax = np.abs(w).max(axis=1)
    return np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)


def ref_quantize(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / s[:, None]), -QMAX, QMAX).astype(np.int8)


def sample_weight(seed: int) -> np.ndarray:
    """A [48, 20] weight whose rows differ in size by 1,000x (one scale for the matrix would
    flatten the small ones to 0), with a row of zeros, a row whose largest magnitude is negative
    and a row with one outlier. 48 rows and 20 columns: a scale per column has the wrong shape."""
    rng = harness.rng(seed)
    w = rng.normal(0.0, 1.0, size=(48, 20)) * 10.0 ** rng.uniform(-2.0, 1.0, size=(48, 1))
    w[3] = 0.0
    w[7] = -np.abs(w[7])
    w[7, 5] *= 3.0
    w[11, 2] = 40.0 * np.abs(w[11]).max()
    return w.astype(np.float32)


def lm_head_weight() -> np.ndarray:
    """The check's checkpoint's LM head, [vocab_size, n_embd] (tied to wte)."""
    return np.asarray(harness.checkpoint("small")[2]["lm_head.weight"], dtype=np.float32)


def call(step, export: str, *args):
    fn = step.get(export)
    shown = ", ".join(f"[{', '.join(map(str, np.shape(a)))}]" for a in args)
    with step.errors(f"{export}({shown})"):
        return fn(*args)


def _array(got, what: str, expected: str) -> np.ndarray:
    try:
        return np.asarray(got)
    except Exception:
        raise CheckFailure(f"{what}: returned {type(got).__name__}, expected {expected}",
                           "return a NumPy array") from None


# --------------------------------------------------------------------------- the scales

def scale_mistakes(w: np.ndarray) -> list[tuple[np.ndarray, str, np.ndarray | None]]:
    """(what a usual wrong row_scales returns on w, why, on which rows to compare: None for every
    row that is not zero)."""
    absmax = np.abs(w).max(axis=1)
    largest = w.max(axis=1)
    return [
        (np.full(w.shape[0], np.abs(w).max() / QMAX), "one scale for the whole matrix: each row needs its own, "
         "max over axis=1 of |w| (a row of small numbers then keeps its precision)", None),
        (largest / QMAX, "the row's largest value, not its largest magnitude: the scale must fit the "
         "most negative number too, so take np.abs first",
         (largest > 0) & (largest < absmax)),
        (absmax, "the scale is max |row| itself: divide by 127 so that the largest value becomes 127", None),
        (absmax / 128, "divided by 128: the range here is symmetric, -127..127, so divide by 127", None),
        (absmax / 127.5, "divided by 127.5 (int8's [-128, 127] halved): the range here is -127..127, "
         "divide by 127", None),
        (absmax / 255, "divided by 255 (the 256 int8 values): the range is -127..127, divide by 127", None),
        (QMAX / np.where(absmax > 0, absmax, 1), "this is 1 / scale (127 / max |row|): the scale is "
         "max |row| / 127", None),
    ]


def check_scales(what: str, got, w: np.ndarray) -> np.ndarray:
    """``got`` is row_scales(w): shape [rows], float32, max |row| / 127 to float32 rounding;
    a zero row's scale may be any positive number (its int8 values are 0 whatever it is)."""
    rows, cols = w.shape
    got = _array(got, what, f"a float32 array [{rows}]")
    hint = "np.abs(weight).max(axis=1) / QMAX: one number per row, float32"
    shape = list(got.shape)
    if shape in ([], [1]):
        raise CheckFailure(f"{what}: shape {shape}, expected [{rows}] (one scale per row)\n"
                           "  looks like: one scale for the whole matrix: the max ran over every entry; "
                           "take it over axis=1, each row on its own", hint)
    if shape == [cols]:
        raise CheckFailure(f"{what}: shape {shape}, expected [{rows}] (one scale per row)\n"
                           f"  looks like: a scale per column: axis=0 takes the max down each of the {cols} "
                           f"columns; the head needs one scale per row ({rows} rows, one per vocabulary token), axis=1",
                           hint)
    if shape == [rows, 1]:
        raise CheckFailure(f"{what}: shape {shape}, expected [{rows}]: the scales are a 1-D array",
                           "without keepdims=True (or .reshape(-1))")
    if shape != [rows]:
        raise CheckFailure(f"{what}: shape {shape}, expected [{rows}] (one scale per row)", hint)
    if not np.issubdtype(got.dtype, np.number) or np.issubdtype(got.dtype, np.complexfloating):
        raise CheckFailure(f"{what}: dtype {got.dtype}, expected float32", hint)
    values = got.astype(np.float64)
    zero = ~np.abs(w).any(axis=1)
    bad_zero = zero & ~(np.isfinite(values) & (values > 0))
    if bad_zero.any():
        r = int(np.flatnonzero(bad_zero)[0])
        raise CheckFailure(
            f"{what}: row {r} is all zeros and its scale is {got[r]}\n  a row of zeros needs a positive, "
            "finite scale (1.0 is the usual choice): its int8 values are 0 whatever the scale, but 0 / 0 "
            "is NaN, and NaN cast to int8 is garbage",
            "np.where(absmax > 0, absmax / QMAX, 1.0)")
    want = ref_scales(w).astype(np.float64)
    live = ~zero
    off = live & ~np.isclose(values, want, rtol=1e-6, atol=0.0)
    if off.any():
        r = int(np.flatnonzero(off)[0])
        lines = [f"{what}: {int(off.sum())} of {int(live.sum())} scales differ from the NumPy reference "
                 f"(max |row| / 127)",
                 f"  first at row {r}: expected {want[r]:.7g}, got {values[r]:.7g}"]
        for trap, why, rows in scale_mistakes(w):
            rows = live if rows is None else rows & live
            if rows.any() and np.allclose(values[rows], trap[rows], rtol=1e-5, atol=0.0):
                lines.append(f"  looks like: {why}")
                break
        raise CheckFailure("\n".join(lines), hint)
    if got.dtype != np.float32:
        raise CheckFailure(f"{what}: the values are right but the dtype is {got.dtype}; the head stores "
                           "float32 scales (4 bytes each)", ".astype(np.float32)")
    return got


# --------------------------------------------------------------------------- the int8 values

def check_q(what: str, got, w: np.ndarray, s: np.ndarray, mistakes=()) -> np.ndarray:
    """``got`` is the int8 quantization of ``w`` with the per-row scales ``s``: the reference's
    values exactly, except where w / s lies within TIE of a half-way point (k + 0.5), where
    float32 rounding of an equivalent formula (w * (127 / max) against w / (max / 127)) may land
    on either side, so either neighbour is accepted."""
    got = _array(got, what, "an int8 array")
    check = list(w.shape)
    if list(got.shape) != check:
        raise CheckFailure(f"{what}: shape {list(got.shape)}, expected {check} (one int8 value per weight)",
                           "divide each row by its scale: weight / scale[:, None] keeps weight's shape")
    if not (np.issubdtype(got.dtype, np.integer) or np.issubdtype(got.dtype, np.floating)):
        raise CheckFailure(f"{what}: dtype {got.dtype}, expected int8", ".astype(np.int8), after rounding and clipping")
    x = w.astype(np.float64) / s.astype(np.float64)[:, None]
    want = ref_quantize(w, s)
    near_tie = np.abs(np.abs(x - np.floor(x)) - 0.5) < TIE
    values = got.astype(np.float64)
    diff = values - want
    bad = (diff != 0) & ~(near_tie & (np.abs(diff) == 1))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        lines = [f"{what}: {int(bad.sum())} of {bad.size} int8 values differ from the NumPy reference "
                 "clip(round(w / scale), -127, 127)",
                 f"  first at {list(idx)}: w / scale = {x[idx]:.4f}, expected {int(want[idx])}, got {values[idx]:g}"]
        why = _q_mistake(values, x, want, bad, mistakes)
        if why:
            lines.append(f"  looks like: {why}")
        raise CheckFailure("\n".join(lines), "np.clip(np.round(weight / scale[:, None]), -QMAX, QMAX).astype(np.int8)")
    if got.dtype != np.int8:
        raise CheckFailure(f"{what}: the values are right but the dtype is {got.dtype}; the point is one "
                           f"byte per weight ({got.dtype.itemsize} here)", ".astype(np.int8), after np.clip")
    return got


def _q_mistake(values, x, want, bad, mistakes) -> str | None:
    clipped = np.abs(x) > QMAX + 0.5
    wrapped = clipped & bad & (np.abs(values) != QMAX) & (values != -128)
    if wrapped.any():
        i = tuple(int(k) for k in np.argwhere(wrapped)[0])
        return (f"values beyond 127 are not clipped: w / scale = {x[i]:.1f} became {values[i]:g} "
                f"(int8 holds -128..127 and wraps around: 128 becomes -128); np.clip to -127..127 before "
                ".astype(np.int8)")
    if (values == -128).any():
        return "a value is -128: the range is symmetric, -127..127 (clip at -QMAX), so that -w quantizes to -q"
    for unrounded, rounding, why in (
            (x, np.trunc, "no rounding: .astype(np.int8) truncates toward zero (2.7 becomes 2, -2.7 becomes -2); "
             "np.round first"),
            (x, np.floor, "rounded down (np.floor): round to the nearest integer, np.round"),
            (x, np.ceil, "rounded up (np.ceil): round to the nearest integer, np.round"),
            *((u, np.round, w) for u, w in mistakes)):
        if _matches(values, unrounded, rounding):
            return why
    return None


def _matches(values: np.ndarray, unrounded: np.ndarray, rounding) -> bool:
    """``values`` are clip(rounding(unrounded)), up to float32 rounding: off by one only where the
    unrounded value is within TIE of an integer or a half-way point (the learner's float32 126.9999
    may be 127.0)."""
    trap = np.clip(rounding(unrounded), -QMAX, QMAX)
    frac = np.abs(unrounded - np.floor(unrounded))
    near = (np.minimum(frac, 1 - frac) < TIE) | (np.abs(frac - 0.5) < TIE)
    off = (values != trap) & ~(near & (np.abs(values - trap) == 1))
    return np.count_nonzero(off) <= max(1, values.size // 10000)


# --------------------------------------------------------------------------- quantization (NumPy)

def test_row_scales(step):
    """row_scales: one float32 scale per row, max |row| / 127 (a row of zeros gets a positive scale)"""
    w = sample_weight(151)
    check_scales("row_scales(weight [48, 20])", call(step, "row_scales", w), w)


def test_quantize(step):
    """quantize: round(w / scale) of each row as int8, the NumPy reference's values"""
    w = sample_weight(152)
    s = ref_scales(w)
    check_q("quantize(weight [48, 20], scale [48])", call(step, "quantize", w, s), w, s,
            mistakes=[(w.astype(np.float64) * s[:, None], "multiplied by the scale: quantizing divides, "
                       "w / scale; dequantizing multiplies back")])


def test_quantize_clips(step):
    """quantize clips to -127..127 when a scale is smaller than max |row| / 127 (int8 would wrap around)"""
    w = sample_weight(153)
    # Scales 25% too small, as a scale chosen to ignore an outlier, or rounded down to bf16, can
    # be: the largest values of each row then land near 160 and must saturate at +-127.
    s = (ref_scales(w) * 0.8).astype(np.float32)
    check_q("quantize(weight [48, 20], scales 0.8 x max |row| / 127)", call(step, "quantize", w, s), w, s)


def test_quantize_rows(step):
    """quantize_rows of the LM head's weight [vocab_size, n_embd]: the reference's int8 values and scales"""
    w = lm_head_weight()
    shape = f"[{w.shape[0]}, {w.shape[1]}]"
    got = call(step, "quantize_rows", w)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailure(f"quantize_rows(lm_head.weight {shape}): returned {type(got).__name__}, expected "
                           "a pair (q int8, scale float32)", "return quantize(weight, scale), scale")
    q, s = got
    check_scales(f"quantize_rows(lm_head.weight {shape})'s scales", s, w)
    s_ref = ref_scales(w)
    glob = np.float32(np.abs(w).max() / QMAX)
    check_q(f"quantize_rows(lm_head.weight {shape})'s int8 values", q, w, s_ref, mistakes=[
        (w.astype(np.float64) / glob, "one scale for the whole matrix: each row needs its own")])
    step.cache["dtypes"] = (np.asarray(q).dtype, np.asarray(s).dtype)


# --------------------------------------------------------------------------- the head (MAX, compiled once)

def head_weights() -> dict[str, np.ndarray]:
    """The reference's int8 weight and scales of the LM head: what the check loads into the
    learner's Int8LMHead, so that its sub-check judges the Module alone."""
    w = lm_head_weight()
    s = ref_scales(w)
    return {"weight": ref_quantize(w, s), "scale": s}


def make_head(cls):
    _, config, _ = harness.checkpoint("small")
    return cls(config.n_embd, config.vocab_size)


HEAD_HINT = ("self.weight = Tensor.zeros([vocab_size, n_embd], dtype=DType.int8); "
             "self.scale = Tensor.ones([vocab_size], dtype=DType.float32)")


def test_parameters(step):
    """Int8LMHead(n_embd, vocab_size) has weight [vocab_size, n_embd] and scale [vocab_size] (they load as lm_head.weight, lm_head.scale)"""
    harness.parameters_match(step, "Int8LMHead", make_head, head_weights(), "Int8LMHead", hint=HEAD_HINT)


def head_logits(step) -> np.ndarray:
    cap = harness.capture("small")
    hidden = cap.outputs["transformer.ln_f"].astype(np.float32)
    try:
        out = harness.outputs(step, "Int8LMHead", make_head, head_weights(), [hidden], mode="compile",
                              what="Int8LMHead", key="logits", hint=HEAD_HINT)
    except CheckFailure as exc:
        if "not assignable to parameter" in exc.message:
            raise CheckFailure(exc.message + "\n  the check loads an int8 weight and float32 scales: the "
                               "parameters must have those dtypes", HEAD_HINT) from None
        raise
    return out[0]


def test_logits(step):
    """Int8LMHead's logits: the NumPy reference's (h @ q.T) * scale, and Hugging Face's float32 logits within the quantization bound"""
    got = head_logits(step)
    cap = harness.capture("small")
    h = cap.outputs["transformer.ln_f"].astype(np.float64)
    wts = head_weights()
    q, s = wts["weight"].astype(np.float64), wts["scale"].astype(np.float64)
    hq = h @ q.T
    want = hq * s
    # Float32 rounding: any order of summing n_embd products is off by at most
    # gamma_n * sum |h * q| * scale with gamma_n ~ n * u (Higham, Accuracy and Stability, 3.1);
    # allowed: twice that with n_embd + 2 (the cast and the scale's multiplication).
    n = h.shape[-1]
    rounding = 2 * (n + 2) * U32 * (np.abs(h) @ np.abs(q).T) * s
    compare("logits [batch, seq, vocab_size]", got, want, atol=float(rounding.max()) + 1e-7, rtol=1e-6,
            against="the NumPy reference", traps={
                "twice": (lambda: want * s, "the scales are applied twice: once on the weight (dequantized) "
                          "and again on the logits; multiply by them once"),
                "never": (lambda: hq, "the scales are not applied: the int8 values are multiplied as they are; "
                          "multiply the product by self.scale"),
                "divided": (lambda: hq / s, "the logits are divided by the scales: w ~ q * scale, so multiply"),
            }, hint="logits = (hidden_states @ self.weight.cast(DType.float32).T) * self.scale")
    # What quantization costs against Hugging Face's float32 logits: each weight is off by at
    # most scale / 2 (round to nearest; nothing is clipped with these scales), so each logit by
    # at most scale[v] / 2 * sum_i |h_i|, plus float32 rounding on both sides.
    hf = cap.logits.astype(np.float64)
    bound = s / 2 * np.abs(h).sum(-1, keepdims=True) + 2 * rounding + 1e-5 * (1 + np.abs(hf))
    err = np.abs(got.astype(np.float64) - hf)
    if not (err <= bound).all():
        i = tuple(int(k) for k in np.unravel_index(np.argmax(err - bound), err.shape))
        raise CheckFailure(
            f"logits: further from Hugging Face's float32 logits than int8 weights allow\n"
            f"  at {list(i)}: yours {got[i]:.6g}, Hugging Face's {hf[i]:.6g}: off by {err[i]:.3g}; the bound there is "
            f"scale[{i[2]}] / 2 * sum |h| = {s[i[2]] / 2 * np.abs(h[i[:2]]).sum():.3g} (each int8 weight times its "
            f"scale is within scale / 2 of the float32 weight)",
            "logits = (hidden_states @ self.weight.cast(DType.float32).T) * self.scale")
    top = (got.argmax(-1) == hf.argmax(-1))
    step.note(f"int8 head vs Hugging Face's float32 logits: max error {err.max():.2e} (the quantization bound "
              f"allows up to {bound.max():.2e} here); the same top token at {int(top.sum())} of {top.size} positions")


def test_bytes_saved(step):
    """the head's bytes: GPT-2 small's LM head (768 x 50,257) in int8 with float32 scales, against float32"""
    dtypes = step.cache.get("dtypes")
    if dtypes is None:
        pytest.skip("skipped: quantize_rows must pass first")
    q_dtype, s_dtype = dtypes
    n_embd, vocab = GPT2_SMALL
    fp32 = 4 * n_embd * vocab
    int8 = q_dtype.itemsize * n_embd * vocab + s_dtype.itemsize * vocab
    if int8 >= fp32:
        raise CheckFailure(f"the int8 head takes {int8:,} bytes, float32 {fp32:,}", "int8 values and float32 scales")
    step.note(f"GPT-2 small's LM head ({n_embd} x {vocab:,}): {fp32:,} bytes in float32, {int8:,} in int8 with "
              f"float32 scales: {fp32 - int8:,} bytes saved ({fp32 / int8:.2f}x fewer) on every decoded token")
    # What that is worth in speed where decoding is bound by reading the weights (a CPU): the
    # whole model's bytes per token before and after, arithmetic, not a timing.
    model = 4 * GPT2_SMALL_WEIGHTS
    step.note(f"decoding reads {model / 1e6:.1f} MB of weights a token in float32, {(model - fp32 + int8) / 1e6:.1f} MB "
              f"with this head: up to {model / (model - fp32 + int8):.2f}x faster where memory bandwidth is the "
              f"limit; measure it with `make bench ARGS='--dtype int8'` (every matrix in int8, the book's 'Make it fast')")
