"""The fast run path: the finished model compiled once, prefill, then KV-cache decode.

Used by ``python -m gpt2course gpt2`` (gpt2course/run/command.py) and by
``bench/bench_generate.py``. The model is step 13's cached GPT-2
(``solutions.solution_13``), compiled into two MAX graphs with the same weights
(MAX shares them), both taking the new token ids and each layer's cached keys
and values, with symbolic batch and cache lengths:

* the prefill graph (``LastTokenGPT2``): any number of new tokens, e.g. the
  whole prompt with an empty cache. Only the last position's logits leave it: a
  512-token prompt would otherwise compute and copy 512 x 50,257 logits that
  nobody reads.
* the decode graph (``_decode_model_class``): exactly one new token per row.
  Its Linear layers and its attention are fused multiply-and-sums instead of
  matmuls (MAX's CPU matmul treats a matrix-vector product as a general matrix
  product), and attention needs no mask: the new token is the newest.

The cache never leaves the device: each call returns the grown cache as driver
buffers and the next call takes them back as they are; only one row of logits
per step comes back to NumPy, where the next token is chosen. None of this is
in the learner's step: it is about speed, not about the idea.

``--model steps`` runs the learner's own MaxGPT2LMHeadModel (steps/step_11.py)
instead, without a cache (step 11 has none), choosing tokens with the
learner's step-12 ``sample_next_token``; ``gate_learner_steps`` refuses it,
naming the first failing step, unless steps 10-12 pass their checks.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2course.check import execute, learner
from gpt2course.course import DEFAULT_DEVICE, DEFAULT_TARGET, step_file
from gpt2course.device import device_name, max_device
from gpt2course.errors import CheckFailure
from gpt2course.hf import weights as weights_mod
from gpt2course.run.decode import _decode_model_class, _last_token_model_class
from gpt2course.run.gate import gate_learner_steps


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _compile(module, input_types, state_max: dict, dev, what: str, quiet: bool):
    from max.experimental.tensor import Tensor

    if module.device != dev:
        # Moving a lazily built module realizes its random initial weights first (tens of
        # seconds at 124M); skip it when the module is already where it runs.
        module.to(dev)
    wts = {k: Tensor.from_dlpack(np.ascontiguousarray(v)).to(dev) for k, v in state_max.items()}
    t0 = time.perf_counter()
    _say(f"compiling {what} with MAX (the first time takes a few minutes on a laptop CPU; "
         "after that it is cached and takes seconds) ...", quiet)
    compiled = module.compile(*input_types, weights=wts)
    _say(f"compiled in {time.perf_counter() - t0:.1f}s", quiet)
    return compiled


def cache_types(config, dev) -> list:
    """One [batch, n_head, past, head_dim] float32 type per layer; batch and past are symbolic."""
    from max.dtype import DType
    from max.graph import TensorType

    head_dim = config.n_embd // config.n_head
    return [TensorType(DType.float32, ["batch", config.n_head, "past", head_dim], device=dev)
            for _ in range(config.n_layer)]


def empty_cache_tensors(config, batch: int, dev) -> list:
    """One empty [batch, n_head, 0, head_dim] tensor per layer, on the device."""
    from max.experimental.tensor import Tensor

    empty = np.zeros((batch, config.n_head, 0, config.n_embd // config.n_head), dtype=np.float32)
    return [Tensor.from_dlpack(empty.copy()).to(dev) for _ in range(config.n_layer)]


def compile_cached(module, config, state_max: dict, dev, what: str, quiet: bool = False,
                   seq: int | str = "seq"):
    """Compiles a cached GPT-2 (forward(ids, past_keys, past_values)) for any batch and cache
    length, and any number of new tokens (or exactly ``seq`` of them)."""
    from max.dtype import DType
    from max.graph import TensorType

    ids_type = TensorType(DType.int64, ["batch", seq], device=dev)
    return _compile(module, [ids_type, cache_types(config, dev), cache_types(config, dev)],
                    state_max, dev, what, quiet)


def _ids_tensor(ids: np.ndarray, dev):
    from max.experimental.tensor import Tensor

    return Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(dev)


def cached_logits_fn(compiled, config, dev):
    """The compiled cached model as step 13's ``CachedLogitsFn``: (ids, cache | None) -> (logits, cache).

    Logits come back to NumPy; the cache stays on the device as MAX tensors.
    """
    def model(ids: np.ndarray, cache):
        ids = np.asarray(ids, dtype=np.int64)
        if cache is None:
            empty = empty_cache_tensors(config, ids.shape[0], dev)
            cache = (empty, list(empty))
        logits, keys, values = compiled(_ids_tensor(ids, dev), list(cache[0]), list(cache[1]))
        return execute.to_host(logits, "logits"), (list(keys), list(values))
    return model


@dataclass
class Cache:
    """Each layer's keys and values on the device, [batch, n_head, length, head_dim]."""

    keys: list
    values: list
    length: int


