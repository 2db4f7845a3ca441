"""The comparison reports themselves (pure NumPy, no MAX, no model): what a learner reads when
values differ, when infinities or NaNs differ, when a sign is flipped, and when a parameter's
two sizes are swapped."""

import numpy as np
import pytest

from gpt2course.check import execute
from gpt2course.check.compare import compare
from gpt2course.errors import CheckFailure


def failure(actual, expected, **kw) -> str:
    with pytest.raises(CheckFailure) as info:
        compare("t", np.asarray(actual, dtype=np.float32), np.asarray(expected, dtype=np.float32), **kw)
    return info.value.message


def causal(n=4):
    return np.triu(np.full((1, n, n), -np.inf, dtype=np.float32), 1)


def test_match_passes_with_equal_infinities_and_nans():
    e = causal()
    e[0, 0, 0] = np.nan
    assert "matches" in compare("t", e.copy(), e)


def test_finite_where_hf_has_minus_inf():
    e = causal()
    a = np.where(np.isinf(e), -1e9, e).astype(np.float32)  # a "mask" of -1e9 instead of -inf
    msg = failure(a, e)
    assert "6 values are finite where Hugging Face has -inf (first at [0, 0, 1])" in msg
    assert "max abs error 0.000e+00" not in msg
    assert "every finite value matches" in msg


def test_zeros_where_hf_has_minus_inf_and_a_finite_error():
    e = causal()
    a = np.where(np.isinf(e), 0.0, e).astype(np.float32)
    a[0, 3, 0] = 0.5
    msg = failure(a, e)
    assert "6 values are finite where Hugging Face has -inf" in msg
    assert "max abs error among the finite values 5.000e-01" in msg


def test_nan_counts():
    e = np.ones((2, 3), dtype=np.float32)
    a = e.copy()
    a[1, 1] = a[1, 2] = np.nan
    msg = failure(a, e)
    assert "2 values are NaN where Hugging Face has a finite number (first at [1, 1])" in msg


def test_nan_where_hf_has_minus_inf():
    e = causal(3)
    a = np.where(np.isinf(e), np.nan, e).astype(np.float32)
    assert "3 values are NaN where Hugging Face has -inf (first at [0, 0, 1])" in failure(a, e)


def test_inf_where_finite_and_wrong_sign_inf():
    e = np.array([1.0, -np.inf, 2.0], dtype=np.float32)
    msg = failure([np.inf, np.inf, 2.0], e)
    assert "1 value is infinite where Hugging Face has a finite number (first at [0])" in msg
    assert "1 value is +inf where Hugging Face has -inf (first at [1])" in msg


def test_numbers_where_hf_has_nan():
    assert "1 value is a number where Hugging Face has NaN (first at [1])" in failure([1.0, 2.0], [1.0, np.nan])


def test_opposite_sign():
    e = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    assert "opposite sign" in failure(-e, e)


def test_opposite_sign_not_claimed_for_other_errors_or_zeros():
    e = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    assert "opposite sign" not in failure(e * 2, e)
    assert "opposite sign" not in failure(np.full(4, 1e-6), np.zeros(4) + 1e-3, atol=1e-5, rtol=0)


def test_plain_difference_keeps_the_old_report():
    e = np.zeros((2, 2), dtype=np.float32)
    msg = failure([[0, 0], [0, 1]], e)
    assert "max abs error 1.000e+00; 75.0% of values within tolerance" in msg
    assert "first mismatch at index [1, 1]: expected 0, got 1" in msg
    assert "inf" not in msg.replace("information", "")


def test_trap_is_named():
    e = np.arange(6, dtype=np.float32)
    msg = failure(e * 2, e, traps={"double": (e * 2, "everything is doubled")})
    assert "looks like: everything is doubled" in msg


class Embedding:  # stands in for max.experimental.nn.Embedding: only the class name is read
    def __init__(self, shape):
        self.weight = np.zeros(shape, dtype=np.float32)


class Linear:
    def __init__(self, shape):
        self.weight = np.zeros(shape, dtype=np.float32)


class Model:
    def __init__(self, **layers):
        self.h = [type("Block", (), {"c_fc": layers.pop("c_fc")})()] if "c_fc" in layers else []
        self.__dict__.update(layers)

    @property
    def parameters(self):
        out = [(f"{k}.weight", v.weight) for k, v in self.__dict__.items() if hasattr(v, "weight")]
        out += [(f"h.{i}.c_fc.weight", b.c_fc.weight) for i, b in enumerate(self.h)]
        return out


def parameter_failure(model, want) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        execute.check_module_parameters(model, {k: np.zeros(v, dtype=np.float32) for k, v in want.items()}, "m")
    return info.value


def test_transposed_embedding_gets_the_embedding_hint():
    exc = parameter_failure(Model(wte=Embedding((8, 50))), {"wte.weight": (50, 8)})
    assert "wte.weight has shape [8, 50], the checkpoint's is [50, 8]" in exc.message
    assert "Embedding(num_embeddings, dim)" in exc.hint and "Embedding(50, dim=8)" in exc.hint
    assert "Linear" not in exc.hint


def test_transposed_linear_gets_the_linear_hint_even_inside_a_list():
    exc = parameter_failure(Model(c_fc=Linear((8, 32))), {"h.0.c_fc.weight": (32, 8)})
    assert exc.hint.startswith("Linear(in_dim, out_dim) stores its weight as [out_dim, in_dim]")


def test_transposed_unknown_layer_gets_a_neutral_hint():
    class Other(Linear):
        pass

    exc = parameter_failure(Model(proj=Other((3, 4))), {"proj.weight": (4, 3)})
    assert "swapped" in exc.hint and "Linear" not in exc.hint
