"""The one real loading path: a Hugging Face GPT-2 checkpoint folder -> MAX weights.

A folder holds ``config.json`` and ``model.safetensors``. Hugging Face's GPT-2
stores its attention and MLP projections as ``Conv1D`` with weights shaped
[in, out]; MAX's ``Linear`` wants [out, in], so those four are transposed. The
LM head is tied to the token embedding ``wte`` and is often not saved at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the name of the offending tensor."""


def load_config(folder: str | Path):
    """The course's GPT2Config (step 01's solution) for a checkpoint's config.json."""
    from solutions.solution_01 import GPT2Config  # imported here: a grading run may hide it

    data = json.loads((Path(folder) / "config.json").read_text())
    return GPT2Config(
        vocab_size=data.get("vocab_size", 50257),
        n_positions=data.get("n_positions", 1024),
        n_embd=data.get("n_embd", 768),
        n_layer=data.get("n_layer", 12),
        n_head=data.get("n_head", 12),
        n_inner=data.get("n_inner"),
        layer_norm_epsilon=data.get("layer_norm_epsilon", 1e-5),
    )


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every tensor of a GPT2LMHeadModel checkpoint, as Hugging Face stores it."""
    d, inner = config.n_embd, config.inner_dim
    shapes = {
        "transformer.wte.weight": (config.vocab_size, d),
        "transformer.wpe.weight": (config.n_positions, d),
        "transformer.ln_f.weight": (d,),
        "transformer.ln_f.bias": (d,),
    }
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, inner), p + "mlp.c_fc.bias": (inner,),
            p + "mlp.c_proj.weight": (inner, d), p + "mlp.c_proj.bias": (d,),
        })
    return shapes


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as float32 NumPy arrays (bf16 and fp16 widened)."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype not in FLOAT_DTYPES:
                out[name] = t.numpy()  # kept as is; validation names it below
            else:
                out[name] = t.float().numpy()
    return out


def load_hf_state(folder: str | Path) -> tuple[object, dict[str, np.ndarray]]:
    """Reads and validates a checkpoint folder; keys come back as in GPT2LMHeadModel."""
    folder = Path(folder)
    for needed in ("config.json", "model.safetensors"):
        if not (folder / needed).exists():
            raise CheckpointError(f"{folder}: no {needed}; a GPT-2 checkpoint folder holds "
                                  "config.json and model.safetensors")
    config = load_config(folder)
    raw = read_safetensors(folder / "model.safetensors")
    state: dict[str, np.ndarray] = {}
    for name, arr in raw.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # old checkpoints saved the causal-mask buffers; they are not weights
        key = name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name
        state[key] = arr
    shapes = expected_shapes(config)
    for name, shape in shapes.items():
        if name not in state:
            raise CheckpointError(f"{folder}: tensor {name} is missing")
        arr = state[name]
        if arr.dtype != np.float32:
            raise CheckpointError(f"{folder}: tensor {name} has dtype {arr.dtype}; expected a "
                                  "floating-point tensor")
        if tuple(arr.shape) != shape:
            raise CheckpointError(f"{folder}: tensor {name} has shape {tuple(arr.shape)}; "
                                  f"config.json implies {shape}")
    lm_head = state.get("lm_head.weight")
    if lm_head is not None and tuple(lm_head.shape) != (config.vocab_size, config.n_embd):
        raise CheckpointError(f"{folder}: tensor lm_head.weight has shape {lm_head.shape}")
    if lm_head is None:
        state["lm_head.weight"] = state["transformer.wte.weight"]  # tied, as GPT-2 does
    unknown = sorted(set(state) - set(shapes) - {"lm_head.weight"})
    if unknown:
        raise CheckpointError(f"{folder}: unexpected tensor {unknown[0]} (and {len(unknown) - 1} more)"
                              if len(unknown) > 1 else f"{folder}: unexpected tensor {unknown[0]}")
    return config, state


def to_max(state: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """HF names -> MAX names under ``prefix``: Conv1D weights transposed to [out, in].

    ``prefix`` selects a sub-tree and strips it, e.g. ``transformer.h.0.attn.``
    gives ``c_attn.weight``, ``c_proj.bias``, ... for a step-07 module.
    """
    out = {}
    for name, arr in state.items():
        if not name.startswith(prefix):
            continue
        if name.endswith(CONV1D_SUFFIXES):
            arr = arr.T
        out[name[len(prefix):]] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def course_config(config):
    """The course's GPT2Config (step 01's solution) with a checkpoint's shapes."""
    from solutions.solution_01 import GPT2Config

    return GPT2Config(**{k: getattr(config, k) for k in (
        "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon")})
