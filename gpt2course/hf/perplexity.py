"""Hugging Face's side of evaluation: its loss and its sliding-window perplexity, on a stream.

The reference numbers of step 14's check and of ``eval --compare-hf`` come from here, computed
with ``transformers.GPT2LMHeadModel(input_ids, labels=labels).loss`` (its ``ForCausalLMLoss``:
labels shifted by one inside, -100 not scored, one mean over the batch's scored tokens), never
from the course's own code.

The windows are those of Hugging Face's guide "Perplexity of fixed-length models": windows of
``window`` tokens starting every ``stride`` tokens; a window scores only the tokens after the
previous window's end (``trg_len``), the rest is context. Each window's mean loss is weighted
by the number of tokens it really scored: ``(labels[:, 1:] != -100).sum()``. (The guide's code
weights every window by ``trg_len - 1``, right for the first window, whose first token has
nothing before it, and one short for the later ones, whose first scored token has context:
a difference of about 1/stride in those windows' weights. Here each token counts once.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100


def window_plan(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, trg_len) of each model call, as the guide's loop makes them."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride {stride} and window {window}")
    plan, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        plan.append((begin, end, end - prev_end))
        prev_end = end
        if end == n_tokens:
            break
    return plan


def window_labels(ids: np.ndarray, trg_len: int) -> np.ndarray:
    """The window's ids with -100 on all but the last ``trg_len`` (the guide's target_ids)."""
    labels = np.array(ids, dtype=np.int64, copy=True)
    labels[..., : labels.shape[-1] - trg_len] = IGNORE_INDEX
    return labels


def scored_count(labels: np.ndarray) -> int:
    """How many tokens Hugging Face's loss averages over: labels after the shift that are not -100."""
    return int((np.asarray(labels)[..., 1:] != IGNORE_INDEX).sum())


def hf_loss(model, input_ids: np.ndarray, labels: np.ndarray) -> float:
    """``model(input_ids, labels=labels).loss``: Hugging Face's mean next-token cross-entropy (nats)."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)),
                    labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)), use_cache=False)
    return float(out.loss)


def hf_logits(model, input_ids: np.ndarray) -> np.ndarray:
    """Hugging Face's logits [batch, seq, vocab] as float32 NumPy."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)), use_cache=False)
    return out.logits.float().numpy()


def hf_loss_function(logits: np.ndarray, labels: np.ndarray) -> float:
    """The loss Hugging Face's GPT2LMHeadModel applies to logits (``ForCausalLMLoss``), on given logits."""
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits_t = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    return float(ForCausalLMLoss(logits_t, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
                                 vocab_size=logits_t.shape[-1]))


@dataclass
class StreamScore:
    """The sum of the negative log-likelihoods of a stream's scored tokens, and their number."""

    nll_sum: float
    scored: int

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.scored

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.mean_nll))


def sliding_window_losses(loss_fn: Callable[[np.ndarray, np.ndarray], float], stream: np.ndarray,
                          window: int, stride: int) -> Iterator[tuple[int, int, float, int]]:
    """For each window of the plan: (begin, end, its mean loss, tokens it scored), with
    ``loss_fn(ids [1, len], labels [1, len])`` giving the mean loss."""
    stream = np.asarray(stream, dtype=np.int64).reshape(-1)
    for begin, end, trg_len in window_plan(stream.size, window, stride):
        ids = stream[begin:end][None, :]
        labels = window_labels(ids, trg_len)
        yield begin, end, loss_fn(ids, labels), scored_count(labels)


def hf_sliding_window(model, stream: np.ndarray, window: int, stride: int,
                      on_window: Callable[[int, int], None] | None = None) -> StreamScore:
    """Hugging Face's sliding-window perplexity of ``stream`` (1-D ids) with its GPT2LMHeadModel.
    ``on_window(end, scored)`` is told after each window (a progress bar)."""
    stream = np.asarray(stream, dtype=np.int64).reshape(-1)
    if stream.size < 2:
        raise ValueError(f"a perplexity needs at least 2 tokens, got {stream.size}")
    total, n = 0.0, 0
    for _, end, loss, scored in sliding_window_losses(lambda i, l: hf_loss(model, i, l), stream, window, stride):
        total += loss * scored
        n += scored
        if on_window is not None:
            on_window(end, scored)
    return StreamScore(total, n)
