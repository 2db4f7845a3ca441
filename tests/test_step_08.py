"""Step 08 check: a pre-norm residual sublayer computes x + mlp(ln_2(x)) as Hugging Face's block does."""

from gpt2course.check import harness, wire
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import ATOL, gelu_tanh, layer_norm_np, max_weights
from gpt2course.errors import CheckFailure
from gpt2course.check.compare import check_shape, compare

STEP = 8
LN, MLP = "transformer.h.0.ln_2.", "transformer.h.0.mlp."


def make(cls):
    _, config, _ = harness.checkpoint()
    mlp = wire.make("solutions.solution_04", "GPT2MLP", config.inner_dim, course_config(config))
    return cls(config.n_embd, mlp, eps=config.layer_norm_epsilon)


def wts():
    w = {"ln." + k: v for k, v in max_weights(LN).items()}
    w.update({"sublayer." + k: v for k, v in max_weights(MLP).items()})
    return w


def run(step):
    x = harness.capture().inputs["transformer.h.0.ln_2"]
    return harness.outputs(step, "ResidualBlock", make, wts(), [x], mode="eager", what="ResidualBlock")[0], x


def test_add(step):
    """apply_residual_connection adds the sublayer's output to its input"""
    import numpy as np

    fn = step.get("apply_residual_connection")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, dtype=np.float32)
    with step.errors("apply_residual_connection"):
        out = harness.arrays([fn(wire.tensor(a), wire.tensor(b))], "apply_residual_connection")[0]
    compare("apply_residual_connection(a, b)", out, a + b, atol=0, rtol=0, hint="return input + sublayer_output")


def test_parameters(step):
    """ResidualBlock holds `ln` (a LayerNorm) and the sublayer it was given"""
    harness.parameters_match(step, "ResidualBlock", make, wts(), "ResidualBlock",
                            hint="keep self.ln = LayerNorm(dim, eps=eps) and self.sublayer = sublayer")


def test_shape(step):
    """output has the input's shape"""
    out, x = run(step)
    check_shape("ResidualBlock output", out.shape, x.shape)


def test_matches_hf(step):
    """x + mlp(ln_2(x)) equals the output of Hugging Face's GPT2Block (its second residual sublayer)"""
    out, x = run(step)
    _, config, state = harness.checkpoint()
    eps = config.layer_norm_epsilon

    def ln(t):
        return layer_norm_np(t, state[LN + "weight"], state[LN + "bias"], eps)

    def mlp(t):
        return gelu_tanh(t @ state[MLP + "c_fc.weight"] + state[MLP + "c_fc.bias"]) @ state[
            MLP + "c_proj.weight"] + state[MLP + "c_proj.bias"]

    compare("ResidualBlock(h.0.ln_2 input)", out, harness.capture().outputs["transformer.h.0"],
            atol=ATOL, rtol=ATOL, traps={
                "no residual": (lambda: mlp(ln(x)), "the input is not added back: return x + sublayer(ln(x))"),
                "normalized residual": (lambda: ln(x) + mlp(ln(x)), "the normalized x is added; add the original x"),
                "post-norm": (lambda: ln(x + mlp(x)), "post-norm (LayerNorm after the sum); GPT-2 normalizes the sublayer's input"),
                "no norm": (lambda: x + mlp(x), "the sublayer reads x without LayerNorm"),
            }, hint="x + self.sublayer(self.ln(x))")
