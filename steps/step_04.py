"""Step 04: the feed-forward network (MLP).

After attention mixes information between tokens, the MLP transforms each
token on its own: widen to 4 * n_embd, apply GELU, project back.
"""

from max.experimental import functional as F
from max.experimental.nn import Linear, Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config


# ANCHOR: mlp
class GPT2MLP(Module):
    """c_fc (n_embd -> intermediate_size), GELU (tanh form), c_proj back."""

    def __init__(self, intermediate_size: int, config: GPT2Config) -> None:
        # TODO 1: Bind `self.c_fc`, a Linear from config.n_embd to intermediate_size,
        # and `self.c_proj`, a Linear from intermediate_size back to config.n_embd.
        # Both have a bias.
        # Hint: Linear(in_dim, out_dim, bias=True)
        #>>> TODO 1
        raise NotImplementedError("step 04, TODO 1")
        #<<< TODO 1

    def forward(self, hidden_states: Tensor) -> Tensor:
        # TODO 2: Return c_proj(GELU(c_fc(hidden_states))), a [batch, seq, n_embd] tensor.
        # GPT-2 uses the tanh approximation of GELU, not the exact erf form.
        # Hint: F.gelu has an `approximate` argument.
        #>>> TODO 2
        raise NotImplementedError("step 04, TODO 2")
        #<<< TODO 2
# ANCHOR_END: mlp