class CachedEngine:
    """The reference GPT-2 with a KV cache, compiled once: ``prefill`` then ``decode``."""

    cached = True

    def __init__(self, folder: str | Path, *, device: str = DEFAULT_DEVICE, quiet: bool = False) -> None:
        from max.experimental import functional as F
        from max.experimental.tensor import default_device

        self.folder = Path(folder)
        # the lean loader: one tensor in flight at a time, Conv1D weights transposed as read
        config, state_max = weights_mod.load_max_state(self.folder)
        self.config = weights_mod.course_config(config)
        self.dev = max_device(device)
        self.device_name = device_name(self.dev)
        with F.lazy(), default_device(self.dev):
            prefill_module = _last_token_model_class()(self.config)
            decode_module = _decode_model_class()(self.config)
        # The decode graph first: loading a graph costs a transient on top of what is kept,
        # and the process peaks during the second load; in this order that peak is lower
        # (traced at 124M, graphs cached: 1,001 MiB, against 1,025 the other way round;
        # bench/README.md).
        self.decode_graph = compile_cached(decode_module, self.config, state_max, self.dev,
                                           "GPT-2 with a KV cache (decode)", quiet, seq=1)
        self.prefill_graph = compile_cached(prefill_module, self.config, state_max, self.dev,
                                            "GPT-2 with a KV cache (prefill)", quiet)

    def _run(self, graph, ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        # execute_raw skips the per-argument checks of a call (25 inputs at 12 layers): the
        # cache is what the previous call returned, so it is right by construction.
        n = len(cache.keys)
        outs = graph.execute_raw(_ids_tensor(ids, self.dev).buffers[0], *cache.keys, *cache.values)
        return execute.to_host(outs[0], "logits"), Cache(list(outs[1:1 + n]), list(outs[1 + n:]),
                                               cache.length + ids.shape[1])

    def empty_cache(self, batch: int) -> Cache:
        empty = [t.buffers[0] for t in empty_cache_tensors(self.config, batch, self.dev)]
        return Cache(empty, list(empty), 0)

    def prefill(self, ids: np.ndarray) -> tuple[np.ndarray, Cache]:
        """The whole prompt [batch, seq] -> (last position's logits [batch, vocab], cache)."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._run(self.prefill_graph, ids, self.empty_cache(ids.shape[0]))

    def decode(self, token_ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        """The newest token of each row [batch, 1] and the cache -> (its logits, grown cache)."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        if token_ids.shape[1] != 1:  # the decode graph is built for one token
            return self._run(self.prefill_graph, token_ids, cache)
        return self._run(self.decode_graph, token_ids, cache)


class UncachedEngine:
    """The learner's MaxGPT2LMHeadModel (steps/step_11.py): the whole sequence every step."""

    cached = False

    def __init__(self, folder: str | Path, model_cls, *, device: str = DEFAULT_DEVICE,
                 quiet: bool = False, what: str = "your MaxGPT2LMHeadModel (steps/step_11.py)") -> None:
        from max.dtype import DType
        from max.graph import TensorType

        self.folder = Path(folder)
        config, state_max = weights_mod.load_max_state(self.folder)
        self.config = weights_mod.course_config(config)
        self.dev = max_device(device)
        self.device_name = device_name(self.dev)
        from max.experimental.tensor import default_device

        with default_device(self.dev):
            module = execute.build(lambda: model_cls(self.config), what)
        execute.check_module_parameters(module, state_max, what)
        ids_type = TensorType(DType.int64, ["batch", "seq"], device=self.dev)
        self.compiled = _compile(module, [ids_type], state_max, self.dev, what, quiet)

    def _logits(self, ids: np.ndarray) -> np.ndarray:
        from max.experimental.tensor import Tensor

        out = self.compiled(Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(self.dev))
        return execute.to_host(out, "logits")[:, -1, :]

    def prefill(self, ids: np.ndarray):
        return self._logits(ids), np.asarray(ids, dtype=np.int64)

    def decode(self, token_ids: np.ndarray, seen: np.ndarray):
        seen = np.concatenate([seen, np.asarray(token_ids, dtype=np.int64)], axis=1)
        return self._logits(seen), seen


def load_engine(model: str, folder: str | Path, *, device: str = DEFAULT_DEVICE,
                quiet: bool = False, target: str = DEFAULT_TARGET):
    """(engine, sample_fn, description) for ``--model solutions|steps`` on ``device``."""
    if model == "solutions":
        return CachedEngine(folder, device=device, quiet=quiet), None, \
            "reference (solutions/, KV cache)"
    if model != "steps":
        raise CheckFailure(f"unknown --model {model!r}", "use --model solutions or --model steps")
    gate_learner_steps(target, device=device, quiet=quiet)
    path11, path12 = step_file(11, target), step_file(12, target)
    cls = learner.export(learner.load(11, target), 11, "MaxGPT2LMHeadModel", path11)
    sample_fn = learner.export(learner.load(12, target), 12, "sample_next_token", path12)
    with learner.learner_errors(11, path11, "building and compiling MaxGPT2LMHeadModel"):
        engine = UncachedEngine(folder, cls, device=device, quiet=quiet)
    return engine, sample_fn, "yours (steps/, no cache)"
