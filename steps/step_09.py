"""Step 09: the transformer block.

A GPT-2 block is two pre-norm residual sublayers: attention, then the MLP.
    x = x + attn(ln_1(x))
    x = x + mlp(ln_2(x))
"""

from max.experimental.nn import Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config
from solutions.solution_03 import LayerNorm
from solutions.solution_04 import GPT2MLP
from solutions.solution_07 import GPT2MultiHeadAttention


# ANCHOR: block
class GPT2Block(Module):
    """One transformer block with ln_1, attn, ln_2, mlp as in Hugging Face."""

    def __init__(self, config: GPT2Config) -> None:
        # TODO 1: Bind `self.ln_1` and `self.ln_2` (LayerNorms of n_embd with the
        # config's epsilon), `self.attn` (step 07) and `self.mlp` (step 04, with the
        # config's inner width).
        # Hint: the classes are imported above; see config.layer_norm_epsilon and config.inner_dim.
        #>>> TODO 1
        raise NotImplementedError("step 09, TODO 1")
        #<<< TODO 1

    def forward(self, hidden_states: Tensor) -> Tensor:
        # TODO 2: Return hidden_states after two pre-norm residual sublayers:
        # attention (reading ln_1 of it) first, then the MLP (reading ln_2 of the result).
        # Hint: each sublayer is x = x + sublayer(ln(x)), as in step 08.
        #>>> TODO 2
        raise NotImplementedError("step 09, TODO 2")
        #<<< TODO 2
# ANCHOR_END: block
