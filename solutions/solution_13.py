"""Step 13 (bonus): the KV cache.

Step 12 generates by running the whole sequence through the model again for
every new token, although only the newest token is new. In a GPT-2 block the
only place where tokens meet is attention, and there an old token contributes
nothing but its key and its value, which never change once computed (a token
cannot see the tokens after it). So keep them: a KV cache holds, for every
layer, the keys and values of all tokens so far.

Generation then has two phases:
  prefill: run the prompt once, with an empty cache; keep its keys and values.
  decode:  run only the newest token; its query attends to the cached keys
           plus its own, and its key and value are appended to the cache.

The parameter names are Hugging Face's, as in step 11, so the same checkpoint
loads: transformer.h.N.attn.c_attn, ... The cached model returns the logits
and the grown cache: (logits, keys, values), one key and one value tensor per
layer, each [batch, n_head, past + seq, head_dim].
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from max.driver import Device
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.nn import Embedding, Linear, Module, ModuleList
from max.experimental.tensor import Tensor
from max.graph import Dim

from solutions.solution_01 import GPT2Config
from solutions.solution_03 import LayerNorm
from solutions.solution_04 import GPT2MLP
from solutions.solution_07 import GPT2MultiHeadAttention
from solutions.solution_12 import sample_next_token


# ANCHOR: positions
def new_positions(past_length: Dim, seq_length: Dim, *, device: Device) -> Tensor:
    """The absolute positions of the new tokens: past_length, ..., past_length + seq_length - 1."""
    # TODO 1: Return the int64 positions past_length .. past_length + seq_length - 1
    # on `device`: the new tokens come after the cached ones, not at 0.
    # Hint: Tensor.arange(start, stop, ...); out_dim=seq_length names its length.
    #>>> TODO 1
    return Tensor.arange(past_length, past_length + seq_length, out_dim=seq_length,
                         dtype=DType.int64, device=device)
    #<<< TODO 1
# ANCHOR_END: positions


# ANCHOR: mask
def cached_causal_mask(
    past_length: Dim, seq_length: Dim, *, dtype: DType, device: Device
) -> Tensor:
    """The additive mask [seq_length, past_length + seq_length] for new tokens after a cache.

    It is step 02's ``causal_mask(seq_length, past_length)``, built from
    positions: new token i sits at position past_length + i and may see every
    key at that position or before.
    """
    # TODO 2: Return the [seq_length, past_length + seq_length] mask of `dtype`: 0 where
    # key j is allowed for query i (key position j <= query position i), else -inf.
    # Query positions are new_positions(...); key positions 0 .. past_length + seq_length - 1.
    # Hint: reshape to [seq_length, 1] and [1, past_length + seq_length], compare; F.where.
    #>>> TODO 2
    total = past_length + seq_length
    query_positions = new_positions(past_length, seq_length, device=device)
    key_positions = Tensor.arange(0, total, out_dim=total, dtype=DType.int64, device=device)
    allowed = key_positions.reshape([1, total]) <= query_positions.reshape([seq_length, 1])
    zeros = F.full([seq_length, total], 0.0, dtype=dtype, device=device)
    return F.where(allowed, zeros, zeros + float("-inf"))
    #<<< TODO 2
# ANCHOR_END: mask


# ANCHOR: attention
class GPT2AttentionWithCache(GPT2MultiHeadAttention):
    """Step 07's attention, reading and growing a KV cache.

    Same parameters (c_attn, c_proj) and the same head splitting; forward
    takes this layer's cached keys and values [batch, n_head, past, head_dim]
    and returns (output, keys, values) with the new tokens' keys and values
    appended.
    """

    def forward(self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor):
        qkv = self.c_attn(hidden_states)
        query, key, value = F.split(qkv, [self.n_embd] * 3, axis=-1)
        query = self.split_heads(query)
        key = self.split_heads(key)
        value = self.split_heads(value)
        # TODO 3: Rebind `key` and `value` to the cached ones with the new ones appended
        # along the sequence axis (axis 2 of [batch, n_head, seq, head_dim]). `query`
        # stays the new tokens' only.
        # Hint: F.concat takes a list of tensors and an axis; the cache comes first.
        #>>> TODO 3
        key = F.concat([past_key, key], axis=2)
        value = F.concat([past_value, value], axis=2)
        #<<< TODO 3
        # TODO 4: Bind `attended` [batch, n_head, seq, head_dim]: the new queries over
        # all keys, scores scaled by 1 / sqrt(head_dim), plus cached_causal_mask,
        # softmax over the last axis, times value.
        # Hint: past_length is past_key.shape[2], seq_length is hidden_states.shape[1].
        #>>> TODO 4
        past_length, seq_length = past_key.shape[2], hidden_states.shape[1]
        scores = query @ key.transpose(-1, -2) / float(np.sqrt(self.head_dim))
        scores = scores + cached_causal_mask(
            past_length, seq_length, dtype=scores.dtype, device=scores.device
        )
        attended = F.softmax(scores, axis=-1) @ value
        #<<< TODO 4
        return self.c_proj(self.merge_heads(attended)), key, value
# ANCHOR_END: attention


class GPT2BlockWithCache(Module):
    """Step 09's block with the cached attention: returns (hidden_states, keys, values)."""

    def __init__(self, config: GPT2Config) -> None:
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2AttentionWithCache(config)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config.inner_dim, config)

    def forward(self, hidden_states: Tensor, past_key: Tensor, past_value: Tensor):
        attn_output, key, value = self.attn(self.ln_1(hidden_states), past_key, past_value)
        hidden_states = hidden_states + attn_output
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, key, value


