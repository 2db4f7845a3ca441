"""Step 08: residual connections with pre-LayerNorm.

Each sublayer of a GPT-2 block reads a normalized copy of the hidden state and
adds its result back onto the unnormalized hidden state: x + f(LayerNorm(x)).
The running sum is the "residual stream"; it lets information and gradients
flow straight through a deep stack.
"""

from collections.abc import Callable

from max.experimental.nn import Module
from max.experimental.tensor import Tensor

from solutions.solution_03 import LayerNorm

__all__ = ["LayerNorm", "ResidualBlock", "apply_residual_connection"]


# ANCHOR: residual
def apply_residual_connection(input_tensor: Tensor, sublayer_output: Tensor) -> Tensor:
    """Adds a sublayer's output back onto the residual stream."""
    # TODO 1: Return `input_tensor` plus `sublayer_output` (same shape).
    # Hint: tensors support +
    #>>> TODO 1
    raise NotImplementedError("step 08, TODO 1")
    #<<< TODO 1


class ResidualBlock(Module):
    """x -> x + sublayer(LayerNorm(x)): one pre-norm residual sublayer."""

    def __init__(
        self, dim: int, sublayer: Callable[[Tensor], Tensor], *, eps: float = 1e-5
    ) -> None:
        self.ln = LayerNorm(dim, eps=eps)
        self.sublayer = sublayer

    def forward(self, x: Tensor) -> Tensor:
        # TODO 2: Return x plus the sublayer's output on self.ln(x): the sublayer
        # reads the normalized x, the sum uses the *unnormalized* x.
        # Hint: reuse apply_residual_connection; normalize only what the sublayer reads.
        #>>> TODO 2
        raise NotImplementedError("step 08, TODO 2")
        #<<< TODO 2
# ANCHOR_END: residual
