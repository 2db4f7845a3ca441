"""Step 07 check: GPT2MultiHeadAttention equals Hugging Face's GPT2Attention (h.0.attn) on the same weights."""

from gpt2course.check import harness
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import ATOL, attention_np, max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 7
PREFIX = "transformer.h.0.attn."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(course_config(config))


def run(step):
    x = harness.capture().inputs["transformer.h.0.attn"]
    return harness.outputs(step, "GPT2MultiHeadAttention", make, max_weights(PREFIX), [x], mode="compile",
                          what="GPT2MultiHeadAttention")[0], x


def test_parameters(step):
    """c_attn and c_proj are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "GPT2MultiHeadAttention", make, max_weights(PREFIX), "GPT2MultiHeadAttention",
                            hint="c_attn: Linear(n_embd, 3 * n_embd); c_proj: Linear(n_embd, n_embd)")


def test_shape(step):
    """output is [batch, seq, n_embd], like its input"""
    out, x = run(step)
    check_shape("attention output", out.shape, x.shape, "merge the heads back to n_embd before c_proj")


def test_matches_hf(step):
    """matches Hugging Face's GPT2Attention inside the model (causal, scaled, 4 heads)"""
    out, x = run(step)
    _, config, state = harness.checkpoint()
    n = config.n_head

    def variant(**kw):
        return lambda: attention_np(x, state, PREFIX, n, **kw)

    compare("GPT2MultiHeadAttention(h.0.attn input)", out, harness.capture().outputs["transformer.h.0.attn"],
            atol=ATOL, rtol=ATOL, traps={
                "no mask": (variant(mask=False), "no causal mask: every token also attends to later tokens"),
                "no scaling": (variant(scale=False), "scores are not divided by sqrt(head_dim)"),
                "neither": (variant(mask=False, scale=False), "no causal mask and no 1/sqrt(head_dim) scaling"),
                "one head": (lambda: attention_np(x, state, PREFIX, 1), "attention runs as one head: split into n_head heads"),
                "split by reshape": (variant(split="reshape"),
                                     "split_heads reshapes straight to [batch, n_head, seq, head_dim]: that mixes "
                                     "tokens into heads. Reshape to [batch, seq, n_head, head_dim], then "
                                     "transpose(1, 2)"),
                "merge by reshape": (variant(merge="reshape"),
                                     "merge_heads reshapes [batch, n_head, seq, head_dim] straight to "
                                     "[batch, seq, n_embd]: that mixes heads into tokens. transpose(1, 2) "
                                     "first, then reshape"),
                "both by reshape": (variant(split="reshape", merge="reshape"),
                                    "split_heads and merge_heads both reshape without transposing: reshape "
                                    "to [batch, seq, n_head, head_dim] and transpose(1, 2); undo it in that "
                                    "order when merging"),
            }, hint="scores = q @ k^T / sqrt(head_dim) + causal_mask; softmax over the last axis; weights @ v")
