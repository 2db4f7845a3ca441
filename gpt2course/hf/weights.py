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


class CorruptCheckpoint(CheckpointError):
    """A file that is not whole (truncated, trailing bytes, a header that is not safetensors)."""


GPT2_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
# safetensors' dtype codes -> NumPy's names; the first four are widened to float32 on load
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                      "I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16", "I32": "int32",
                      "U32": "uint32", "I64": "int64", "U64": "uint64", "BOOL": "bool",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2,
                "I32": 4, "U32": 4, "I64": 8, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def check_gpt2_config(data: dict, where: str | Path = "config.json") -> None:
    """Raises CheckpointError (one line) unless config.json describes a GPT-2 the course runs."""
    model_type = data.get("model_type")
    archs = data.get("architectures") or []
    if model_type != "gpt2":
        what = f"model_type {model_type!r}" if model_type else "no model_type"
        raise CheckpointError(f"{where}: not a GPT-2 checkpoint ({what}"
                              + (f", architectures {archs}" if archs else "")
                              + "); the course runs model_type 'gpt2' (GPT2LMHeadModel)")
    if archs and not any(a in GPT2_ARCHITECTURES for a in archs):
        raise CheckpointError(f"{where}: not a GPT-2 language model (architectures {archs}); "
                              "the course runs GPT2LMHeadModel")
    act = data.get("activation_function", "gelu_new")
    if act != "gelu_new":
        raise CheckpointError(f"{where}: activation_function {act!r}; the course's GPT-2 uses "
                              "'gelu_new' (GELU, tanh approximation)")
    n_embd, n_head = data.get("n_embd", 768), data.get("n_head", 12)
    if not (isinstance(n_embd, int) and isinstance(n_head, int) and n_head > 0 and n_embd % n_head == 0):
        raise CheckpointError(f"{where}: n_embd {n_embd} is not a multiple of n_head {n_head}")


def read_config_json(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def check_safetensors(path: str | Path, *, dtypes: bool = True) -> dict[str, dict]:
    """Reads only the header of a .safetensors file and checks that the file is whole.

    Raises CheckpointError (one line) for a file that is truncated, has trailing bytes, a
    header that is not safetensors, a tensor whose bytes do not match its shape, or (with
    ``dtypes``) a tensor whose dtype the course does not run. Returns the header's tensors.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpoint(f"{path}: truncated safetensors file ({size} bytes, no header)")
        n = int.from_bytes(head, "little")
        if n > size - 8 or n > 100_000_000:
            raise CorruptCheckpoint(f"{path}: truncated or corrupt safetensors file (header of {n} "
                                  f"bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptCheckpoint(f"{path}: corrupt safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CorruptCheckpoint(f"{path}: corrupt safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    end = 0
    for name, info in header.items():
        try:
            dtype, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        except (KeyError, TypeError, ValueError):
            raise CorruptCheckpoint(f"{path}: corrupt safetensors file (entry {name})") from None
        width = _DTYPE_BYTES.get(dtype)
        if width is not None and hi - lo != count * width:
            raise CorruptCheckpoint(f"{path}: corrupt safetensors file (tensor {name}: {hi - lo} bytes "
                                  f"for shape {tuple(shape)} of {dtype})")
        if dtypes and not name.endswith(MASK_BUFFER_SUFFIXES) and \
                SAFETENSORS_DTYPES.get(dtype, dtype) not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has dtype {SAFETENSORS_DTYPES.get(dtype, dtype)}; "
                                  "the course runs float32, float16 and bfloat16 checkpoints")
        end = max(end, hi)
    if 8 + n + end != size:
        what = "truncated" if 8 + n + end > size else "corrupt"
        raise CorruptCheckpoint(f"{path}: {what} safetensors file ({size} bytes; its header "
                              f"promises {8 + n + end})")
    return header


def load_config(folder: str | Path):
    """The course's GPT2Config (step 01's solution) for a checkpoint's config.json."""
    from solutions.solution_01 import GPT2Config  # imported here: a grading run may hide it

    data = read_config_json(folder)
    check_gpt2_config(data, Path(folder) / "config.json")
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
    """All tensors of a .safetensors file as NumPy arrays, floats widened to float32 (bf16 and
    fp16 included), other dtypes as they are (validation names them). NumPy alone: a check
    reads its checkpoint without importing torch (about 2 s of every check's start)."""
    header = check_safetensors(path, dtypes=False)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        data_start = 8 + int.from_bytes(f.read(8), "little")
        for name, info in header.items():
            if info["dtype"] in _NUMPY_DTYPES:
                out[name] = _read_tensor(f, data_start, info)
    return out


