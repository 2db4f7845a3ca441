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
) -> str:
    """Raises CheckFailure unless ``actual`` matches ``expected`` within tolerance.

    ``traps`` maps a known mistake's name to (what that mistake would output,
    its explanation). When the learner's numbers match a trap better than the
    truth, the failure names the mistake. Returns a one-line summary on success.
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
        return _compare(name, actual, expected, atol, rtol, traps, hint)


def _compare(name, actual, expected, atol, rtol, traps, hint) -> str:
    finite_a, finite_e = np.isfinite(actual), np.isfinite(expected)
    same_inf = (actual == expected) & ~finite_e
    bad_finite = finite_e & ~finite_a
    err = np.where(finite_e & finite_a, np.abs(actual - expected), np.inf)
    err = np.where(same_inf, 0.0, err)
    if np.any(np.isnan(actual)) and not np.any(np.isnan(expected)):
        err = np.where(np.isnan(actual), np.inf, err)
    ok = err <= atol + rtol * np.abs(np.where(finite_e, expected, 0.0))
    if ok.all():
        return f"{name}: matches ({describe(actual)}, max abs error {float(err.max()) if err.size else 0.0:.2e}, tolerance atol={atol:g} rtol={rtol:g})"
    idx = tuple(int(i) for i in np.argwhere(~ok)[0])
    finite_err = err[np.isfinite(err)]
    max_err = float(finite_err.max()) if finite_err.size else float("inf")
    lines = [
        f"{name}: values differ from Hugging Face's",
        f"  {describe(actual)}; tolerance atol={atol:g} rtol={rtol:g}",
        f"  max abs error {max_err:.3e}; {100.0 * ok.mean():.1f}% of values within tolerance",
        f"  first mismatch at index {list(idx)}: expected {float(expected[idx]):.6g}, got {float(actual[idx]):.6g}",
    ]
    if bad_finite.any():
        lines.append(f"  {int(bad_finite.sum())} values are inf/nan where a finite number was expected")
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
