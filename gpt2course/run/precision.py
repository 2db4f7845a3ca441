"""Weights in fewer bytes: the run path's ``--dtype fp32 | bf16 | int8 | q4_0``.

Decoding one token reads every weight of the model once, so on a CPU it is bound by memory
bandwidth: GPT-2 small's 124M fp32 weights are ~0.5 GB a token. Storing them in fewer bytes
reads less:

* ``bf16``: bfloat16, float32's top 16 bits (rounded to nearest even): 8 exponent bits, so the
  range of float32, and 8 significant bits (a relative error up to 2**-8 per weight).
* ``int8``: weight-only int8, one float32 scale per output row (step 15's quantization, for
  every Linear layer and the LM head): ``w ~ q * scale`` with ``q`` in [-127, 127].
* ``q4_0``: 4 bits a weight in blocks of 32 along each row, one float16 scale a block (GGML's
  Q4_0, 18 bytes for 32 weights): ``w ~ (q - 8) * d`` with ``q`` in [0, 15] and ``d`` the
  block's largest-magnitude weight over -8. MAX multiplies by it with its own quantized
  kernel (``F.qmatmul``, the one GGUF models run on), not by casting up; that kernel also
  rounds each row of activations to 8 bits (GGML's Q8_0) before it multiplies.

Only the Linear layers' weights change (the matrices decode streams); LayerNorm parameters,
biases and the embeddings stay float32 (an embedding lookup reads one row per token, and the
int8 LM head is a copy of the tied ``wte``). The arithmetic stays float32: each graph casts a
weight up as it reads it (``FastLinear`` in ``gpt2course/run/graphs.py``).
"""

from __future__ import annotations

import numpy as np

DTYPES = ("fp32", "bf16", "int8", "q4_0")
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8": 1}  # q4_0: 18 bytes per 32 (weight_bytes)
Q4_0_BLOCK = 32        # weights per block
Q4_0_BLOCK_BYTES = 18  # a block: 2 bytes of float16 scale + 16 bytes of nibbles


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return dtype


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 as uint16 bits, rounded to nearest, ties to even (NumPy has no bf16)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 15's per-row int8 quantization: (q int8 [out, in], scale float32 [out])."""
    from solutions.solution_15 import quantize_rows as quantize

    return quantize(weight)


def q4_0_blocks(weight: np.ndarray) -> np.ndarray:
    """[out, in] float32 -> GGML Q4_0 blocks, uint8 [out, in / 32 * 18], as llama.cpp's reference
    quantizer writes them: per block of 32, ``d = m / -8`` with ``m`` the weight of largest
    magnitude (sign kept), ``q = min(15, trunc(w / d + 8.5))``; a block's 16 bytes hold weight
    ``j`` in the low nibble of byte ``j`` and weight ``j + 16`` in its high nibble."""
    out_dim, in_dim = weight.shape
    if in_dim % Q4_0_BLOCK:  # every GPT-2's are (768, 1024, 1280, 1600 and 4x those)
        from gpt2course.errors import CheckFailure

        raise CheckFailure(f"q4_0 stores rows in blocks of {Q4_0_BLOCK} weights; this model has a "
                           f"[{out_dim}, {in_dim}] matrix", "run with --dtype int8")
    if out_dim % Q4_0_BLOCK:  # MAX's kernel takes whole groups of 32 rows: zero rows, sliced off
        weight = np.concatenate([weight, np.zeros((q4_0_rows(out_dim) - out_dim, in_dim), np.float32)])
        out_dim = weight.shape[0]
    blocks = np.asarray(weight, dtype=np.float32).reshape(-1, Q4_0_BLOCK)
    m = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1, keepdims=True), axis=-1)
    d = m / -8
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, 0, 1 / d).astype(np.float32)
    q = np.clip(np.trunc(blocks * inv + np.float32(8.5)), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << np.uint8(4))
    out = np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=-1)
    return out.reshape(q4_0_shape(out_dim, in_dim))


def q4_0_rows(out_dim: int) -> int:
    """Rows as stored in q4_0: MAX's kernel wants a multiple of 32 (the LM head's 50,257 -> 50,272)."""
    return -(-out_dim // Q4_0_BLOCK) * Q4_0_BLOCK


def q4_0_shape(out_dim: int, in_dim: int) -> tuple[int, int]:
    """The uint8 shape an [out, in] matrix takes in q4_0: padded rows, 18 bytes per 32 weights."""
    return q4_0_rows(out_dim), in_dim // Q4_0_BLOCK * Q4_0_BLOCK_BYTES


def q4_0_to_float32(blocks: np.ndarray, in_dim: int) -> np.ndarray:
    """GGML Q4_0 blocks -> [out, in] float32 (what ``F.qmatmul`` multiplies by)."""
    b = blocks.reshape(-1, Q4_0_BLOCK_BYTES)
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([b[:, 2:] & 0x0F, b[:, 2:] >> 4], axis=-1).astype(np.float32) - 8
    return (q * d).reshape(-1, in_dim)


def linear_weight_names(state: dict[str, np.ndarray]) -> list[str]:
    """The names of the Linear layers' weights in a MAX-layout GPT-2 state ([out, in] matrices)."""
    return [name for name in state
            if name.endswith(".weight") and name.rsplit(".", 2)[-2] in ("c_attn", "c_proj", "c_fc",
                                                                         "lm_head")]


def stored_weights(state: dict[str, np.ndarray], dtype: str) -> dict[str, object]:
    """The weights as the compiled graphs take them: NumPy arrays, or MAX buffers for bf16.

    int8 adds ``<layer>.scale`` beside each quantized ``<layer>.weight``. ``state`` is
    converted in place, one matrix at a time, so its float32 copy of each matrix is freed as
    soon as the narrow one exists (the peak is the float32 weights plus one matrix, not both
    sets); pass a copy to keep it. ``wte`` stays float32 (the LM head is its quantized copy).
    """
    check_dtype(dtype)
    if dtype == "fp32":
        return state
    from max.driver import Buffer
    from max.dtype import DType

    for name in linear_weight_names(state):
        w = state.pop(name)
        if dtype == "bf16":
            state[name] = Buffer.from_numpy(bf16_bits(w)).view(DType.bfloat16, w.shape)
        elif dtype == "q4_0":
            state[name] = q4_0_blocks(w)
        else:
            state[name], state[name[: -len("weight")] + "scale"] = quantize_rows(w)
        del w
    return state


def as_tensor(value):
    """A stored weight as a MAX Tensor: a NumPy array, or a MAX buffer (bf16: NumPy has none)."""
    from max.driver import Buffer
    from max.experimental.tensor import Tensor

    if isinstance(value, Buffer):
        return Tensor(storage=value)
    return Tensor.from_dlpack(np.ascontiguousarray(value))


def weight_bytes(state: dict[str, np.ndarray], dtype: str) -> int:
    """Bytes of the Linear layers' weights (what decode streams per token), scales included."""
    total = 0
    for name in linear_weight_names(state):
        out_dim, in_dim = state[name].shape
        if dtype == "q4_0":
            total += int(np.prod(q4_0_shape(out_dim, in_dim)))  # scales included
        else:
            total += out_dim * in_dim * BYTES_PER_WEIGHT[dtype] + (out_dim * 4 if dtype == "int8" else 0)
    return total
