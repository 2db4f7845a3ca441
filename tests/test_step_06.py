"""Step 06 check: GPT2PositionEmbeddings gives Hugging Face's wpe rows for positions 0..seq-1."""

import numpy as np

from gpt2course.check import harness
from gpt2course.hf.weights import course_config
from gpt2course.check.harness import max_weights
from gpt2course.check.compare import check_shape, compare

STEP = 6
PREFIX = "transformer."


def make(cls):
    _, config, _ = harness.checkpoint()
    return cls(course_config(config))


def wts():
    return {"wpe.weight": max_weights(PREFIX)["wpe.weight"]}


def run(step):
    cap = harness.capture()
    return harness.outputs(step, "GPT2PositionEmbeddings", make, wts(), [cap.input_ids], mode="eager",
                          what="GPT2PositionEmbeddings")[0]


def test_parameters(step):
    """the table is `wpe`, [n_positions, n_embd]"""
    harness.parameters_match(step, "GPT2PositionEmbeddings", make, wts(), "GPT2PositionEmbeddings")


def test_shape(step):
    """output is [seq, n_embd]: one vector per position, shared by the batch"""
    cap = harness.capture()
    _, config, _ = harness.checkpoint()
    check_shape("GPT2PositionEmbeddings output", run(step).shape, [cap.input_ids.shape[1], config.n_embd],
                "look up positions 0..seq-1 (a 1-D range), not the token ids")


def test_matches_hf(step):
    """matches Hugging Face's wpe at positions 0..seq-1"""
    cap = harness.capture()
    table = max_weights(PREFIX)["wpe.weight"]
    seq = cap.input_ids.shape[1]
    compare("GPT2PositionEmbeddings(ids)", run(step), cap.outputs["transformer.wpe"][0], atol=0, rtol=0,
            traps={"from 1": (table[1:seq + 1], "positions start at 1; the first token is position 0"),
                   "reversed": (table[:seq][::-1], "positions run backwards")},
            hint="Tensor.arange(seq) counts 0, 1, ..., seq-1")
