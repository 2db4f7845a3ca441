"""Step 05 check: GPT2Embeddings looks token ids up like Hugging Face's wte."""

from gpt2course import checks
from gpt2course.checks import max_weights
from gpt2course.compare import check_shape, compare

STEP = 5
PREFIX = "transformer."


def make(cls):
    _, config, _ = checks.checkpoint()
    return cls(checks.course_config(config))


def wts():
    return {"wte.weight": max_weights(PREFIX)["wte.weight"]}


def run(step):
    cap = checks.capture()
    return checks.outputs(step, "GPT2Embeddings", make, wts(), [cap.input_ids], mode="eager",
                          what="GPT2Embeddings")[0]


def test_parameters(step):
    """the table is `wte`, [vocab_size, n_embd]"""
    checks.parameters_match(step, "GPT2Embeddings", make, wts(), "GPT2Embeddings")


def test_shape(step):
    """output is [batch, seq, n_embd]"""
    cap = checks.capture()
    _, config, _ = checks.checkpoint()
    check_shape("GPT2Embeddings output", run(step).shape, list(cap.input_ids.shape) + [config.n_embd])


def test_matches_hf(step):
    """matches Hugging Face's wte on the same ids"""
    cap = checks.capture()
    compare("GPT2Embeddings(ids)", run(step), cap.outputs["transformer.wte"], atol=0, rtol=0,
            hint="an embedding lookup copies rows exactly: return self.wte(input_ids)")
