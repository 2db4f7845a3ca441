"""What the per-step checks share: the checkpoint, Hugging Face's captured activations,
and building + running a learner's module with every failure explained.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from gpt2course import checkpoints, maxrun, reference, weights
from gpt2course.compare import CheckFailure

ATOL = 1e-4  # float32 on CPU; differences from operation order stay near 1e-6


@functools.lru_cache(maxsize=2)
def checkpoint(name: str = "small"):
    """(folder, config, Hugging Face state dict) of a seeded checkpoint, built on first use."""
    folder = checkpoints.seeded_checkpoint(name)
    config, state = weights.load_hf_state(folder)
    return folder, config, state


def capture(name: str = "small", batch: int = 2, seq: int = 7) -> reference.Capture:
    folder, config, _ = checkpoint(name)
    return reference.capture(folder, reference.fixed_input_ids(config.vocab_size, batch, seq))


def max_weights(prefix: str, name: str = "small") -> dict[str, np.ndarray]:
    return weights.to_max(checkpoint(name)[2], prefix)


def once(step, key: str, fn: Callable):
    """Runs ``fn`` once per step; a failure is reported by the first check that needs it and
    skips the later ones, so the learner reads one message, not five."""
    cache = step.cache
    if key not in cache:
        try:
            cache[key] = ("ok", fn())
        except CheckFailure as exc:
            cache[key] = ("failed", exc)
            raise
    state, value = cache[key]
    if state == "failed":
        pytest.skip(f"skipped: an earlier check failed ({value.message.splitlines()[0]})")
    return value


def build_module(step, export: str, make: Callable, what: str):
    cls = step.get(export)
    with step.errors(f"creating {export}"):
        return maxrun.build(lambda: make(cls), what)


def parameters_match(step, export: str, make: Callable, wts: dict, what: str, hint: str | None = None):
    """Sub-check: the module builds and its parameters load Hugging Face's weights."""
    def fn():
        module = build_module(step, export, make, what)
        maxrun.check_parameters(module, wts, what, hint)
        return module
    return once(step, "module", fn)


def outputs(step, export: str, make: Callable, wts: dict, inputs: Sequence[np.ndarray], *,
            mode: str, what: str, key: str = "outputs", hint: str | None = None) -> list[np.ndarray]:
    """The module's outputs on ``inputs`` (built fresh so each run starts from clean weights)."""
    parameters_match(step, export, make, wts, what, hint)

    def fn():
        module = build_module(step, export, make, what)
        with step.errors(f"running {export}"):
            return maxrun.run(module, wts, inputs, mode=mode, dev=maxrun.device(), what=what)
    return once(step, key, fn)


def course_config(config):
    """The course's GPT2Config for a checkpoint's shapes (from the step-01 solution)."""
    from solutions.solution_01 import GPT2Config

    return GPT2Config(**{k: getattr(config, k) for k in (
        "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon")})


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def gelu_exact(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def layer_norm_np(x, w, b, eps, *, eps_outside=False, unbiased=False):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True, ddof=1 if unbiased else 0)
    denom = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return (x - mean) / denom * w + b


def attention_np(x, state, prefix, n_head, *, mask=True, scale=True):
    """Causal self-attention in NumPy from HF weights: only for naming a learner's mistake."""
    wa, ba = state[prefix + "c_attn.weight"], state[prefix + "c_attn.bias"]
    wp, bp = state[prefix + "c_proj.weight"], state[prefix + "c_proj.bias"]
    b, s, d = x.shape
    hd = d // n_head
    q, k, v = np.split(x @ wa + ba, 3, axis=-1)
    q, k, v = (t.reshape(b, s, n_head, hd).transpose(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2)
    if scale:
        scores = scores / np.sqrt(hd)
    if mask:
        scores = scores + np.triu(np.full((s, s), -np.inf, dtype=np.float32), 1)
    scores = scores - scores.max(-1, keepdims=True)
    w = np.exp(scores)
    w = w / w.sum(-1, keepdims=True)
    y = (w @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
    return y @ wp + bp
