"""Step 12: generating text.

The model gives logits for every position; the last position's logits score
every candidate for the next token. Generation turns those scores into one
token, appends it, and asks again. How it picks is the whole art:
greedy takes the best; sampling divides by a temperature, keeps the top k
(and/or the smallest set whose probability reaches top_p), applies softmax and
draws.

The model runs as a compiled MAX graph; its logits come back as a NumPy array,
and choosing a token from 50,257 numbers is a few vector operations.
"""

from collections.abc import Callable

import numpy as np

# A model for generation: token ids [batch, seq] (int64) -> logits
# [batch, seq, vocab_size] (float32), e.g. a compiled MaxGPT2LMHeadModel.
LogitsFn = Callable[[np.ndarray], np.ndarray]


# ANCHOR: sample
def sample_next_token(
    logits: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Chooses one token per row of ``logits`` [batch, vocab_size]; returns [batch] int64."""
    logits = np.asarray(logits, dtype=np.float32)
    # TODO 1: If `greedy` is true, return each row's token with the highest logit,
    # as int64 [batch]; otherwise go on to sampling below.
    # Hint: NumPy's argmax over the vocabulary axis.
    #>>> TODO 1
    raise NotImplementedError("step 12, TODO 1")
    #<<< TODO 1
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use greedy=True)")
    rng = rng if rng is not None else np.random.default_rng()
    # TODO 2: Bind `scaled`: the logits divided by the temperature (below 1
    # sharpens the distribution, above 1 flattens it).
    # Hint: one division; temperature is a float.
    #>>> TODO 2
    raise NotImplementedError("step 12, TODO 2")
    #<<< TODO 2
    # TODO 3: If top_k is set (0 < top_k < vocab size), rebind `scaled` with each
    # row's k largest values kept and every other set to -inf (probability 0).
    # Hint: compare each row with its k-th largest value (np.sort it first).
    #>>> TODO 3
    raise NotImplementedError("step 12, TODO 3")
    #<<< TODO 3
    # TODO 4: Bind `probs`, the softmax of `scaled` over the vocabulary: subtract
    # each row's max first (so exp never overflows), exponentiate, divide by the sum.
    # Hint: keepdims=True keeps each row's max and sum broadcastable.
    #>>> TODO 4
    raise NotImplementedError("step 12, TODO 4")
    #<<< TODO 4
    if top_p is not None and top_p < 1.0:
        probs = _nucleus(probs, top_p)
    # TODO 5: Return one token per row (int64 [batch]), each drawn with `rng` from
    # that row's `probs`.
    # Hint: rng.choice takes the number of choices and p=.
    #>>> TODO 5
    raise NotImplementedError("step 12, TODO 5")
    #<<< TODO 5
# ANCHOR_END: sample


def _nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Top-p: keep the most likely tokens until their total reaches top_p."""
    order = np.argsort(-probs, axis=-1)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = before < top_p  # always keeps the most likely token
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


# ANCHOR: generate
def generate_next_token(model: LogitsFn, input_ids: np.ndarray, **sampling) -> np.ndarray:
    """Runs the model on ``input_ids`` [batch, seq] and chooses each row's next token."""
    # TODO 6: Bind `last_logits` [batch, vocab_size]: run the model and keep only
    # the logits of the last position, which predict the token that comes next.
    # Hint: the model returns [batch, seq, vocab_size]; index the seq axis.
    #>>> TODO 6
    raise NotImplementedError("step 12, TODO 6")
    #<<< TODO 6
    return sample_next_token(last_logits, **sampling)


def generate_tokens(
    model: LogitsFn,
    input_ids: np.ndarray,
    max_new_tokens: int,
    *,
    eos_token_id: int | None = None,
    seed: int | None = None,
    **sampling,
) -> np.ndarray:
    """Appends up to ``max_new_tokens`` tokens to ``input_ids`` [batch, seq]; returns all ids."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(input_ids, dtype=np.int64)
    # TODO 7: Loop: choose the next token with the one `rng` above (never a
    # new Generator per token), append it as a new column. A row that has
    # produced eos_token_id is finished: from then on append eos_token_id to
    # it (as Hugging Face pads finished rows); stop once every row is finished.
    # Return `ids` with the new columns.
    # Hint: np.concatenate along axis 1; next_token[:, None] is a column.
    #>>> TODO 7
    raise NotImplementedError("step 12, TODO 7")
    #<<< TODO 7
# ANCHOR_END: generate
