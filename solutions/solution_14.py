"""Step 14 (bonus): evaluating a language model.

How good is a language model? Ask it to predict text it has never seen, one
token at a time, and look at the probability it gave to the token that really
came next. The cross-entropy is the average of -log(that probability) over the
tokens scored, in nats (natural log); the perplexity is exp(cross-entropy): a
model with perplexity 30 is as unsure as if it chose among 30 equally likely
tokens at every step.

GPT-2 reads at most 1,024 tokens at once, so a long text is read in windows:
each window moves `stride` tokens on, and scores only the tokens no earlier
window scored, using the tokens before them in the window as context (the
sliding-window method Hugging Face documents). Every token is scored once.

Everything here is NumPy: the model is any function from token ids to logits
(your compiled MaxGPT2LMHeadModel, or Hugging Face's).
"""

from collections.abc import Callable

import numpy as np

# A model: token ids [batch, seq] (int64) -> logits [batch, seq, vocab_size] (float32).
LogitsFn = Callable[[np.ndarray], np.ndarray]

# A label that is not scored (padding, a prompt, a window's context): Hugging Face's value.
IGNORE_INDEX = -100


# ANCHOR: log_softmax
def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) over the last axis, for logits of any size: [..., vocab] -> [..., vocab]."""
    logits = np.asarray(logits, dtype=np.float32)
    # TODO 1: Return log(softmax(logits)) over the last axis without ever computing
    # exp of a large number: subtract each row's maximum m first (log-softmax does
    # not change), then log_softmax = (x - m) - log(sum(exp(x - m))).
    # Hint: keepdims=True keeps the max and the sum broadcastable against the logits.
    #>>> TODO 1
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    #<<< TODO 1
# ANCHOR_END: log_softmax


# ANCHOR: cross_entropy
def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The mean negative log-likelihood, in nats, of each next token: what Hugging Face's
    ``GPT2LMHeadModel(input_ids, labels=labels).loss`` computes.

    ``logits`` [batch, seq, vocab] are the model's outputs for ``input_ids`` [batch, seq];
    ``labels`` [batch, seq] are those same ids, with IGNORE_INDEX where a token must not
    be scored (padding, or context another window scores). The logits at position i
    predict the token at position i + 1.
    """
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    # TODO 2: Line the predictions up with what they predict: bind `predictions`, the
    # logits of positions 0 .. seq-2, and `targets`, the labels of positions 1 .. seq-1.
    # Hint: slice the seq axis (axis 1) of each, one from the end and one from the start.
    #>>> TODO 2
    predictions = logits[:, :-1, :]
    targets = labels[:, 1:]
    #<<< TODO 2
    # TODO 3: Return the mean of -log p(target) over the targets that are scored
    # (targets != IGNORE_INDEX) as a Python float: one mean over every scored token of
    # the batch (not a mean of each row's mean).
    # Hint: log_softmax(predictions), then np.take_along_axis with the targets as
    # indices (replace IGNORE_INDEX by any valid id first, then leave those out).
    #>>> TODO 3
    scored = targets != IGNORE_INDEX
    log_probs = log_softmax(predictions)
    index = np.where(scored, targets, 0)[..., None]
    picked = np.take_along_axis(log_probs, index, axis=-1)[..., 0]
    return float(-picked[scored].mean())
    #<<< TODO 3
# ANCHOR_END: cross_entropy


# ANCHOR: windows
def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """The model calls that read a stream of ``n_tokens`` tokens, ``window`` at a time, moving
    ``stride`` tokens on each time: one (begin, end, n_new) per call. The call reads tokens
    begin .. end-1 and scores its last n_new tokens, those no earlier call scored."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride {stride} and window {window}")
    # TODO 4: Return the list of (begin, end, n_new): begin = 0, stride, 2 * stride, ...;
    # end = begin + window, or n_tokens for a window that would run past the end;
    # n_new = end minus where the previous window ended (0 before the first). Stop
    # after the window that reaches n_tokens.
    # Hint: keep `scored_until`, the previous window's end; a for loop over
    # range(0, n_tokens, stride) with a break.
    #>>> TODO 4
    windows, scored_until = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        windows.append((begin, end, end - scored_until))
        scored_until = end
        if end == n_tokens:
            break
    return windows
    #<<< TODO 4
# ANCHOR_END: windows


# ANCHOR: perplexity
def perplexity(model: LogitsFn, token_ids: np.ndarray, *, window: int, stride: int) -> float:
    """exp(the mean negative log-likelihood per token) of a 1-D stream of token ids, read
    ``window`` tokens at a time, ``stride`` apart (sliding_windows). Every token after the
    first is scored exactly once."""
    ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    if ids.size < 2:
        raise ValueError(f"perplexity needs at least 2 tokens, got {ids.size}")
    # TODO 5: Bind `total_nll`, the SUM of the negative log-likelihoods of every scored
    # token, and `total_scored`, how many they are. For each (begin, end, n_new) of
    # sliding_windows(ids.size, window, stride): run the model on ids[begin:end] (a batch
    # of one row) and score the window's last n_new tokens only (the first token of the
    # stream has nothing before it, so it is never scored).
    # Hint: labels = the window's ids with IGNORE_INDEX on all but the last n_new;
    # cross_entropy is a mean, so multiply it by the number of scored targets,
    # (labels[:, 1:] != IGNORE_INDEX).sum().
    #>>> TODO 5
    total_nll, total_scored = 0.0, 0
    for begin, end, n_new in sliding_windows(ids.size, window, stride):
        chunk = ids[begin:end][None, :]
        labels = chunk.copy()
        labels[:, : chunk.shape[1] - n_new] = IGNORE_INDEX
        n_scored = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total_nll += cross_entropy(model(chunk), labels) * n_scored
        total_scored += n_scored
    #<<< TODO 5
    # TODO 6: Return the perplexity: e to the power of the mean negative
    # log-likelihood per scored token, as a Python float.
    # Hint: one mean over all tokens (not over windows); natural log, so np.exp.
    #>>> TODO 6
    return float(np.exp(total_nll / total_scored))
    #<<< TODO 6
# ANCHOR_END: perplexity
