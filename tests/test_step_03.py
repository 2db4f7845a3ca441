"""Step 03 check: LayerNorm equals Hugging Face's ln_1 and torch's layer_norm on the same weights."""

import numpy as np
import torch

from gpt2course.check import harness
from gpt2course.check.harness import ATOL, layer_norm_np, max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 3
PREFIX = "transformer.h.0.ln_1."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(config.n_embd, eps=config.layer_norm_epsilon)


def tiny_variance_input(d: int) -> np.ndarray:
    """Rows whose variance is near epsilon: where eps placement and the variance formula show."""
    rng = harness.rng(3)
    return np.stack([rng.normal(0, 3e-3, size=(3, d)), rng.normal(2.0, 1.0, size=(3, d))]).astype(np.float32)


def run(step):
    _, config, _ = harness.checkpoint()
    cap = harness.capture()
    x = cap.inputs["transformer.h.0.ln_1"]
    return harness.outputs(step, "LayerNorm", make, max_weights(PREFIX), [x], mode="eager",
                          what="LayerNorm")[0], x


def test_parameters(step):
    """parameters are `weight` and `bias` of shape [n_embd]"""
    harness.parameters_match(step, "LayerNorm", make, max_weights(PREFIX), "LayerNorm")


def test_shape(step):
    """output has the input's shape"""
    out, x = run(step)
    check_shape("LayerNorm output", out.shape, x.shape)


def test_matches_hf(step):
    """matches Hugging Face's ln_1 inside the model"""
    out, _ = run(step)
    compare("LayerNorm(h.0.ln_1 input)", out, harness.capture().outputs["transformer.h.0.ln_1"],
            atol=ATOL, rtol=ATOL, hint="weight and bias must both be used: (x - mean) / sqrt(var + eps) * weight + bias")


def test_small_variance(step):
    """matches torch.nn.functional.layer_norm on rows with a tiny variance (epsilon matters)"""
    _, config, state = harness.checkpoint()
    w, b = state[PREFIX + "weight"], state[PREFIX + "bias"]
    x = tiny_variance_input(config.n_embd)
    out = harness.outputs(step, "LayerNorm", make, max_weights(PREFIX), [x], mode="eager",
                         what="LayerNorm", key="tiny")[0]
    eps = config.layer_norm_epsilon
    expected = torch.nn.functional.layer_norm(torch.from_numpy(x), (config.n_embd,), torch.from_numpy(w),
                                              torch.from_numpy(b), eps).numpy()
    compare("LayerNorm(small-variance rows)", out, expected, atol=ATOL, rtol=ATOL, traps={
        "eps outside": (layer_norm_np(x, w, b, eps, eps_outside=True), "epsilon is added after the square root; it belongs inside: sqrt(var + eps)"),
        "unbiased": (layer_norm_np(x, w, b, eps, unbiased=True), "the variance divides by n-1; LayerNorm uses the biased variance (divide by n)"),
        "no eps": (layer_norm_np(x, w, b, 0.0), "epsilon is missing"),
    }, hint="epsilon goes inside the square root: sqrt(var + eps)")
