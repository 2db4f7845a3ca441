"""Step 11 check: MaxGPT2LMHeadModel's logits equal Hugging Face's GPT2LMHeadModel; at GPT-2 124M's
shapes its parameters are Hugging Face's too (built, not compiled: step 13 runs the learner's
model at 124M shapes, and a second compile here doubled every edit's wait; bench/README.md)."""

import numpy as np

from gpt2course.hf.weights import course_config
from gpt2course.check import harness
from gpt2course.check.harness import ATOL
from gpt2course.errors import CheckFailure
from gpt2course.check.compare import check_shape, compare

STEP = 11


def make_for(name):
    def make(cls):
        _, config, _ = harness.checkpoint(name)
        return cls(course_config(config))
    return make


def result(step, name):
    return harness.model_outputs(step, "MaxGPT2LMHeadModel", make_for(name), name, body_attr="transformer", key=name)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def verify(step, name):
    res = result(step, name)
    cap = harness.capture(name)
    _, config, state = harness.checkpoint(name)
    check_shape(f"logits ({name})", res["output"].shape, cap.logits.shape,
                "logits are [batch, seq, vocab_size]: apply lm_head at every position")
    body = harness.first_divergence(res["layers"], cap, config.n_layer)
    hint = "logits = lm_head(transformer(ids)), lm_head = Linear(n_embd, vocab_size, bias=False)"
    if body and not body.startswith("every layer"):
        hint = "the model body differs before the head: " + body
    compare(f"logits ({name} shapes)", res["output"], cap.logits, atol=5 * ATOL, rtol=ATOL, traps={
        "softmax": (lambda: softmax(cap.logits), "these are probabilities: return the raw logits, no softmax"),
        "no ln_f": (lambda: cap.outputs["transformer.h." + str(config.n_layer - 1)] @ state["lm_head.weight"].T,
                    "the final LayerNorm ln_f is skipped before the head"),
    }, hint=hint)


def test_parameters(step):
    """transformer.* and lm_head.weight (no bias) are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "MaxGPT2LMHeadModel", make_for("small"), harness.max_weights(""),
                            "MaxGPT2LMHeadModel",
                            hint="transformer = GPT2Model(config); lm_head = Linear(n_embd, vocab_size, bias=False)")


def test_parameters_124m(step):
    """at GPT-2 124M's shapes the parameters are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "MaxGPT2LMHeadModel", make_for("small"), harness.max_weights(""),
                            "MaxGPT2LMHeadModel")
    harness.parameters_match(step, "MaxGPT2LMHeadModel", make_for("124m"), harness.max_weights("", "124m"),
                            "MaxGPT2LMHeadModel (124m shapes)", key="module 124m",
                            hint="lm_head = Linear(config.n_embd, config.vocab_size, bias=False): the sizes "
                                 "from config, none of the small model's numbers written in")


def test_shape(step):
    """logits are [batch, seq, vocab_size]"""
    res = result(step, "small")
    check_shape("logits", res["output"].shape, harness.capture("small").logits.shape,
                "apply lm_head at every position: [batch, seq, n_embd] -> [batch, seq, vocab_size]")


def test_matches_hf_small(step):
    """logits match Hugging Face's GPT2LMHeadModel (2 layers, 64 wide, lm_head tied to wte)"""
    verify(step, "small")


def test_next_token(step):
    """the last position's best logit picks the same next token as Hugging Face"""
    res = result(step, "small")
    ours = res["output"][:, -1, :].argmax(-1)
    theirs = harness.capture("small").logits[:, -1, :].argmax(-1)
    if not np.array_equal(ours, theirs):
        raise CheckFailure(f"next-token choice differs: yours {ours.tolist()}, Hugging Face's {theirs.tolist()}",
                           "position i's logits predict token i+1; generation reads the last position")
