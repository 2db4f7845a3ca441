"""Step 15 (bonus): quantize the LM head.

Generating one token reads every weight of the model once, and on a CPU reading them
takes longer than the arithmetic: the bytes per token set the speed. GPT-2's LM head
(n_embd x vocab_size = 768 x 50,257, the same matrix as wte) is 31% of those bytes.

Store it in int8 instead of float32 and it takes a quarter of the bytes. Each row of
the weight (one vocabulary token) gets its own scale, so a row of small numbers keeps
its precision beside a row of large ones:

    scale[v] = max_i |W[v, i]| / 127             (one float32 per row)
    q[v, i]  = clip(round(W[v, i] / scale[v]), -127, 127)      (int8)
    W[v, i] ~ q[v, i] * scale[v]                 (off by at most scale[v] / 2)

The logits then come from the int8 weight and the scales:

    logits[..., v] = sum_i hidden[..., i] * q[v, i] * scale[v]
                   = (hidden @ q.T)[..., v] * scale[v]

so the scale multiplies each logit once, after the matrix product. Quantizing is NumPy
(done once, when the weights load); the head is a MAX Module.
"""

import numpy as np
from max.dtype import DType
from max.experimental.nn import Module
from max.experimental.tensor import Tensor

# The int8 values used: -127..127, symmetric, so that -w quantizes to -q (int8's -128 is left out).
QMAX = 127


# ANCHOR: row_scales
def row_scales(weight: np.ndarray) -> np.ndarray:
    """One scale per row of ``weight`` [rows, cols]: the row's largest magnitude / 127, float32 [rows]."""
    weight = np.asarray(weight, dtype=np.float32)
    # TODO 1: Return, for each row, its largest absolute value divided by QMAX, as a
    # float32 array of shape [rows]. A row of zeros gets scale 1.0 (its int8 values are
    # 0 whatever the scale; a scale of 0 would divide by zero).
    # Hint: np.abs(weight).max(axis=1) is each row's largest magnitude (axis=0 would be
    # each column's); np.where(absmax > 0, absmax / QMAX, 1.0), then .astype(np.float32).
    #>>> TODO 1
    raise NotImplementedError("step 15, TODO 1")
    #<<< TODO 1
# ANCHOR_END: row_scales


# ANCHOR: quantize
def quantize(weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``weight`` [rows, cols] in int8 with one ``scale`` [rows] per row: round(w / scale),
    clipped to -127..127."""
    weight = np.asarray(weight, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    # TODO 2: Return the int8 array q [rows, cols]: divide each row by its scale, round
    # to the nearest integer, clip to -QMAX..QMAX, and only then cast to int8. (With the
    # scales of row_scales nothing exceeds 127; with a scale from elsewhere, a bf16
    # scale rounded down or one chosen to ignore outliers, it does, and int8 wraps
    # 128 around to -128.)
    # Hint: scale[:, None] lines one scale up with each row; np.round, then
    # np.clip(..., -QMAX, QMAX), then .astype(np.int8) (astype alone truncates toward 0).
    #>>> TODO 2
    raise NotImplementedError("step 15, TODO 2")
    #<<< TODO 2
# ANCHOR_END: quantize


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` [rows, cols] -> (q int8 [rows, cols], scale float32 [rows]), q * scale[:, None] ~ weight."""
    scale = row_scales(weight)
    return quantize(weight, scale), scale


# ANCHOR: head
class Int8LMHead(Module):
    """The LM head from an int8 weight and one float32 scale per vocabulary row:
    hidden_states [batch, seq, n_embd] (float32) -> logits [batch, seq, vocab_size] (float32).

    Its parameters are ``weight`` (int8 [vocab_size, n_embd], as Linear stores its weight) and
    ``scale`` (float32 [vocab_size]); in a model as ``self.lm_head`` they load from
    ``lm_head.weight`` and ``lm_head.scale`` (quantize_rows of the float32 lm_head.weight)."""

    def __init__(self, n_embd: int, vocab_size: int) -> None:
        # TODO 3: Bind `self.weight`, an int8 tensor of zeros [vocab_size, n_embd], and
        # `self.scale`, a float32 tensor of ones [vocab_size]. (The weights loaded into
        # the head replace them; their names, shapes and dtypes must be these.)
        # Hint: Tensor.zeros(shape, dtype=DType.int8) and Tensor.ones(shape, dtype=DType.float32).
        #>>> TODO 3
        raise NotImplementedError("step 15, TODO 3")
        #<<< TODO 3

    def forward(self, hidden_states: Tensor) -> Tensor:
        # TODO 4: Return the logits: the int8 weight cast to float32, multiplied as a
        # Linear does (hidden_states @ weight.T), then each vocabulary column multiplied
        # by its scale, once.
        # Hint: self.weight.cast(DType.float32).T; the product is [batch, seq, vocab_size]
        # and self.scale [vocab_size] broadcasts over its last axis.
        #>>> TODO 4
        raise NotImplementedError("step 15, TODO 4")
        #<<< TODO 4
# ANCHOR_END: head
