"""Step 06: position embeddings.

Attention by itself does not know the order of tokens. GPT-2 adds a learned
vector per position, read from the table `wpe` at positions 0, 1, 2, ...
"""

from max.dtype import DType
from max.experimental.nn import Embedding, Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config


# ANCHOR: position_embeddings
class GPT2PositionEmbeddings(Module):
    """Token ids [batch, seq] -> the position vectors [seq, n_embd] to add to them."""

    def __init__(self, config: GPT2Config) -> None:
        # TODO 1: Create `self.wpe`, a table with one row of n_embd values
        # for each of the n_positions positions.
        # Hint: Embedding(n_positions, dim=n_embd)
        #>>> TODO 1
        raise NotImplementedError("step 06, TODO 1")
        #<<< TODO 1

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 2: Make the positions 0, 1, ..., seq-1 (int64, on the ids'
        # device) and look them up in wpe. The first token is position 0.
        # Hint: Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)
        # where seq = input_ids.shape[-1]
        #>>> TODO 2
        raise NotImplementedError("step 06, TODO 2")
        #<<< TODO 2
# ANCHOR_END: position_embeddings
