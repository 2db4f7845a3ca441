"""The run path's two graphs of step 13's GPT-2, with an in-place KV cache: prefill (any number
of new tokens; only the last position's logits leave it) and decode (exactly one new token per
row: fused multiply-and-sums instead of matmuls, no mask). None of this is in the learner's
steps: it is about speed, not about the idea.

The KV cache (step 13 grows it with ``F.concat``, a copy of every layer's cache per step that
grows with the context) is here one buffer per layer for keys and one for values,
[batch, n_head, capacity, head_dim], allocated once per generation. Both graphs take them as
mutable inputs (``BufferType``) with ``start`` and ``end``, the positions of the new tokens
(host int64 scalars of shape [1]): they write the new keys and values into
``[start, end)`` in place and read back ``[0, end)``, the filled part only. A graph returns
only logits.

``FastLinear`` reads its weight as stored (float32, bfloat16, or int8 with a scale per output
row: gpt2course/run/precision.py) and casts it up as it reads it.
"""

from __future__ import annotations

import numpy as np
from max.dtype import DType
from max.experimental import functional as F
from max.experimental.nn import Linear
from max.experimental.tensor import Tensor
from max.graph import TensorValue
from max.graph.quantization import QuantizationEncoding

from gpt2course.run.precision import q4_0_shape
from solutions.solution_13 import GPT2AttentionWithCache, MaxGPT2LMHeadModelWithCache


class FastLinear(Linear):
    """``x @ W.T + b`` with ``W`` stored as float32, bfloat16 or int8 (times ``scale`` per row).

    With ``rows`` (decode: one new token) the product is ``sum(W * x, axis=-1)``: MAX 26.7's
    CPU matmul treats a matrix-vector product as a general matrix product (about 2x slower
    than the bandwidth allows, measured here: 11.6 ms vs 6.5 ms for the 50,257 x 768 LM head),
    while a multiply-and-sum compiles to one fused kernel that reads W once, cast included.
    """

    rows: bool = False
    scale: Tensor | None = None
    out_dim: int = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dtype == DType.uint8:  # q4_0 blocks: MAX's quantized matmul, rows or not
            y = F.qmatmul(QuantizationEncoding.Q4_0, None, x, self.weight)
            if self.weight.shape[0] != self.out_dim:  # rows padded to a multiple of 32
                y = y[..., : self.out_dim]
            return y + self.bias
        w = self.weight if self.weight.dtype == DType.float32 else F.cast(self.weight, DType.float32)
        if self.rows:
            y = F.squeeze(F.sum(F.unsqueeze(x, -2) * w, axis=-1), -1)  # [..., out]
        else:
            y = x @ w.T
        if self.scale is not None:
            y = y * self.scale
        return y + self.bias


def _positions(start: Tensor, seq, device) -> Tensor:
    """The new tokens' absolute positions: start, ..., start + seq - 1 (int64 [seq])."""
    return start.to(device) + Tensor.arange(0, seq, out_dim=seq, dtype=DType.int64, device=device)


class InPlaceAttention(GPT2AttentionWithCache):
    """Step 13's attention, writing the new keys and values into the cache buffers in place."""

    def _write(self, hidden_states, key_cache, value_cache, start, end):
        seq = hidden_states.shape[1]
        # graph values, not Tensors: slice bounds are read as they are, not converted
        start, end = TensorValue(start), TensorValue(end)
        query, key, value = F.split(self.c_attn(hidden_states), [self.n_embd] * 3, axis=-1)
        query, key, value = (self.split_heads(t) for t in (query, key, value))  # [b, h, seq, d]
        key_cache[:, :, (slice(start, end), seq), :] = key
        value_cache[:, :, (slice(start, end), seq), :] = value
        keys = key_cache[:, :, (slice(0, end), "total"), :]                       # [b, h, T, d]
        values = value_cache[:, :, (slice(0, end), "total"), :]
        return query, keys, values

    def forward(self, hidden_states, key_cache, value_cache, start, end):
        query, keys, values = self._write(hidden_states, key_cache, value_cache, start, end)
        total = keys.shape[2]
        device = hidden_states.device
        seq = hidden_states.shape[1]
        query_positions = _positions(start, seq, device)
        key_positions = Tensor.arange(0, total, out_dim=total, dtype=DType.int64, device=device)
        allowed = key_positions.reshape([1, total]) <= query_positions.reshape([seq, 1])
        zeros = F.full([seq, total], 0.0, dtype=DType.float32, device=device)
        mask = F.where(allowed, zeros, zeros + float("-inf"))                      # [seq, T]
        scores = query @ keys.transpose(-1, -2) * (1.0 / float(np.sqrt(self.head_dim))) + mask
        attended = F.softmax(scores, axis=-1) @ values
        return self.c_proj(self.merge_heads(attended))


