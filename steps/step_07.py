"""Step 07: multi-head causal self-attention.

Each token builds a query, a key and a value. A token's output is a weighted
average of the values of the tokens it may see, weighted by how well its query
matches their keys. GPT-2 does this in n_head independent heads of head_dim
numbers each, then merges the heads and projects.
"""

import math

from max.experimental import functional as F
from max.experimental.nn import Linear, Module
from max.experimental.tensor import Tensor

from solutions.solution_01 import GPT2Config
from solutions.solution_02 import causal_mask


# ANCHOR: attention
class GPT2MultiHeadAttention(Module):
    """Causal self-attention with c_attn (q, k, v in one Linear) and c_proj."""

    def __init__(self, config: GPT2Config) -> None:
        self.n_embd = config.n_embd
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        # TODO 1: Create `self.c_attn`, one Linear from n_embd to 3 * n_embd
        # that makes q, k and v at once, and `self.c_proj`, a Linear from
        # n_embd to n_embd applied after the heads are merged.
        # Hint: Linear(config.n_embd, 3 * config.n_embd, bias=True)
        #>>> TODO 1
        raise NotImplementedError("step 07, TODO 1")
        #<<< TODO 1

    def split_heads(self, x: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, n_head, seq, head_dim]."""
        # TODO 2: Reshape to [batch, seq, n_head, head_dim], then swap the
        # seq and head axes so that each head is its own [seq, head_dim] matrix.
        # Hint: x.reshape([batch, seq, self.n_head, self.head_dim]).transpose(1, 2)
        #>>> TODO 2
        raise NotImplementedError("step 07, TODO 2")
        #<<< TODO 2

    def merge_heads(self, x: Tensor) -> Tensor:
        """[batch, n_head, seq, head_dim] -> [batch, seq, n_embd]."""
        # TODO 3: Undo split_heads: swap the axes back, then flatten the heads.
        # Hint: x.transpose(1, 2).reshape([batch, seq, self.n_embd])
        #>>> TODO 3
        raise NotImplementedError("step 07, TODO 3")
        #<<< TODO 3

    def forward(self, hidden_states: Tensor) -> Tensor:
        # TODO 4: Project to q, k, v with c_attn and split the result into
        # three [batch, seq, n_embd] tensors along the last axis, then split
        # each into heads.
        # Hint: F.split(qkv, [self.n_embd] * 3, axis=-1)
        #>>> TODO 4
        raise NotImplementedError("step 07, TODO 4")
        #<<< TODO 4
        # TODO 5: Scores: q @ k^T scaled by 1 / sqrt(head_dim), plus the causal
        # mask of step 02, softmax over the key axis, then weights @ v.
        # Hint: key.transpose(-1, -2); causal_mask(seq, 0, dtype=..., device=...)
        #>>> TODO 5
        raise NotImplementedError("step 07, TODO 5")
        #<<< TODO 5
        # TODO 6: Merge the heads and project with c_proj.
        # Hint: self.c_proj(self.merge_heads(attended))
        #>>> TODO 6
        raise NotImplementedError("step 07, TODO 6")
        #<<< TODO 6
# ANCHOR_END: attention
