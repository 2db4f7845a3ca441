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
        # TODO 1: Bind `self.c_attn`, a Linear from n_embd to 3 * n_embd that makes
        # q, k and v at once, and `self.c_proj`, a Linear from n_embd to n_embd
        # applied after the heads are merged. Both have a bias.
        # Hint: Linear(in_dim, out_dim, bias=True); the sizes are in config.
        #>>> TODO 1
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=True)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=True)
        #<<< TODO 1

    def split_heads(self, x: Tensor) -> Tensor:
        """[batch, seq, n_embd] -> [batch, n_head, seq, head_dim]."""
        # TODO 2: Return x as [batch, n_head, seq, head_dim]: reshape it to
        # [batch, seq, n_head, head_dim], then swap the seq and head axes.
        # Hint: batch and seq are x.shape[0] and x.shape[1]; use x.reshape, then .transpose.
        #>>> TODO 2
        batch, seq = x.shape[0], x.shape[1]
        return x.reshape([batch, seq, self.n_head, self.head_dim]).transpose(1, 2)
        #<<< TODO 2

    def merge_heads(self, x: Tensor) -> Tensor:
        """[batch, n_head, seq, head_dim] -> [batch, seq, n_embd]."""
        # TODO 3: Return x as [batch, seq, n_embd]: undo split_heads by swapping
        # the axes back, then flattening the heads.
        # Hint: here batch and seq are x.shape[0] and x.shape[2]; transpose before reshaping.
        #>>> TODO 3
        batch, seq = x.shape[0], x.shape[2]
        return x.transpose(1, 2).reshape([batch, seq, self.n_embd])
        #<<< TODO 3

    def forward(self, hidden_states: Tensor) -> Tensor:
        # TODO 4: Set `query`, `key`, `value`, each [batch, n_head, seq, head_dim]:
        # project hidden_states with c_attn, split the result into three n_embd-wide
        # parts along the last axis, and split each into heads.
        # Hint: F.split takes a list of part sizes and an axis; then self.split_heads.
        #>>> TODO 4
        qkv = self.c_attn(hidden_states)
        query, key, value = F.split(qkv, [self.n_embd] * 3, axis=-1)
        query = self.split_heads(query)
        key = self.split_heads(key)
        value = self.split_heads(value)
        #<<< TODO 4
        # TODO 5: Bind `attended` [batch, n_head, seq, head_dim]: scores q @ k^T
        # scaled by 1 / sqrt(head_dim), plus step 02's causal mask, softmax over the
        # key axis, then the weights @ value.
        # Hint: k^T is key.transpose(-1, -2); causal_mask(seq, 0, ...); seq: hidden_states.shape[1].
        #>>> TODO 5
        seq = hidden_states.shape[1]
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores + causal_mask(
            seq, 0, dtype=scores.dtype, device=scores.device
        )
        weights = F.softmax(scores, axis=-1)
        attended = weights @ value
        #<<< TODO 5
        # TODO 6: Return the [batch, seq, n_embd] output: merge the heads of
        # `attended`, then project with c_proj.
        # Hint: the merge_heads helper above, then self.c_proj.
        #>>> TODO 6
        return self.c_proj(self.merge_heads(attended))
        #<<< TODO 6
# ANCHOR_END: attention
