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
        # TODO 1: Bind `self.wpe`, an Embedding table with one row of config.n_embd
        # values for each of the config.n_positions positions.
        # Hint: the same kind of table as step 05's wte, with a different row count.
        #>>> TODO 1
        self.wpe = Embedding(config.n_positions, dim=config.n_embd)
        #<<< TODO 1

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 2: Return the [seq, n_embd] rows of wpe for positions 0, 1, ..., seq-1
        # (int64, on the ids' device). The first token is position 0.
        # Hint: seq is the last dimension of input_ids.shape; Tensor.arange counts from 0.
        #>>> TODO 2
        seq = input_ids.shape[-1]
        positions = Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)
        return self.wpe(positions)
        #<<< TODO 2
# ANCHOR_END: position_embeddings
