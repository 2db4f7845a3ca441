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
        # TODO 1: Bind `self.wte`, an Embedding table with one row of config.n_embd
        # values for each of the config.vocab_size tokens.
        # Hint: Embedding(num_rows, dim=row_width)
        #>>> TODO 1
        self.wte = Embedding(config.vocab_size, dim=config.n_embd)
        #<<< TODO 1

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 2: Return the [batch, seq, n_embd] rows of wte for the token ids.
        # Hint: an Embedding is a Module: call it on the ids.
        #>>> TODO 2
        return self.wte(input_ids)
        #<<< TODO 2
# ANCHOR_END: token_embeddings
