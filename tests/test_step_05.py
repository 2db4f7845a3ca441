"""Step 05 check: GPT2Embeddings looks token ids up like Hugging Face's wte."""

from gpt2course.check import harness
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 5
PREFIX = "transformer."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(course_config(config))


def wts():
    return {"wte.weight": max_weights(PREFIX)["wte.weight"]}


def run(step):
    cap = harness.capture()
    return harness.outputs(step, "GPT2Embeddings", make, wts(), [cap.input_ids], mode="eager",
                          what="GPT2Embeddings")[0]


def test_parameters(step):
    """the table is `wte`, [vocab_size, n_embd]"""
    harness.parameters_match(step, "GPT2Embeddings", make, wts(), "GPT2Embeddings")


def test_shape(step):
    """output is [batch, seq, n_embd]"""
    cap = harness.capture()
    _, config, _ = harness.checkpoint()
    check_shape("GPT2Embeddings output", run(step).shape, list(cap.input_ids.shape) + [config.n_embd])


def test_matches_hf(step):
    """matches Hugging Face's wte on the same ids"""
    cap = harness.capture()
    compare("GPT2Embeddings(ids)", run(step), cap.outputs["transformer.wte"], atol=0, rtol=0,
            hint="an embedding lookup copies rows exactly: return self.wte(input_ids)")
