"""Reference numbers from Hugging Face's own GPT-2 code, on the same checkpoint.

``capture`` runs ``transformers.GPT2LMHeadModel`` once on fixed token ids and
records the input and output of every submodule (each block, its LayerNorms,
attention and MLP, the embeddings, the final LayerNorm), so each step compares
against what that very module computes inside the real model, masking included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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


def capture(folder: str | Path, input_ids: np.ndarray) -> Capture:
    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    return _capture_cached(str(folder), ids.tobytes(), tuple(ids.shape))


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
