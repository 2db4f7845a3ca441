"""Step 02 check: causal_mask equals the additive mask Hugging Face applies in GPT-2's attention."""

import numpy as np
import torch
from transformers.masking_utils import eager_mask

from gpt2course.check import execute, harness, wire
from gpt2course.check.harness import once
from gpt2course.check.compare import check_shape, compare

STEP = 2
# (new tokens, cached tokens): a plain prompt, a prompt after a cache, one decode step.
CASES = [(5, 0), (3, 4), (1, 6)]


def hf_mask(seq: int, cached: int) -> np.ndarray:
    """Hugging Face's eager mask (finfo.min where blocked), written with -inf as ours is."""
    m = eager_mask(1, seq, seq + cached, q_offset=cached, dtype=torch.float32)[0, 0].numpy()
    return np.where(m < -1e30, -np.inf, 0.0).astype(np.float32)


def masks(step):
    fn = step.get("causal_mask")

    def run():
        out = {}
        with execute.eager("causal_mask"):
            for seq, cached in CASES:
                with step.errors(f"causal_mask({seq}, {cached}, ...)"):
                    out[(seq, cached)] = harness.arrays(
                        [fn(seq, cached, dtype=wire.dtype("float32"), device=step.device)], "causal_mask")[0]
        return out
    return once(step, "masks", run)


def test_shape(step):
    """shape is [sequence_length, sequence_length + num_tokens]"""
    for (seq, cached), mask in masks(step).items():
        check_shape(f"causal_mask({seq}, {cached})", mask.shape, [seq, seq + cached],
                    "rows: the new tokens; columns: the cached tokens followed by the new ones")


def test_matches_hf(step):
    """0 where attending is allowed, -inf above the shifted diagonal, as Hugging Face's mask"""
    for (seq, cached), mask in masks(step).items():
        expected = hf_mask(seq, cached)
        compare(f"causal_mask({seq}, {cached})", mask, expected, atol=0, rtol=0, traps={
            "diagonal masked": (np.where(np.triu(np.ones_like(expected), cached) > 0, -np.inf, 0.0),
                                "the diagonal is masked too: a token must be able to see itself"),
            "ignores num_tokens": (np.where(np.triu(np.ones_like(expected), 1) > 0, -np.inf, 0.0),
                                   "the diagonal is not shifted by num_tokens (the cached tokens)"),
            "lower triangle": (np.where(np.tril(np.ones_like(expected), cached - 1) > 0, -np.inf, 0.0),
                               "the mask blocks the past instead of the future"),
        }, hint="query i may see columns 0..num_tokens+i: keep the band up to num_tokens right of the diagonal")