# ANCHOR: model
class GPT2ModelWithCache(Module):
    """Step 10's model body with a KV cache.

    forward(input_ids [batch, seq], past_keys, past_values) -> (hidden states
    [batch, seq, n_embd], keys, values), where past_keys and past_values hold
    one tensor per layer.
    """

    def __init__(self, config: GPT2Config) -> None:
        self.wte = Embedding(config.vocab_size, dim=config.n_embd)
        self.wpe = Embedding(config.n_positions, dim=config.n_embd)
        self.h = ModuleList(GPT2BlockWithCache(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: Tensor, past_keys: list[Tensor], past_values: list[Tensor]):
        past_length, seq_length = past_keys[0].shape[2], input_ids.shape[-1]
        # TODO 5: Bind `hidden_states`: the token embeddings of input_ids plus the
        # position embeddings at their true positions past_length .. past_length + seq_length - 1.
        # Hint: new_positions (TODO 1), with input_ids.device.
        #>>> TODO 5
        positions = new_positions(past_length, seq_length, device=input_ids.device)
        hidden_states = self.wte(input_ids) + self.wpe(positions)
        #<<< TODO 5
        # TODO 6: Run the blocks in order, each with its own layer's past_key and
        # past_value, rebinding `hidden_states`; bind `keys` and `values`, the lists
        # of the keys and values the blocks return.
        # Hint: zip self.h, past_keys and past_values; a block returns (hidden_states, key, value).
        #>>> TODO 6
        keys, values = [], []
        for block, past_key, past_value in zip(self.h, past_keys, past_values):
            hidden_states, key, value = block(hidden_states, past_key, past_value)
            keys.append(key)
            values.append(value)
        #<<< TODO 6
        return self.ln_f(hidden_states), keys, values
# ANCHOR_END: model


class MaxGPT2LMHeadModelWithCache(Module):
    """Step 11's language model with a KV cache: (logits [batch, seq, vocab], keys, values)."""

    def __init__(self, config: GPT2Config) -> None:
        self.config = config
        self.transformer = GPT2ModelWithCache(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, input_ids: Tensor, past_keys: list[Tensor], past_values: list[Tensor]):
        hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
        return self.lm_head(hidden_states), keys, values


# A cached model for generation: (token ids [batch, seq], cache or None) ->
# (logits [batch, seq, vocab_size] as NumPy, the grown cache). None means an
# empty cache. The cache is opaque here: whatever the model hands back is what
# it wants the next time (gpt2course/run/engine.py keeps it on the device).
CachedLogitsFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]


# ANCHOR: generate
def generate_with_cache(
    model: CachedLogitsFn,
    input_ids: np.ndarray,
    max_new_tokens: int,
    *,
    eos_token_id: int | None = None,
    seed: int | None = None,
    **sampling,
) -> np.ndarray:
    """Step 12's generate_tokens with a KV cache; returns the prompt and the new ids."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(input_ids, dtype=np.int64)
    if max_new_tokens <= 0:
        return ids
    # TODO 7: Bind `logits` and `cache`: prefill, running the whole prompt `ids`
    # once from an empty cache.
    # Hint: model(ids, cache) returns (logits, cache); None is the empty cache.
    #>>> TODO 7
    logits, cache = model(ids, None)
    #<<< TODO 7
    # As in step 12: a row that has produced eos_token_id is finished and gets only
    # eos_token_id from then on; the loop stops once every row is finished.
    finished = np.zeros(ids.shape[0], dtype=bool)
    for i in range(max_new_tokens):
        next_token = sample_next_token(logits[:, -1, :], rng=rng, **sampling)
        if eos_token_id is not None:
            next_token = np.where(finished, eos_token_id, next_token)
            finished |= next_token == eos_token_id
        ids = np.concatenate([ids, next_token[:, None]], axis=1)
        if i == max_new_tokens - 1 or finished.all():
            break
        # TODO 8: Rebind `logits` and `cache`: decode, running only the token just
        # chosen, as [batch, 1], with the cache; everything before it is cached.
        # Hint: next_token is [batch]; the line above shows how to make it a column.
        #>>> TODO 8
        logits, cache = model(next_token[:, None], cache)
        #<<< TODO 8
    return ids
# ANCHOR_END: generate
