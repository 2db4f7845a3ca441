"""Step 03: layer normalization.

LayerNorm rescales each token's vector to mean 0 and variance 1, then applies a
learned scale (weight) and shift (bias). GPT-2 applies it before every
sublayer and once more at the end.
"""

from max.experimental import functional as F
from max.experimental.nn import Module
from max.experimental.tensor import Tensor


# ANCHOR: layer_norm
class LayerNorm(Module):
    """LayerNorm over the last axis, with parameters named as in Hugging Face."""

    def __init__(self, dim: int, *, eps: float = 1e-5) -> None:
        # TODO 1: Bind `self.weight` (the learned scale, all ones) and `self.bias`
        # (the shift, all zeros), both of shape [dim].
        # Hint: Tensor has NumPy-style constructors for both; they take the shape as a list.
        #>>> TODO 1
        self.weight = Tensor.ones([dim])
        self.bias = Tensor.zeros([dim])
        #<<< TODO 1
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # TODO 2: Return x normalized over its last axis, then scaled and shifted:
        # (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance
        # (divide by n) and eps inside the square root.
        # Hint: F.layer_norm does all of it, given gamma (scale), beta (shift) and epsilon.
        #>>> TODO 2
        return F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)
        #<<< TODO 2
# ANCHOR_END: layer_norm