# safetensors' codes NumPy can read (BF16 as its bits); the floats are widened to float32 on read
_NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
                 "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def load_hf_state(folder: str | Path) -> tuple[object, dict[str, np.ndarray]]:
    """Reads and validates a checkpoint folder; keys come back as in GPT2LMHeadModel."""
    folder = Path(folder)
    for needed in ("config.json", "model.safetensors"):
        if not (folder / needed).exists():
            raise CheckpointError(f"{folder}: no {needed}; a GPT-2 checkpoint folder holds "
                                  "config.json and model.safetensors")
    config, _ = validate_checkpoint(folder)  # every check below, before any tensor is read
    raw = read_safetensors(folder / "model.safetensors")
    state: dict[str, np.ndarray] = {}
    for name, arr in raw.items():
        if name.endswith(MASK_BUFFER_SUFFIXES):
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


def _hf_key(name: str) -> str:
    return name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name


def validate_checkpoint(folder: str | Path) -> tuple[object, dict[str, str]]:
    """Every check of ``load_hf_state``, from config.json and the safetensors header alone
    (no tensor is read): (config, {GPT2LMHeadModel key: name in the file})."""
    folder = Path(folder)
    for needed in ("config.json", "model.safetensors"):
        if not (folder / needed).exists():
            raise CheckpointError(f"{folder}: no {needed}; a GPT-2 checkpoint folder holds "
                                  "config.json and model.safetensors")
    config = load_config(folder)
    header = check_safetensors(folder / "model.safetensors", dtypes=False)
    names = {_hf_key(n): n for n in header if not n.endswith(MASK_BUFFER_SUFFIXES)}
    shapes = expected_shapes(config)
    shapes_lm = dict(shapes, **{"lm_head.weight": (config.vocab_size, config.n_embd)})
    for key, shape in shapes_lm.items():
        if key not in names:
            if key == "lm_head.weight":
                continue  # tied to wte, as GPT-2 does
            raise CheckpointError(f"{folder}: tensor {key} is missing")
        info = header[names[key]]
        dtype = SAFETENSORS_DTYPES.get(info["dtype"], info["dtype"])
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{folder}: tensor {key} has dtype {dtype}; expected a "
                                  "floating-point tensor")
        if tuple(info["shape"]) != shape:
            if key == "lm_head.weight":
                raise CheckpointError(f"{folder}: tensor lm_head.weight has shape {tuple(info['shape'])}")
            raise CheckpointError(f"{folder}: tensor {key} has shape {tuple(info['shape'])}; "
                                  f"config.json implies {shape}")
    unknown = sorted(set(names) - set(shapes_lm))
    if unknown:
        raise CheckpointError(f"{folder}: unexpected tensor {unknown[0]} (and {len(unknown) - 1} more)"
                              if len(unknown) > 1 else f"{folder}: unexpected tensor {unknown[0]}")
    return config, names


def _read_tensor(f, data_start: int, info: dict) -> np.ndarray:
    """One tensor of a safetensors file as a new array, float32 for every float dtype, read with
    plain reads (no mmap: the file's pages stay in the page cache, not in this process's
    resident set)."""
    dtype, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    f.seek(data_start + lo)
    raw = _NUMPY_DTYPES[dtype]
    count = (hi - lo) // np.dtype(raw).itemsize
    arr = np.fromfile(f, dtype=raw, count=count)
    if arr.size != count:
        raise CorruptCheckpoint(f"{f.name}: truncated safetensors file (tensor data ends early)")
    if dtype == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    elif dtype in ("F16", "F64"):
        arr = arr.astype(np.float32)
    return arr.reshape(shape)


def load_max_state(folder: str | Path) -> tuple[object, dict[str, np.ndarray]]:
    """The lean loader: (config, MAX-layout float32 weights) with one tensor in flight at a time.

    ``to_max(load_hf_state(folder)[1])`` holds every tensor as read (safetensors maps the
    file) and, next to them, the transposed copies of the Conv1D weights. Here each tensor
    is read with plain reads into its own array, widened or transposed into its final form,
    and its source dropped before the next one is read: the peak is the weights once plus
    the largest tensor. The tied LM head is the same array as ``wte``.
    """
    folder = Path(folder)
    config, names = validate_checkpoint(folder)
    path = folder / "model.safetensors"
    header = check_safetensors(path, dtypes=False)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        data_start = 8 + int.from_bytes(f.read(8), "little")
        for key, name in names.items():
            arr = _read_tensor(f, data_start, header[name])
            if key.endswith(CONV1D_SUFFIXES):
                arr = np.ascontiguousarray(arr.T)  # the one extra copy, freed at once
            out[key] = arr
            del arr
    if "lm_head.weight" not in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return config, out


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
