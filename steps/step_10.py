"""Step 10: the GPT-2 model body.

Token ids -> token + position embeddings -> n_layer blocks -> final LayerNorm.
The attribute names (wte, wpe, h, ln_f) are those of Hugging Face's checkpoint,
so its weights load by name.
"""

from max.dtype import DType
from max.experimental.nn import Embedding, Module, Sequential
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config
from solutions.solution_03 import LayerNorm
from solutions.solution_09 import GPT2Block


# ANCHOR: model
class GPT2Model(Module):
    """Token ids [batch, seq] -> final hidden states [batch, seq, n_embd]."""

    def __init__(self, config: GPT2Config) -> None:
        # TODO 1: Bind `self.wte` (config.vocab_size rows) and `self.wpe`
        # (config.n_positions rows), Embedding tables config.n_embd wide.
        # Hint: the same tables as steps 05 and 06.
        #>>> TODO 1
        raise NotImplementedError("step 10, TODO 1")
        #<<< TODO 1
        # TODO 2: Bind `self.h`, the config.n_layer GPT2Blocks in order (children
        # named 0, 1, ...), and `self.ln_f`, the final LayerNorm (config's epsilon).
        # Hint: Sequential(*modules) chains modules and names them 0, 1, 2, ...
        #>>> TODO 2
        raise NotImplementedError("step 10, TODO 2")
        #<<< TODO 2

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 3: Return ln_f of the blocks run on the token embeddings plus the
        # position embeddings of 0..seq-1 (seq = input_ids.shape[-1]).
        # Hint: Tensor.arange as in step 06; calling self.h runs every block in order.
        #>>> TODO 3
        raise NotImplementedError("step 10, TODO 3")
        #<<< TODO 3
# ANCHOR_END: model
