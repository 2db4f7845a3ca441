"""Step 05: token embeddings.

Token ids are integers; the model needs vectors. The token embedding table
`wte` has one learned row of n_embd numbers per vocabulary entry, and looking a
token up is just reading its row.
"""

from max.experimental.nn import Embedding, Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config


# ANCHOR: token_embeddings
class GPT2Embeddings(Module):
    """Token ids [batch, seq] -> vectors [batch, seq, n_embd]."""

    def __init__(self, config: GPT2Config) -> None:
        # TODO 1: Create `self.wte`, an embedding table with one row of
        # n_embd values for each of the vocab_size tokens.
        # Hint: Embedding(vocab_size, dim=n_embd)
        #>>> TODO 1
        raise NotImplementedError("step 05, TODO 1")
        #<<< TODO 1

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 2: Look up the row of every token id.
        # Hint: an Embedding is a Module: call it on the ids.
        #>>> TODO 2
        raise NotImplementedError("step 05, TODO 2")
        #<<< TODO 2
# ANCHOR_END: token_embeddings
