"""Step 11: the language-model head.

The last layer turns each final hidden vector (n_embd numbers) into one score
per vocabulary token: the logits. The scores at position i rank the candidates
for the token at position i + 1.
"""

from max.experimental.nn import Linear, Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config
from solutions.solution_10 import GPT2Model


# ANCHOR: lm_head
class MaxGPT2LMHeadModel(Module):
    """GPT-2 with its LM head: token ids [batch, seq] -> logits [batch, seq, vocab_size]."""

    def __init__(self, config: GPT2Config) -> None:
        self.config = config
        # TODO 1: Bind `self.transformer`, the model body of step 10, and
        # `self.lm_head`, a Linear from n_embd to vocab_size *without* bias.
        # Hint: Linear(in_dim, out_dim, bias=...); the sizes are in config.
        #>>> TODO 1
        raise NotImplementedError("step 11, TODO 1")
        #<<< TODO 1

    def forward(self, input_ids: Tensor) -> Tensor:
        # TODO 2: Return the logits [batch, seq, vocab_size]: run the body on
        # input_ids, then project every position with lm_head.
        # Hint: both are Modules: call them.
        #>>> TODO 2
        raise NotImplementedError("step 11, TODO 2")
        #<<< TODO 2
# ANCHOR_END: lm_head
