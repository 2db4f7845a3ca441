"""Step 04 check: GPT2MLP equals Hugging Face's GPT2MLP (h.0.mlp) on the same weights."""

import numpy as np

from gpt2course.check import harness
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import ATOL, gelu_exact, gelu_tanh, max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 4
PREFIX = "transformer.h.0.mlp."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(config.inner_dim, course_config(config))


def run(step):
    x = harness.capture().inputs["transformer.h.0.mlp"]
    return harness.outputs(step, "GPT2MLP", make, max_weights(PREFIX), [x], mode="eager",
                          what="GPT2MLP")[0], x


def test_parameters(step):
    """c_fc and c_proj are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "GPT2MLP", make, max_weights(PREFIX), "GPT2MLP",
                            hint="c_fc: Linear(n_embd, intermediate_size); c_proj: Linear(intermediate_size, n_embd)")


def test_shape(step):
    """output is [batch, seq, n_embd], like its input"""
    out, x = run(step)
    check_shape("GPT2MLP output", out.shape, x.shape, "c_proj must bring the width back to n_embd")


def test_matches_hf(step):
    """matches Hugging Face's GPT2MLP inside the model"""
    out, x = run(step)
    _, _, state = harness.checkpoint()
    wf, bf = state[PREFIX + "c_fc.weight"], state[PREFIX + "c_fc.bias"]
    wp, bp = state[PREFIX + "c_proj.weight"], state[PREFIX + "c_proj.bias"]
    pre = x @ wf + bf
    compare("GPT2MLP(h.0.mlp input)", out, harness.capture().outputs["transformer.h.0.mlp"],
            atol=ATOL, rtol=ATOL, traps={
                "exact gelu": (lambda: gelu_exact(pre) @ wp + bp,
                               "this is the exact (erf) GELU; GPT-2 uses approximate=\"tanh\""),
                "relu": (lambda: np.maximum(pre, 0) @ wp + bp, "this is ReLU; GPT-2 uses GELU (tanh form)"),
                "no activation": (lambda: pre @ wp + bp, "the activation between c_fc and c_proj is missing"),
                "no bias": (lambda: gelu_tanh(x @ wf) @ wp, "the biases are missing: Linear(..., bias=True)"),
            }, hint="c_proj(gelu(c_fc(x), approximate=\"tanh\"))")
