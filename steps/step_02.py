"""Step 02: the causal mask.

A language model predicts the next token, so position i may only look at
positions 0..i. The mask is added to the attention scores: 0 where attending
is allowed, -inf where it is not, so softmax gives those positions weight 0.
"""

from max.driver import Device
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.tensor import Tensor


# ANCHOR: causal_mask
def causal_mask(
    sequence_length: int, num_tokens: int, *, dtype: DType, device: Device
) -> Tensor:
    """Returns the additive causal mask, shape [sequence_length, sequence_length + num_tokens].

    Rows are the new (query) positions, columns every key position: the
    ``num_tokens`` already seen (a KV cache) followed by the new ones. Query i
    sits at absolute position ``num_tokens + i`` and may attend to columns
    ``0 .. num_tokens + i``.

    >>> from max.driver import CPU
    >>> from max.dtype import DType
    >>> causal_mask(2, 1, dtype=DType.float32, device=CPU()).to_numpy()
    array([[  0.,   0., -inf],
           [  0.,   0.,   0.]], dtype=float32)
    """
    # TODO 1: Bind `mask`: a [sequence_length, sequence_length + num_tokens]
    # tensor filled with -inf, of the given dtype, on the given device.
    # Hint: F.full builds a tensor of one repeated value; -inf is float("-inf").
    #>>> TODO 1
    raise NotImplementedError("step 02, TODO 1")
    #<<< TODO 1
    # TODO 2: Return `mask` with 0 wherever a query may attend: every column left
    # of the diagonal, and the diagonal shifted right by num_tokens; the rest stays -inf.
    # Hint: F.band_part(..., exclude=True) zeroes a band around the diagonal;
    # num_lower and num_upper say how far left and right it reaches (None: all the way).
    #>>> TODO 2
    raise NotImplementedError("step 02, TODO 2")
    #<<< TODO 2
# ANCHOR_END: causal_mask
