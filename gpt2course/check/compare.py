"""Comparisons that explain themselves: shape, then dtype, then values, then known traps.

Every failure is a ``CheckFailure`` carrying what a learner needs: which
tensor, expected versus actual, how far off and where, and a hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gpt2course.errors import CheckFailure


def as_float32(x, name: str = "output") -> np.ndarray:
    """Any tensor-like (MAX Tensor, torch tensor, NumPy array) -> float32 NumPy array on the host."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().float().numpy()
    elif not isinstance(x, np.ndarray):
        try:
            x = np.from_dlpack(_to_cpu(x))
        except Exception as exc:
            raise CheckFailure(
                f"{name}: could not read the result as an array ({type(x).__name__}: {exc})",
                "return a MAX Tensor from forward()") from None
    return np.asarray(x, dtype=np.float32)


def _to_cpu(x):
    try:
        from max.driver import CPU

        if hasattr(x, "device") and not isinstance(x.device, CPU):
            return x.to(CPU())
    except Exception:
        pass
    return x


def describe(arr: np.ndarray) -> str:
    return f"shape {list(arr.shape)}, dtype {arr.dtype}"


def check_shape(name: str, actual_shape, expected_shape, hint: str | None = None) -> None:
    actual_shape, expected_shape = list(actual_shape), list(expected_shape)
    if actual_shape != expected_shape:
        raise CheckFailure(
            f"{name}: wrong shape\n  expected {expected_shape}\n  actual   {actual_shape}",
            hint or "print the shape after each line of forward() to find where it changes")


def compare(
    name: str,
    actual,
    expected: np.ndarray,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    traps: Mapping[str, tuple[np.ndarray | Callable[[], np.ndarray], str]] | None = None,
    hint: str | None = None,
    against: str = "Hugging Face",
) -> str:
    """Raises CheckFailure unless ``actual`` matches ``expected`` within tolerance.

    ``traps`` maps a known mistake's name to (what that mistake would output,
    its explanation). When the learner's numbers match a trap better than the
    truth, the failure names the mistake. ``against``: who computed ``expected``, as the
    failure names it ("Hugging Face"; step 15's "the NumPy reference"). Returns a one-line
    summary on success.
    """
    expected = np.asarray(expected, dtype=np.float32)
    if hasattr(actual, "dtype") and not isinstance(actual, np.ndarray) and not hasattr(actual, "detach"):
        dtype = str(actual.dtype)
        if "float32" not in dtype.lower():
            raise CheckFailure(f"{name}: dtype {dtype}, expected float32",
                               "keep every tensor in float32; do not cast")
    actual = as_float32(actual, name)
    check_shape(name, actual.shape, expected.shape, hint)
    with np.errstate(invalid="ignore", over="ignore"):
        return _compare(name, actual, expected, atol, rtol, traps, hint, against)


def _first(mask: np.ndarray) -> str:
    return str([int(i) for i in np.argwhere(mask)[0]])


def _count(n: int, what: str, plural: str | None = None) -> str:
    return f"1 value is {what}" if n == 1 else f"{n} values are {plural or what}"


def _nonfinite_lines(actual: np.ndarray, expected: np.ndarray, against: str = "Hugging Face") -> list[str]:
    """Plain sentences for the infinities and NaNs that differ (where, how many, first index)."""
    lines = []
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    for sign, word in ((-1, "-inf"), (1, "+inf")):
        inf_e = np.isinf(expected) & (np.sign(expected) == sign)
        finite_there = inf_e & np.isfinite(actual)
        if finite_there.any():
            lines.append(f"  {_count(int(finite_there.sum()), 'finite')} where {against} has {word} "
                         f"(first at {_first(finite_there)})")
        flipped = inf_e & np.isinf(actual) & (np.sign(actual) != sign)
        if flipped.any():
            lines.append(f"  {_count(int(flipped.sum()), '-inf' if sign > 0 else '+inf')} where {against} "
                         f"has {word} (first at {_first(flipped)})")
        nan_there = inf_e & nan_a
        if nan_there.any():
            lines.append(f"  {_count(int(nan_there.sum()), 'NaN')} where {against} has {word} "
                         f"(first at {_first(nan_there)})")
    finite_e = np.isfinite(expected)
    for mask, what in ((finite_e & nan_a, "NaN"), (finite_e & np.isinf(actual), "infinite")):
        if mask.any():
            lines.append(f"  {_count(int(mask.sum()), what)} where {against} has a finite number "
                         f"(first at {_first(mask)})")
    nan_missing = nan_e & ~nan_a
    if nan_missing.any():
        lines.append(f"  {_count(int(nan_missing.sum()), 'a number', 'numbers')} where {against} has NaN "
                     f"(first at {_first(nan_missing)})")
    return lines


