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
        # TODO 1: Create the learned scale `self.weight` (starts at ones) and
        # shift `self.bias` (starts at zeros), both of shape [dim].
        # Hint: Tensor.ones([dim]) and Tensor.zeros([dim])
        #>>> TODO 1
        raise NotImplementedError("step 03, TODO 1")
        #<<< TODO 1
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # TODO 2: Normalize x over its last axis, then scale and shift:
        # (x - mean) / sqrt(var + eps) * weight + bias. The variance is
        # the biased one (divide by n), and eps goes inside the square root.
        # Hint: F.layer_norm(x, gamma=self.weight, beta=self.bias, epsilon=self.eps)
        #>>> TODO 2
        raise NotImplementedError("step 03, TODO 2")
        #<<< TODO 2
# ANCHOR_END: layer_norm
