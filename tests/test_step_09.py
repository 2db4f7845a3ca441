"""Step 09 check: GPT2Block equals Hugging Face's GPT2Block (h.0) on the same weights."""

from gpt2course.check import harness
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import ATOL, attention_np, gelu_tanh, layer_norm_np, max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 9
PREFIX = "transformer.h.0."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(course_config(config))


def run(step):
    x = harness.capture().inputs["transformer.h.0"]
    return harness.outputs(step, "GPT2Block", make, max_weights(PREFIX), [x], mode="compile",
                          what="GPT2Block")[0], x


def test_parameters(step):
    """ln_1, attn, ln_2 and mlp are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "GPT2Block", make, max_weights(PREFIX), "GPT2Block",
                            hint="ln_1 = LayerNorm(n_embd), attn = GPT2MultiHeadAttention(config), "
                                 "ln_2 = LayerNorm(n_embd), mlp = GPT2MLP(config.inner_dim, config)")


def test_shape(step):
    """output is [batch, seq, n_embd], like its input"""
    out, x = run(step)
    check_shape("GPT2Block output", out.shape, x.shape)


def test_matches_hf(step):
    """matches Hugging Face's GPT2Block h.0 inside the model"""
    out, x = run(step)
    _, config, state = harness.checkpoint()
    eps, n = config.layer_norm_epsilon, config.n_head

    def ln(t, which):
        return layer_norm_np(t, state[PREFIX + which + ".weight"], state[PREFIX + which + ".bias"], eps)

    def attn(t):
        return attention_np(t, state, PREFIX + "attn.", n)

    def mlp(t):
        p = PREFIX + "mlp."
        return gelu_tanh(t @ state[p + "c_fc.weight"] + state[p + "c_fc.bias"]) @ state[p + "c_proj.weight"] + state[p + "c_proj.bias"]

    def mlp_first():
        h = x + mlp(ln(x, "ln_2"))
        return h + attn(ln(h, "ln_1"))

    def post_norm():
        h = ln(x + attn(x), "ln_1")
        return ln(h + mlp(h), "ln_2")

    def one_residual():
        h = x + attn(ln(x, "ln_1"))
        return mlp(ln(h, "ln_2"))

    def parallel():
        return x + attn(ln(x, "ln_1")) + mlp(ln(x, "ln_2"))

    compare("GPT2Block(h.0 input)", out, harness.capture().outputs["transformer.h.0"], atol=ATOL, rtol=ATOL,
            traps={
                "mlp first": (mlp_first, "the MLP runs before attention; attention comes first"),
                "post-norm": (post_norm, "LayerNorm is applied after each sum; GPT-2 normalizes each sublayer's input"),
                "one residual": (one_residual, "the MLP's residual connection is missing"),
                "parallel": (parallel, "both sublayers read the block input; the MLP must read the output of the attention sublayer"),
            }, hint="x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))")
