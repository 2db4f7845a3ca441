"""Step 10 check: GPT2Model's last hidden state equals Hugging Face's GPT2Model; at GPT-2 124M's shapes
its parameters are Hugging Face's too (built, not compiled: step 13 runs the learner's model at
124M shapes, and a second compile here doubled every edit's wait; bench/README.md)."""

from gpt2course.hf.weights import course_config
from gpt2course.check import harness
from gpt2course.check.harness import ATOL
from gpt2course.check.compare import check_shape, compare

STEP = 10


def make_for(name):
    def make(cls):
        _, config, _ = harness.checkpoint(name)
        return cls(course_config(config))
    return make


def result(step, name):
    return harness.model_outputs(step, "GPT2Model", make_for(name), name, body_attr=None, key=name)


def verify(step, name):
    res = result(step, name)
    cap = harness.capture(name)
    _, config, state = harness.checkpoint(name)
    expected = cap.hidden_states[-1]
    check_shape(f"GPT2Model output ({name})", res["output"].shape, expected.shape)
    seq = cap.input_ids.shape[1]
    compare(f"GPT2Model last hidden state ({name} shapes)", res["output"], expected, atol=ATOL, rtol=ATOL,
            hint=harness.first_divergence(res["layers"], cap, config.n_layer)
            or "wte(ids) + wpe(positions 0..seq-1) -> blocks -> ln_f")


def test_parameters(step):
    """wte, wpe, h.0..h.N and ln_f are named and shaped as in Hugging Face's checkpoint"""
    _, _, state = harness.checkpoint("small")
    wts = {k: v for k, v in harness.max_weights("transformer.").items()}
    harness.parameters_match(step, "GPT2Model", make_for("small"), wts, "GPT2Model",
                            hint="wte, wpe (Embedding), h (Sequential of GPT2Block), ln_f (LayerNorm)")


def test_parameters_124m(step):
    """at GPT-2 124M's shapes (12 layers, 768 wide) the parameters are named and shaped as in Hugging Face's checkpoint"""
    harness.parameters_match(step, "GPT2Model", make_for("small"), harness.max_weights("transformer."), "GPT2Model")
    harness.parameters_match(step, "GPT2Model", make_for("124m"), harness.max_weights("transformer.", "124m"),
                            "GPT2Model (124m shapes)", key="module 124m",
                            hint="every size comes from config (config.n_layer blocks, config.n_embd wide, "
                                 "config.n_positions rows): none of the small model's numbers written in")


def test_shape(step):
    """output is [batch, seq, n_embd]"""
    res = result(step, "small")
    cap = harness.capture("small")
    check_shape("GPT2Model output", res["output"].shape, cap.hidden_states[-1].shape)


def test_matches_hf_small(step):
    """last hidden state matches Hugging Face's GPT2Model (2 layers, 64 wide)"""
    verify(step, "small")

