"""The run path's two graphs of step 13's cached GPT-2: prefill (any number of new tokens, only
the last position's logits leave it) and decode (exactly one new token per row, with fused
multiply-and-sums instead of matmuls and no mask). None of this is in the learner's step:
it is about speed, not about the idea.
"""

from __future__ import annotations

import numpy as np

def _last_token_model_class():
    from solutions.solution_13 import MaxGPT2LMHeadModelWithCache

    class LastTokenGPT2(MaxGPT2LMHeadModelWithCache):
        """Step 13's model, returning only the last position's logits [batch, vocab]."""

        def forward(self, input_ids, past_keys, past_values):
            hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
            return self.lm_head(hidden_states[:, -1, :]), keys, values

    return LastTokenGPT2


def _decode_model_class():
    """Step 13's model for one new token per row: Linear layers and attention as fused
    multiply-and-sums (RowLinear, RowAttention).

    With one row of input, ``x @ W.T`` is a matrix-vector product that only has to stream
    W once. MAX 26.7's CPU matmul handles it as a general matrix product (about 2x slower
    than the bandwidth allows, measured here: 11.6 ms vs 6.5 ms for the 50,257 x 768 LM
    head); ``sum(W * x, axis=-1)`` compiles to one fused kernel that reads W once. For a
    prompt of many tokens the matmul is the right kernel, so the prefill keeps it.
    """
    from max.experimental import functional as F
    from max.experimental.nn import Linear

    from solutions.solution_13 import GPT2AttentionWithCache

    class RowLinear(Linear):
        def forward(self, x):
            y = F.sum(F.unsqueeze(x, -2) * self.weight, axis=-1)  # [..., out, 1]
            return F.squeeze(y, -1) + self.bias

    class RowAttention(GPT2AttentionWithCache):
        """Attention of one new token: it is the newest, so it sees every key and needs no
        mask; scores and the weighted sum are fused multiply-and-sums over the cache instead
        of matmuls against a transposed copy of it (which grew with the cache)."""

        def forward(self, hidden_states, past_key, past_value):
            batch = hidden_states.shape[0]
            heads = [batch, self.n_head, 1, self.head_dim]  # one token: no transpose needed
            query, key, value = (t.reshape(heads) for t in F.split(
                self.c_attn(hidden_states), [self.n_embd] * 3, axis=-1))       # [b, h, 1, d]
            key = F.concat([past_key, key], axis=2)                                # [b, h, T, d]
            value = F.concat([past_value, value], axis=2)
            total = key.shape[2]
            scores = F.sum(query * key, axis=-1) * (1.0 / float(np.sqrt(self.head_dim)))  # [b, h, T, 1]
            weights = F.softmax(scores.reshape([batch, self.n_head, 1, total]), axis=-1)
            weights = weights.reshape([batch, self.n_head, total, 1])
            attended = F.sum(weights * value, axis=-2)                             # [b, h, 1, d]
            return self.c_proj(attended.reshape([batch, 1, self.n_embd])), key, value

    base = _last_token_model_class()

    class DecodeGPT2(base):
        """LastTokenGPT2 with RowLinear and RowAttention layers (built by ``make``)."""

        def forward(self, input_ids, past_keys, past_values):
            hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
            logits = self.lm_head(hidden_states)  # [batch, 1, vocab]: seq is 1, nothing to slice
            return logits.reshape([hidden_states.shape[0], logits.shape[-1]]), keys, values

    def make(config):
        model = DecodeGPT2(config)
        for _, module in model.descendants:
            if type(module) is Linear:
                module.__class__ = RowLinear
            elif type(module) is GPT2AttentionWithCache:
                module.__class__ = RowAttention
        return model

    return make