class InPlaceRowAttention(InPlaceAttention):
    """One new token per row: it is the newest, so it sees every key and needs no mask; scores
    and the weighted sum are fused multiply-and-sums over the filled cache."""

    def forward(self, hidden_states, key_cache, value_cache, start, end):
        batch = hidden_states.shape[0]
        query, keys, values = self._write(hidden_states, key_cache, value_cache, start, end)
        total = keys.shape[2]
        scores = F.sum(query * keys, axis=-1) * (1.0 / float(np.sqrt(self.head_dim)))  # [b, h, T, 1]
        weights = F.softmax(scores.reshape([batch, self.n_head, 1, total]), axis=-1)
        weights = weights.reshape([batch, self.n_head, total, 1])
        attended = F.sum(weights * values, axis=-2)                                  # [b, h, 1, d]
        return self.c_proj(attended.reshape([batch, 1, self.n_embd]))


class InPlaceGPT2(MaxGPT2LMHeadModelWithCache):
    """Step 13's model on the in-place cache: forward(ids, start, end, key caches, value
    caches) -> the last position's logits [batch, vocab]."""

    def forward(self, input_ids, start, end, key_caches, value_caches):
        t = self.transformer
        seq = input_ids.shape[-1]
        hidden_states = t.wte(input_ids) + t.wpe(_positions(start, seq, input_ids.device))
        for block, key_cache, value_cache in zip(t.h, key_caches, value_caches):
            hidden_states = hidden_states + block.attn(block.ln_1(hidden_states), key_cache,
                                                       value_cache, start, end)
            hidden_states = hidden_states + block.mlp(block.ln_2(hidden_states))
        hidden_states = t.ln_f(hidden_states[:, -1, :])  # LayerNorm is per position
        return self.lm_head(hidden_states)


def _store(linear: Linear, dtype: str, rows: bool) -> None:
    """Makes a Linear a FastLinear whose weight is stored as ``dtype`` (built lazily)."""
    linear.__class__ = FastLinear
    linear.rows = rows
    out_dim, in_dim = linear.weight.shape
    linear.out_dim = int(out_dim)
    if dtype == "bf16":
        linear.weight = Tensor.zeros([out_dim, in_dim], dtype=DType.bfloat16)
    elif dtype == "int8":
        linear.weight = Tensor.zeros([out_dim, in_dim], dtype=DType.int8)
        linear.scale = Tensor.ones([out_dim], dtype=DType.float32)
    elif dtype == "q4_0":
        linear.weight = Tensor.zeros(list(q4_0_shape(int(out_dim), int(in_dim))), dtype=DType.uint8)


def store_linear_weights(model, dtype: str):
    """Every Linear of ``model`` a FastLinear whose weight is stored as ``dtype`` (matmuls);
    ``make serve --dtype`` and ``make eval --dtype`` use it. Returns the model (fp32: as it was)."""
    if dtype == "fp32":
        return model
    for _, module in model.descendants:
        if type(module) is Linear:
            _store(module, dtype, rows=False)
    return model


def build(config, *, decode: bool, dtype: str = "fp32") -> InPlaceGPT2:
    """The prefill graph's module (``decode=False``) or the decode graph's, weights stored as
    ``dtype``. Call inside ``F.lazy()`` and the device's ``default_device``."""
    model = InPlaceGPT2(config)
    for _, module in model.descendants:
        if type(module) is Linear:
            _store(module, dtype, rows=decode)
        elif type(module) is GPT2AttentionWithCache:
            module.__class__ = InPlaceRowAttention if decode else InPlaceAttention
    return model
