"""What the per-step checks share: the checkpoint, Hugging Face's captured activations,
and building + running a learner's module with every failure explained.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from gpt2course.check import execute
from gpt2course.device import max_device
from gpt2course.errors import CheckFailure
from gpt2course.hf import checkpoints, reference, weights

ATOL = 1e-4  # float32 on CPU; differences from operation order stay near 1e-6


_pretrained = None  # a checkpoint folder every check uses instead of the seeded ones (--weights)
_secret = None      # (seed, folder): a graded run's own weights and inputs (use_secret_seed)


def use_pretrained(folder) -> None:
    """Checks every step against this checkpoint (``--weights``; the plugin calls it once)."""
    global _pretrained
    _pretrained = folder
    _load.cache_clear()


def use_secret_seed(seed: int, folder) -> None:
    """A graded run: the seeded checkpoints and the input ids are drawn from ``seed``, chosen
    for this run and told to no worker, and built under ``folder`` (the judge's own), so
    outputs precomputed for the public checkpoint do not match."""
    global _secret
    _secret = (int(seed), str(folder))
    _load.cache_clear()


def checkpoint(name: str = "small"):
    """(folder, config, Hugging Face state dict) of a seeded checkpoint, built on first use, or
    of the pretrained checkpoint given with ``--weights`` (for every name: its own shapes)."""
    return _load(str(_pretrained) if _pretrained is not None else None, name, _secret)


@functools.lru_cache(maxsize=2)
def _load(pretrained: str | None, name: str, secret):
    if pretrained:
        folder = pretrained
    elif secret is not None:
        folder = checkpoints.seeded_checkpoint(name, seed=secret[0], root=secret[1])
    else:
        folder = checkpoints.seeded_checkpoint(name)
    config, state = weights.load_hf_state(folder)
    return folder, config, state


def _seed(seed: int):
    """A check's seed as given (learners), or mixed with the run's secret seed (graded)."""
    return seed if _secret is None else [_secret[0], seed]


def input_ids(vocab_size: int, batch: int = 2, seq: int = 7, seed: int = 0):
    """The token ids a check feeds: fixed for learners, drawn from the secret seed when graded."""
    return reference.fixed_input_ids(vocab_size, batch, seq, _seed(seed))


def rng(seed: int):
    """A NumPy Generator for a check's own inputs: fixed for learners, secret when graded."""
    return np.random.default_rng(_seed(seed))


def capture(name: str = "small", batch: int = 2, seq: int = 7) -> reference.Capture:
    """Hugging Face's activations on the check's ids, kept in the course's cache between checks;
    a graded run's (a secret checkpoint, new each run) are computed and kept in memory only."""
    folder, config, _ = checkpoint(name)
    return reference.capture(folder, input_ids(config.vocab_size, batch, seq), _reference_store())


def config_defaults(fields: list[str]) -> dict:
    """transformers.GPT2Config()'s values of ``fields``, kept in the course's cache between checks
    (a graded run computes them: it reads nothing a check on this machine wrote)."""
    return reference.config_defaults(fields, _reference_store())


def _reference_store():
    """Where Hugging Face's numbers are kept between checks: the course's cache, or None in a
    graded run (its checkpoint is secret and new each run, and it reads nothing a check on this
    machine wrote)."""
    return None if _secret is not None else checkpoints.cache_dir() / "references"


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
    """The learner's ``export`` built in the worker by ``make(cls)`` (lazily: no weights are
    materialized until it runs); the judge holds a proxy of it."""
    cls = step.get(export)
    with step.errors(f"creating {export}"), step.remote.building():
        return make(cls)


def parameters_match(step, export: str, make: Callable, wts: dict, what: str, hint: str | None = None,
                     key: str = "module"):
    """Sub-check: the module builds and its parameters load Hugging Face's weights (once per
    ``key``: one per shape a check builds)."""
    def fn():
        module = build_module(step, export, make, what)
        with step.errors(f"reading the parameters of {export}"):
            found = step.remote.parameters(module, doing=f"reading the parameters of {export}")
        execute.check_parameters(found["shapes"], found["kinds"], wts, what, hint)
        return module
    return once(step, key, fn)


def outputs(step, export: str, make: Callable, wts: dict, inputs: Sequence[np.ndarray], *,
            mode: str, what: str, key: str = "outputs", hint: str | None = None) -> list[np.ndarray]:
    """The module's outputs on ``inputs`` (built fresh so each run starts from clean weights)."""
    parameters_match(step, export, make, wts, what, hint)

    def fn():
        module = build_module(step, export, make, what)
        doing = f"running {export}"
        with step.errors(doing):  # an eager run says itself when MAX compiles (execute.eager)
            outs = step.remote.run(module, wts, inputs, mode=mode, what=what, doing=doing)
        return arrays(outs, what)
    return once(step, key, fn)


def arrays(outs, what: str) -> list[np.ndarray]:
    """The worker's outputs as float32 arrays (what arrived is numbers: wire checked it)."""
    if not isinstance(outs, list) or not all(isinstance(o, np.ndarray) for o in outs):
        raise CheckFailure(f"{what}: the outputs are not arrays", "return a MAX Tensor from forward()")
    return [o.astype(np.float32, copy=False) for o in outs]


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


def attention_np(x, state, prefix, n_head, *, mask=True, scale=True, split="transpose", merge="transpose"):
    """Causal self-attention in NumPy from HF weights: only for naming a learner's mistake.

    ``split="reshape"``: heads split by reshaping straight to [b, n_head, s, hd] (no transpose);
    ``merge="reshape"``: heads merged by reshaping [b, n_head, s, hd] straight to [b, s, d]."""
    wa, ba = state[prefix + "c_attn.weight"], state[prefix + "c_attn.bias"]
    wp, bp = state[prefix + "c_proj.weight"], state[prefix + "c_proj.bias"]
    b, s, d = x.shape
    hd = d // n_head
    q, k, v = np.split(x @ wa + ba, 3, axis=-1)
    if split == "reshape":
        q, k, v = (t.reshape(b, n_head, s, hd) for t in (q, k, v))
    else:
        q, k, v = (t.reshape(b, s, n_head, hd).transpose(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2)
    if scale:
        scores = scores / np.sqrt(hd)
    if mask:
        scores = scores + np.triu(np.full((s, s), -np.inf, dtype=np.float32), 1)
    scores = scores - scores.max(-1, keepdims=True)
    w = np.exp(scores)
    w = w / w.sum(-1, keepdims=True)
    y = w @ v
    y = y.reshape(b, s, d) if merge == "reshape" else y.transpose(0, 2, 1, 3).reshape(b, s, d)
    return y @ wp + bp


def model_outputs(step, export: str, make: Callable, name: str, *, body_attr: str | None,
                  key: str) -> dict:
    """Compiles the learner's whole model once (with per-layer taps) on checkpoint ``name``.

    Returns {"output": ..., "layers": [embeddings, block 0, ..., ln_f] or None}.
    """
    folder, config, state = checkpoint(name)
    wts = weights.to_max(state) if body_attr else weights.to_max(state, "transformer.")
    if not body_attr:
        wts = {k: v for k, v in wts.items() if not k.startswith("lm_head.")}
    what = f"{export} ({name} shapes)"
    parameters_match(step, export, make, wts, what)
    ids = input_ids(config.vocab_size)

    def fn():
        module = build_module(step, export, make, what)
        doing = f"running {export}"
        with step.errors(doing):
            outs = arrays(step.remote.diagnose(module, wts, ids, body_attr, what=what, doing=doing), what)
        return {"output": outs[0], "layers": outs[1:] if len(outs) > 1 else None}
    return once(step, key, fn)


def first_divergence(layers, cap: reference.Capture, n_layer: int, atol: float = ATOL) -> str | None:
    """Names the first layer whose activations leave Hugging Face's, or None if all match."""
    if layers is None:
        return None
    expected = [cap.hidden_states[0]] + [cap.outputs[f"transformer.h.{i}"] for i in range(n_layer)] + [
        cap.outputs["transformer.ln_f"]]
    names = ["embeddings (wte + wpe)"] + [f"block h.{i}" for i in range(n_layer)] + ["final LayerNorm ln_f"]
    if len(layers) != len(expected):
        return (f"your model has {len(layers) - 2} blocks; the checkpoint has {n_layer} "
                "(build config.n_layer blocks)")
    for name, got, want in zip(names, layers, expected):
        if got.shape != want.shape:
            return f"{name}: shape {list(got.shape)}, expected {list(want.shape)}"
        err = float(np.abs(got - want).max())
        if err > atol + atol * float(np.abs(want).max()):
            return f"first layer that differs from Hugging Face: {name} (max abs error {err:.3e}); the layers before it match"
    return ("every layer matches Hugging Face when chained as wte + wpe -> blocks -> ln_f, "
            "so the difference is in how forward() combines them (positions from 0? ln_f last?)")


@functools.lru_cache(maxsize=2)
def solution_model(name: str = "small", device: str = "cpu"):
    """The reference MaxGPT2LMHeadModel compiled for any [batch, seq] on ``device``:
    ids (int64) -> logits (float32)."""
    from max.dtype import DType
    from max.experimental.tensor import Tensor
    from max.graph import TensorType

    from solutions.solution_11 import MaxGPT2LMHeadModel

    folder, config, state = checkpoint(name)
    dev = max_device(device)
    model = execute.build(lambda: MaxGPT2LMHeadModel(weights.course_config(config)), "MaxGPT2LMHeadModel")
    model.to(dev)
    execute.say(f"  compiling the reference GPT-2 ({name} shapes) with MAX (cached after the first time) ...")
    compiled = model.compile(TensorType(DType.int64, ["batch", "seq"], device=model.device),
                             weights={k: Tensor.from_dlpack(v).to(dev) for k, v in weights.to_max(state).items()})

    def logits(ids: np.ndarray) -> np.ndarray:
        out = compiled(Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(dev))
        return execute.to_host(out, "logits")
    return logits
