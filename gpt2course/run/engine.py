"""The fast run path: the finished model compiled once, prefill, then KV-cache decode.

Used by ``python -m gpt2course gpt2`` (gpt2course/run/command.py), ``make bench``
(bench/bench_generate.py) and ``make eval``. The model is step 13's cached GPT-2
(``solutions.solution_13``), compiled into two MAX graphs with the same weights (MAX
shares them), with symbolic batch and cache sizes (gpt2course/run/graphs.py):

* the prefill graph: any number of new tokens, e.g. the whole prompt. Only the last
  position's logits leave it: a 512-token prompt would otherwise compute and copy
  512 x 50,257 logits that nobody reads.
* the decode graph: exactly one new token per row. Its Linear layers and its attention
  are fused multiply-and-sums instead of matmuls (MAX's CPU matmul treats a
  matrix-vector product as a general matrix product), and attention needs no mask.

The KV cache is allocated once per generation, for the prompt and every new token, one
buffer per layer for keys and one for values; both graphs write the new tokens' keys and
values into it in place and read back only the filled part, so no step copies the cache.
It never leaves the device; only one row of logits per step comes back to NumPy, where
the next token is chosen. ``dtype`` stores the Linear weights in fewer bytes (bf16,
int8: gpt2course/run/precision.py), which is what decode's speed is bound by. None of
this is in the learner's step: it is about speed, not about the idea.

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
from gpt2course.run.gate import gate_learner_steps


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _compile(module, input_types, state_max: dict, dev, what: str, quiet: bool):
    from gpt2course.run.precision import as_tensor

    if module.device != dev:
        # Moving a lazily built module realizes its random initial weights first (tens of
        # seconds at 124M); skip it when the module is already where it runs.
        module.to(dev)
    wts = {k: as_tensor(v).to(dev) for k, v in state_max.items()}
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
    """Each layer's keys and values on the device, [batch, n_head, capacity, head_dim]; the
    first ``length`` positions are filled. The graphs write into these buffers in place."""

    keys: list
    values: list
    length: int
    capacity: int


def _host_position(value: int):
    from max.driver import Buffer

    return Buffer.from_numpy(np.array([value], dtype=np.int64))


class CachedEngine:
    """The reference GPT-2 with an in-place KV cache, compiled once: ``prefill`` then ``decode``.

    ``dtype`` is how the Linear layers' weights are stored: fp32, bf16 or int8
    (gpt2course/run/precision.py); the arithmetic is float32 throughout.
    """

    cached = True

    def __init__(self, folder: str | Path, *, device: str = DEFAULT_DEVICE, quiet: bool = False,
                 dtype: str = "fp32") -> None:
        from max.experimental import functional as F
        from max.experimental.tensor import default_device

        from gpt2course.run import graphs, precision

        self.folder = Path(folder)
        self.dtype = precision.check_dtype(dtype)
        # the lean loader: one tensor in flight at a time, Conv1D weights transposed as read
        config, state_max = weights_mod.load_max_state(self.folder)
        self.config = weights_mod.course_config(config)
        self.weight_bytes = precision.weight_bytes(state_max, dtype)
        stored = precision.stored_weights(state_max, dtype)  # in place: float32 freed as it goes
        self.dev = max_device(device)
        self.device_name = device_name(self.dev)
        with F.lazy(), default_device(self.dev):
            prefill_module = graphs.build(self.config, decode=False, dtype=dtype)
            decode_module = graphs.build(self.config, decode=True, dtype=dtype)
        what = "GPT-2 with a KV cache" + ("" if dtype == "fp32" else f", {dtype} weights")
        # The decode graph first: loading a graph costs a transient on top of what is kept,
        # and the process peaks during the second load; in this order that peak is lower
        # (traced at 124M, graphs cached: 1,001 MiB, against 1,025 the other way round;
        # bench/README.md).
        self.decode_graph = self._compile(decode_module, stored, 1, f"{what} (decode)", quiet)
        self.prefill_graph = self._compile(prefill_module, stored, "seq", f"{what} (prefill)", quiet)
        del stored

    def _compile(self, module, stored: dict, seq, what: str, quiet: bool):
        from max.driver import CPU
        from max.dtype import DType
        from max.graph import BufferType, TensorType

        c = self.config
        head_dim = c.n_embd // c.n_head
        cache = [BufferType(DType.float32, ["batch", c.n_head, "capacity", head_dim], device=self.dev)
                 for _ in range(c.n_layer)]
        position = TensorType(DType.int64, [1], device=CPU())
        try:
            return _compile(module, [TensorType(DType.int64, ["batch", seq], device=self.dev),
                                     position, position, cache, list(cache)],
                            stored, self.dev, what, quiet)
        except Exception as exc:
            if self.dtype == "fp32":
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise CheckFailure(f"MAX cannot run {self.dtype} weights on this device ({self.device_name}): "
                               f"{first}", "run with --dtype fp32") from exc

    def new_cache(self, batch: int, capacity: int) -> Cache:
        from max.driver import Buffer
        from max.dtype import DType

        c = self.config
        shape = [batch, c.n_head, capacity, c.n_embd // c.n_head]
        return Cache([Buffer.zeros(shape, DType.float32, self.dev) for _ in range(c.n_layer)],
                     [Buffer.zeros(shape, DType.float32, self.dev) for _ in range(c.n_layer)],
                     0, capacity)

    def _grown(self, cache: Cache, needed: int) -> Cache:
        """A cache with room for ``needed`` positions, holding ``cache``'s (rare: generate()
        allocates what it will use; a caller that did not say gets twice what it asked for)."""
        from max.driver import CPU, Buffer

        capacity = max(needed, min(2 * cache.capacity, self.config.n_positions))
        grown = self.new_cache(cache.keys[0].shape[0], capacity)
        for old, new in zip(cache.keys + cache.values, grown.keys + grown.values):
            host = new.to(CPU()).to_numpy()
            host[:, :, :cache.length] = old.to(CPU()).to_numpy()[:, :, :cache.length]
            new.inplace_copy_from(Buffer.from_numpy(host).to(self.dev))
        grown.length = cache.length
        return grown

    def _run(self, graph, ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        end = cache.length + ids.shape[1]
        if end > cache.capacity:
            cache = self._grown(cache, end)
        # execute_raw skips the per-argument checks of a call (27 inputs at 12 layers): the
        # cache buffers are this engine's own, so they are right by construction.
        outs = graph.execute_raw(_ids_tensor(ids, self.dev).buffers[0], _host_position(cache.length),
                                 _host_position(end), *cache.keys, *cache.values)
        cache.length = end
        return execute.to_host(outs[0], "logits"), cache

    def prefill(self, ids: np.ndarray, capacity: int | None = None) -> tuple[np.ndarray, Cache]:
        """The whole prompt [batch, seq] -> (last position's logits [batch, vocab], cache).

        ``capacity``: the positions the cache will hold (prompt + new tokens); by default
        twice the prompt, grown when a decode needs more."""
        ids = np.asarray(ids, dtype=np.int64)
        capacity = max(ids.shape[1], capacity or 2 * ids.shape[1])
        return self._run(self.prefill_graph, ids, self.new_cache(ids.shape[0], capacity))

    def decode(self, token_ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        """The newest token of each row [batch, 1] and the cache -> (its logits, the cache, one
        position longer; written in place)."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        if token_ids.shape[1] != 1:  # the decode graph is built for one token
            return self._run(self.prefill_graph, token_ids, cache)
        return self._run(self.decode_graph, token_ids, cache)


class UncachedEngine:
    """The learner's MaxGPT2LMHeadModel (steps/step_11.py): the whole sequence every step."""

    cached = False

    def __init__(self, folder: str | Path, model_cls, *, device: str = DEFAULT_DEVICE,
                 quiet: bool = False, what: str = "your MaxGPT2LMHeadModel (steps/step_11.py)",
                 dtype: str = "fp32") -> None:
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
        if dtype != "fp32":  # the Linear weights in fewer bytes (make eval --dtype: their quality)
            from max.experimental import functional as F

            from gpt2course.run import graphs, precision

            with F.lazy(), default_device(self.dev):
                graphs.store_linear_weights(module, precision.check_dtype(dtype))
            state_max = precision.stored_weights(state_max, dtype)
        ids_type = TensorType(DType.int64, ["batch", "seq"], device=self.dev)
        self.compiled = _compile(module, [ids_type], state_max, self.dev, what, quiet)

    def _logits(self, ids: np.ndarray) -> np.ndarray:
        from max.experimental.tensor import Tensor

        out = self.compiled(Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(self.dev))
        return execute.to_host(out, "logits")[:, -1, :]

    def prefill(self, ids: np.ndarray, capacity: int | None = None):
        return self._logits(ids), np.asarray(ids, dtype=np.int64)

    def decode(self, token_ids: np.ndarray, seen: np.ndarray):
        seen = np.concatenate([seen, np.asarray(token_ids, dtype=np.int64)], axis=1)
        return self._logits(seen), seen


def load_engine(model: str, folder: str | Path, *, device: str = DEFAULT_DEVICE,
                quiet: bool = False, target: str = DEFAULT_TARGET, dtype: str = "fp32"):
    """(engine, sample_fn, description) for ``--model solutions|steps`` on ``device``."""
    if model == "solutions":
        return CachedEngine(folder, device=device, quiet=quiet, dtype=dtype), None, \
            "reference (solutions/, KV cache" + ("" if dtype == "fp32" else f", {dtype} weights") + ")"
    if model != "steps":
        raise CheckFailure(f"unknown --model {model!r}", "use --model solutions or --model steps")
    if dtype != "fp32":
        raise CheckFailure(f"--dtype {dtype} runs the reference model only",
                           "use --model solutions with --dtype, or --dtype fp32 with --model steps")
    gate_learner_steps(target, device=device, quiet=quiet)
    path11, path12 = step_file(11, target), step_file(12, target)
    cls = learner.export(learner.load(11, target), 11, "MaxGPT2LMHeadModel", path11)
    sample_fn = learner.export(learner.load(12, target), 12, "sample_next_token", path12)
    with learner.learner_errors(11, path11, "building and compiling MaxGPT2LMHeadModel"):
        engine = UncachedEngine(folder, cls, device=device, quiet=quiet)
    return engine, sample_fn, "yours (steps/, no cache)"
