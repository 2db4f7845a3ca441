"""Reference numbers from Hugging Face's own GPT-2 code, on the same checkpoint.

``capture`` runs ``transformers.GPT2LMHeadModel`` once on fixed token ids and
records the input and output of every submodule (each block, its LayerNorms,
attention and MLP, the embeddings, the final LayerNorm), so each step compares
against what that very module computes inside the real model, masking included.

With ``store`` (a folder) a capture is also kept on disk, keyed by everything that decides
it: the checkpoint's files (path, size, modification time), the ids, and the versions of
transformers and torch. A later check on the same checkpoint then reads Hugging Face's
numbers back instead of importing torch and transformers and running the model again (about
3 s of every check). A file that cannot be read is computed again and replaced. A graded run
passes no ``store``: its checkpoint is secret and new each run.

``config_defaults`` is the same for ``transformers.GPT2Config()``'s defaults (step 01), keyed by
the transformers version: importing transformers' GPT2Config imports torch, about 5 s of CPU.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from gpt2course.state import load_json, save_json


@functools.lru_cache(maxsize=4)
def hf_model(folder: str):
    """Hugging Face GPT2LMHeadModel from a checkpoint folder, float32, eval, eager attention."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager",
                                            dtype=torch.float32)
    model.eval()
    return model


@dataclass
class Capture:
    input_ids: np.ndarray
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    logits: np.ndarray | None = None
    hidden_states: list[np.ndarray] = field(default_factory=list)


def fixed_input_ids(vocab_size: int, batch: int = 2, seq: int = 7, seed=0) -> np.ndarray:
    """The token ids every check feeds: deterministic, odd length, two rows that differ.
    ``seed``: an int, or what NumPy's default_rng takes (a graded run's secret mix)."""
    return np.random.default_rng(seed).integers(0, vocab_size, size=(batch, seq), dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _capture_cached(folder: str, ids_bytes: bytes, shape: tuple[int, int]) -> Capture:
    import torch

    model = hf_model(folder)
    ids = np.frombuffer(ids_bytes, dtype=np.int64).reshape(shape)
    cap = Capture(input_ids=ids)
    hooks = []

    def first(x):
        return x[0] if isinstance(x, (tuple, list)) else x

    def hook(name):
        def fn(module, args, kwargs, output):
            arg = args[0] if args else next(iter(kwargs.values()))
            cap.inputs[name] = first(arg).detach().float().numpy().copy()
            cap.outputs[name] = first(output).detach().float().numpy().copy()
        return fn

    for name, module in model.named_modules():
        if name.startswith("transformer.") and name.count(".") <= 3:
            hooks.append(module.register_forward_hook(hook(name), with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(ids.copy()), output_hidden_states=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    cap.logits = out.logits.float().numpy()
    cap.hidden_states = [h.float().numpy() for h in out.hidden_states]
    return cap


def capture(folder: str | Path, input_ids: np.ndarray, store: Path | None = None) -> Capture:
    """Hugging Face's activations on ``input_ids``; ``store``: keep and reuse them on disk there."""
    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    if store is None:
        return _capture_cached(str(folder), ids.tobytes(), tuple(ids.shape))
    return _stored_capture(str(folder), ids.tobytes(), tuple(ids.shape), str(store))


@functools.lru_cache(maxsize=8)
def _stored_capture(folder: str, ids_bytes: bytes, shape: tuple[int, int], store: str) -> Capture:
    path = Path(store) / f"{_capture_key(folder, ids_bytes, shape)}.npz"
    try:
        return _read_capture(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        pass  # absent, or not whole: compute it again below
    cap = _capture_cached(folder, ids_bytes, shape)
    _write_capture(path, cap)
    return cap


def _capture_key(folder: str, ids_bytes: bytes, shape: tuple[int, int]) -> str:
    """What decides a capture: the checkpoint's files as they are now, the ids, the versions."""
    files = []
    for name in ("config.json", "model.safetensors"):
        st = (Path(folder) / name).stat()
        files.append([name, st.st_size, st.st_mtime_ns, st.st_ino])
    what = {"folder": os.path.abspath(folder), "files": files, "shape": list(shape),
            "ids": hashlib.sha256(ids_bytes).hexdigest(),
            "versions": [metadata.version(p) for p in ("transformers", "torch")]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def _write_capture(path: Path, cap: Capture) -> None:
    """Written whole or not at all (a temporary file renamed into place)."""
    arrays = {"input_ids": cap.input_ids, "logits": cap.logits}
    arrays.update({f"in:{k}": v for k, v in cap.inputs.items()})
    arrays.update({f"out:{k}": v for k, v in cap.outputs.items()})
    arrays.update({f"hidden:{i}": v for i, v in enumerate(cap.hidden_states)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".capture-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_capture(path: Path) -> Capture:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cap = Capture(input_ids=arrays.pop("input_ids"), logits=arrays.pop("logits"))
    hidden = {}
    for key, value in arrays.items():
        kind, name = key.split(":", 1)
        {"in": cap.inputs, "out": cap.outputs, "hidden": hidden}[kind][name] = value
    cap.hidden_states = [hidden[str(i)] for i in range(len(hidden))]
    return cap


def hf_generate_greedy(folder: str | Path, input_ids: np.ndarray, max_new_tokens: int) -> np.ndarray:
    """Hugging Face ``generate(do_sample=False)``: the greedy continuation, ids [batch, seq + new]."""
    import torch

    model = hf_model(str(folder))
    with torch.no_grad():
        out = model.generate(torch.from_numpy(np.ascontiguousarray(input_ids)), do_sample=False,
                             max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                             pad_token_id=model.config.eos_token_id,
                             attention_mask=torch.ones(input_ids.shape, dtype=torch.long))
    return out.numpy()


def config_defaults(fields: list[str], store: Path | None = None) -> dict:
    """``transformers.GPT2Config()``'s values of ``fields``; ``store``: keep and reuse them on
    disk there, keyed by the fields and transformers' version (a file that cannot be read, or
    lacks a field, is computed again and replaced)."""
    if store is not None:
        key = json.dumps({"fields": fields, "transformers": metadata.version("transformers")}, sort_keys=True)
        path = Path(store) / f"gpt2config-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        values = load_json(path)
        if set(values) == set(fields):
            return values
    import transformers

    hf = transformers.GPT2Config()
    values = {f: getattr(hf, f) for f in fields}
    if store is not None:
        save_json(path, values)
    return values
