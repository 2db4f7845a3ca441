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
        # TODO 1: Create the embedding tables `wte` (vocab_size rows) and `wpe`
        # (n_positions rows), both n_embd wide.
        # Hint: Embedding(config.vocab_size, dim=config.n_embd)
        #>>> TODO 1
        self.wte = Embedding(config.vocab_size, dim=config.n_embd)
        self.wpe = Embedding(config.n_positions, dim=config.n_embd)
        #<<< TODO 1
        # TODO 2: Create `h`, the n_layer blocks in order, and `ln_f`, the
        # final LayerNorm.
        # Hint: Sequential(*(GPT2Block(config) for _ in range(config.n_layer)))
        #>>> TODO 2
        self.h = Sequential(*(GPT2Block(config) for _ in range(config.n_layer)))
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        #<<< TODO 2

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 3: Add the token embeddings and the position embeddings
        # (positions 0..seq-1), run the blocks, apply ln_f.
        # Hint: Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)
        #>>> TODO 3
        seq = input_ids.shape[-1]
        positions = Tensor.arange(seq, dtype=DType.int64, device=input_ids.device)
        hidden_states = self.wte(input_ids) + self.wpe(positions)
        hidden_states = self.h(hidden_states)
        return self.ln_f(hidden_states)
        #<<< TODO 3
# ANCHOR_END: model