def _opposite_sign(actual, expected, atol, rtol) -> bool:
    """actual ~ -expected (on the finite values), and that is not just both being ~0."""
    both = np.isfinite(actual) & np.isfinite(expected)
    if not both.any():
        return False
    a, e = actual[both], expected[both]
    if float(np.abs(e).max()) <= 10 * atol:
        return False
    return bool(np.all(np.abs(a + e) <= atol + rtol * np.abs(e)))


def _compare(name, actual, expected, atol, rtol, traps, hint, against="Hugging Face") -> str:
    finite_a, finite_e = np.isfinite(actual), np.isfinite(expected)
    both_finite = finite_a & finite_e
    same_special = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    err = np.where(both_finite, np.abs(actual - expected), np.inf)
    err = np.where(~finite_e & same_special, 0.0, err)
    ok = err <= atol + rtol * np.abs(np.where(finite_e, expected, 0.0))
    if ok.all():
        return f"{name}: matches ({describe(actual)}, max abs error {float(err.max()) if err.size else 0.0:.2e}, tolerance atol={atol:g} rtol={rtol:g})"
    idx = tuple(int(i) for i in np.argwhere(~ok)[0])
    finite_bad = ~ok & both_finite
    special = _nonfinite_lines(actual, expected, against)
    lines = [
        f"{name}: values differ from {against}'s",
        f"  {describe(actual)}; tolerance atol={atol:g} rtol={rtol:g}",
    ]
    if finite_bad.any():
        max_err = float(err[finite_bad].max())
        where = " among the finite values" if special else ""
        lines.append(f"  max abs error{where} {max_err:.3e}; {100.0 * ok.mean():.1f}% of values within tolerance")
    else:
        lines.append(f"  every finite value matches; {int((~ok).sum())} of {ok.size} values differ "
                     "in their infinities / NaNs:")
    lines.append(f"  first mismatch at index {list(idx)}: expected {float(expected[idx]):.6g}, "
                 f"got {float(actual[idx]):.6g}")
    lines.extend(special)
    if _opposite_sign(actual, expected, atol, rtol):
        lines.append(f"  the values have the opposite sign: yours are {against}'s times -1 "
                     "(a subtraction the wrong way round, or a minus sign too many)")
    trap = _closest_trap(actual, expected, traps or {})
    if trap:
        lines.append(f"  looks like: {trap}")
    raise CheckFailure("\n".join(lines), hint)


def _closest_trap(actual: np.ndarray, expected: np.ndarray, traps) -> str | None:
    def dist(a, b):
        d = np.abs(np.nan_to_num(a, posinf=1e30, neginf=-1e30) - np.nan_to_num(b, posinf=1e30, neginf=-1e30))
        return float(d.mean())

    truth = dist(actual, expected)
    best, best_d = None, truth
    for _, (value, explanation) in traps.items():
        try:
            value = value() if callable(value) else value
            value = np.asarray(value, dtype=np.float32)
        except Exception:
            continue
        if value.shape != actual.shape:
            continue
        d = dist(actual, value)
        if d < best_d and d <= 1e-3 * (1.0 + float(np.abs(value).mean())):
            best, best_d = explanation, d
    return best


def expect_equal(name: str, actual, expected, hint: str | None = None) -> str:
    """Exact equality for non-float values (config fields, token ids)."""
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        a, e = np.asarray(actual), np.asarray(expected)
        check_shape(name, a.shape, e.shape, hint)
        if not np.array_equal(a, e):
            idx = tuple(int(i) for i in np.argwhere(a != e)[0])
            raise CheckFailure(
                f"{name}: differs from Hugging Face's\n  {int((a != e).sum())} of {a.size} entries differ; "
                f"first at index {list(idx)}: expected {e[idx]}, got {a[idx]}", hint)
        return f"{name}: identical ({a.size} entries)"
    if actual != expected or type(actual) is not type(expected) and not (
            isinstance(actual, (int, float)) and isinstance(expected, (int, float)) and not isinstance(actual, bool)):
        raise CheckFailure(f"{name}: expected {expected!r}, got {actual!r}", hint)
    return f"{name} = {actual!r}"
