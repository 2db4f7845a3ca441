"""The fast run path: the finished model compiled once, prefill, then KV-cache decode.

Used by ``python -m gpt2course gpt2`` (gpt2course/run.py) and by
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

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2course import ROOT, checkpoints, maxrun, weights as weights_mod
from gpt2course.compare import CheckFailure

EOS_TOKEN_ID = 50256


# --------------------------------------------------------------------------- models

def _last_token_model_class():
    from solutions.solution_13 import MaxGPT2LMHeadModelWithCache

    class LastTokenGPT2(MaxGPT2LMHeadModelWithCache):
        """Step 13's model, returning only the last position's logits [batch, vocab]."""

        def forward(self, input_ids, past_keys, past_values):
            hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
            return self.lm_head(hidden_states[:, -1, :]), keys, values

    return LastTokenGPT2


def _decode_model_class():
    """Step 13's model for one new token per row: Linear layers and attention as fused
    multiply-and-sums (RowLinear, RowAttention).

    With one row of input, ``x @ W.T`` is a matrix-vector product that only has to stream
    W once. MAX 26.7's CPU matmul handles it as a general matrix product (about 2x slower
    than the bandwidth allows, measured here: 11.6 ms vs 6.5 ms for the 50,257 x 768 LM
    head); ``sum(W * x, axis=-1)`` compiles to one fused kernel that reads W once. For a
    prompt of many tokens the matmul is the right kernel, so the prefill keeps it.
    """
    from max.experimental import functional as F
    from max.experimental.nn import Linear

    from solutions.solution_13 import GPT2AttentionWithCache

    class RowLinear(Linear):
        def forward(self, x):
            y = F.sum(F.unsqueeze(x, -2) * self.weight, axis=-1)  # [..., out, 1]
            return F.squeeze(y, -1) + self.bias

    class RowAttention(GPT2AttentionWithCache):
        """Attention of one new token: it is the newest, so it sees every key and needs no
        mask; scores and the weighted sum are fused multiply-and-sums over the cache instead
        of matmuls against a transposed copy of it (which grew with the cache)."""

        def forward(self, hidden_states, past_key, past_value):
            batch = hidden_states.shape[0]
            heads = [batch, self.n_head, 1, self.head_dim]  # one token: no transpose needed
            query, key, value = (t.reshape(heads) for t in F.split(
                self.c_attn(hidden_states), [self.n_embd] * 3, axis=-1))       # [b, h, 1, d]
            key = F.concat([past_key, key], axis=2)                                # [b, h, T, d]
            value = F.concat([past_value, value], axis=2)
            total = key.shape[2]
            scores = F.sum(query * key, axis=-1) * (1.0 / float(np.sqrt(self.head_dim)))  # [b, h, T, 1]
            weights = F.softmax(scores.reshape([batch, self.n_head, 1, total]), axis=-1)
            weights = weights.reshape([batch, self.n_head, total, 1])
            attended = F.sum(weights * value, axis=-2)                             # [b, h, 1, d]
            return self.c_proj(attended.reshape([batch, 1, self.n_embd])), key, value

    base = _last_token_model_class()

    class DecodeGPT2(base):
        """LastTokenGPT2 with RowLinear and RowAttention layers (built by ``make``)."""

        def forward(self, input_ids, past_keys, past_values):
            hidden_states, keys, values = self.transformer(input_ids, past_keys, past_values)
            logits = self.lm_head(hidden_states)  # [batch, 1, vocab]: seq is 1, nothing to slice
            return logits.reshape([hidden_states.shape[0], logits.shape[-1]]), keys, values

    def make(config):
        model = DecodeGPT2(config)
        for _, module in model.descendants:
            if type(module) is Linear:
                module.__class__ = RowLinear
            elif type(module) is GPT2AttentionWithCache:
                module.__class__ = RowAttention
        return model

    return make


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _device_name(dev) -> str:
    from max.driver import CPU

    if isinstance(dev, CPU):
        return f"cpu ({os.cpu_count()} cores)"
    try:
        return f"gpu ({dev.label}:{dev.id})"
    except Exception:
        return "gpu"


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
        return maxrun.to_host(logits, "logits"), (list(keys), list(values))
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

    def __init__(self, folder: str | Path, *, device: str | None = None, quiet: bool = False) -> None:
        from max.experimental import functional as F
        from max.experimental.tensor import default_device

        from gpt2course.checks import course_config

        self.folder = Path(folder)
        # the lean loader: one tensor in flight at a time, Conv1D weights transposed as read
        config, state_max = weights_mod.load_max_state(self.folder)
        self.config = course_config(config)
        self.dev = maxrun.device(device)
        self.device_name = _device_name(self.dev)
        with F.lazy(), default_device(self.dev):
            prefill_module = _last_token_model_class()(self.config)
            decode_module = _decode_model_class()(self.config)
        self.prefill_graph = compile_cached(prefill_module, self.config, state_max, self.dev,
                                            "GPT-2 with a KV cache (prefill)", quiet)
        self.decode_graph = compile_cached(decode_module, self.config, state_max, self.dev,
                                           "GPT-2 with a KV cache (decode)", quiet, seq=1)

    def _run(self, graph, ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
        # execute_raw skips the per-argument checks of a call (25 inputs at 12 layers): the
        # cache is what the previous call returned, so it is right by construction.
        n = len(cache.keys)
        outs = graph.execute_raw(_ids_tensor(ids, self.dev).buffers[0], *cache.keys, *cache.values)
        return maxrun.to_host(outs[0], "logits"), Cache(list(outs[1:1 + n]), list(outs[1 + n:]),
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

    def __init__(self, folder: str | Path, model_cls, *, device: str | None = None,
                 quiet: bool = False, what: str = "your MaxGPT2LMHeadModel (steps/step_11.py)") -> None:
        from max.dtype import DType
        from max.graph import TensorType

        from gpt2course.checks import course_config

        self.folder = Path(folder)
        config, state_max = weights_mod.load_max_state(self.folder)
        self.config = course_config(config)
        self.dev = maxrun.device(device)
        self.device_name = _device_name(self.dev)
        from max.experimental.tensor import default_device

        with default_device(self.dev):
            module = maxrun.build(lambda: model_cls(self.config), what)
        maxrun.check_parameters(module, state_max, what)
        ids_type = TensorType(DType.int64, ["batch", "seq"], device=self.dev)
        self.compiled = _compile(module, [ids_type], state_max, self.dev, what, quiet)

    def _logits(self, ids: np.ndarray) -> np.ndarray:
        from max.experimental.tensor import Tensor

        out = self.compiled(Tensor.from_dlpack(np.ascontiguousarray(ids, dtype=np.int64)).to(self.dev))
        return maxrun.to_host(out, "logits")[:, -1, :]

    def prefill(self, ids: np.ndarray):
        return self._logits(ids), np.asarray(ids, dtype=np.int64)

    def decode(self, token_ids: np.ndarray, seen: np.ndarray):
        seen = np.concatenate([seen, np.asarray(token_ids, dtype=np.int64)], axis=1)
        return self._logits(seen), seen


# --------------------------------------------------------------------------- generation

@dataclass
class Stats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    stopped: str = ""
    weights: str = ""
    device: str = ""
    model: str = ""
    notices: list[str] = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        # the first new token comes from the prefill; decode makes the others
        steps = max(self.new_tokens - 1, 0)
        return steps / self.decode_s if steps and self.decode_s > 0 else float("nan")

    def line(self) -> str:
        tps = self.decode_tokens_per_s
        return (f"[prompt {self.prompt_tokens} tokens | {self.new_tokens} new tokens "
                f"({self.stopped}) | prefill {self.prefill_s * 1000:.0f} ms | decode "
                f"{'-' if tps != tps else f'{tps:.1f}'} tokens/s | model: {self.model} | "
                f"weights: {self.weights} | device: {self.device}]")


def fit_context(prompt_ids: Sequence[int], max_new_tokens: int, n_positions: int
                ) -> tuple[list[int], int, list[str]]:
    """Makes prompt + new tokens fit in the context; says what it changed, never raises.

    A prompt that fits is kept whole and the new-token budget shrinks to fit. A
    prompt that does not fit keeps its last tokens, leaving room for the new
    ones (at most half the context).
    """
    ids = list(prompt_ids)
    notices = []
    if max_new_tokens < 0:
        raise ValueError("--max-new-tokens must be >= 0")
    if len(ids) >= n_positions:
        budget = min(max_new_tokens, n_positions // 2)
        keep = n_positions - max(budget, 1)
        notices.append(f"the prompt has {len(ids)} tokens but the model's context holds "
                       f"{n_positions}: keeping its last {keep} tokens")
        ids = ids[-keep:]
        max_new_tokens = min(max_new_tokens, n_positions - len(ids))
    elif len(ids) + max_new_tokens > n_positions:
        room = n_positions - len(ids)
        notices.append(f"{len(ids)} prompt tokens + {max_new_tokens} new would exceed the "
                       f"context of {n_positions}: generating at most {room} new tokens")
        max_new_tokens = room
    return ids, max_new_tokens, notices


def generate(engine, prompt_ids: Sequence[int], max_new_tokens: int, *,
             greedy: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None,
             eos_token_id: int | None = EOS_TOKEN_ID,
             sample_fn: Callable | None = None,
             on_token: Callable[[int], None] | None = None) -> tuple[list[int], Stats]:
    """Prefill once, then one token per decode step; calls ``on_token`` as each token is chosen.

    Returns (the new token ids, figures). Stops at ``eos_token_id`` (which is
    returned, not printed by run.py) or after ``max_new_tokens``.
    """
    if sample_fn is None:
        from solutions.solution_12 import sample_next_token as sample_fn
    if not prompt_ids:
        prompt_ids = [EOS_TOKEN_ID]  # GPT-2 starts unconditioned text after <|endoftext|>
    prompt_ids, max_new_tokens, notices = fit_context(prompt_ids, max_new_tokens,
                                                      engine.config.n_positions)
    stats = Stats(prompt_tokens=len(prompt_ids), notices=notices, device=engine.device_name)
    rng = np.random.default_rng(seed)
    sampling = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
    new: list[int] = []
    if max_new_tokens == 0:
        stats.stopped = "no room"
        return new, stats
    t0 = time.perf_counter()
    logits, cache = engine.prefill(np.asarray([prompt_ids], dtype=np.int64))
    token = int(sample_fn(logits, **sampling)[0])
    stats.prefill_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    while True:
        new.append(token)
        if on_token is not None:
            on_token(token)
        if eos_token_id is not None and token == eos_token_id:
            stats.stopped = "end of text"
            break
        if len(new) >= max_new_tokens:
            stats.stopped = "token budget"
            break
        logits, cache = engine.decode(np.asarray([[token]], dtype=np.int64), cache)
        token = int(sample_fn(logits, **sampling)[0])
    stats.decode_s = time.perf_counter() - t1
    stats.new_tokens = len(new)
    return new, stats


# --------------------------------------------------------------------------- the learner's model

GATE_STEPS = (10, 11, 12)


def _todo_left(step: int, path: Path) -> int | None:
    import re

    m = re.search(rf'NotImplementedError\("step {step:02d}, TODO (\d+)"\)', path.read_text())
    return int(m.group(1)) if m else None


def _gate_key(step: int, path: Path) -> str:
    h = hashlib.sha256()
    for p in (path, ROOT / "tests" / f"test_step_{step:02d}.py"):
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()[:16]


def gate_learner_steps(target: str = "steps", *, run_checks: bool = True, quiet: bool = False,
                       steps: Sequence[int] = GATE_STEPS) -> None:
    """Raises CheckFailure naming the first of steps 10-12 that is not done or does not pass.

    "Done": the file imports and no TODO still raises NotImplementedError.
    "Passes": its check passes; the result is kept per file content (in the
    course cache), so an unchanged file is not checked again.
    """
    from gpt2course import targets

    for step in steps:
        path = targets.step_file(step, target)
        targets.load(step, target)  # missing file, syntax or import error -> CheckFailure
        todo = _todo_left(step, path)
        if todo is not None:
            raise CheckFailure(
                f"--model steps needs your steps 10-12 to pass; step {step:02d} is not done yet: "
                f"TODO {todo} in {targets.display(path)}",
                f"finish it and run `make s{step:02d}`, or run the reference with --model solutions")
    if not run_checks:
        return
    from gpt2course.cli import run_check

    gate_dir = checkpoints.cache_dir() / "gate"
    gate_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        path = targets.step_file(step, target)
        if not (ROOT / "tests" / f"test_step_{step:02d}.py").exists():
            continue
        record = gate_dir / f"step_{step:02d}-{_gate_key(step, path)}.json"
        if record.exists():
            result = json.loads(record.read_text())
        else:
            _say(f"checking your step {step:02d} ({targets.display(path)}) before running it "
                 "(once per version of the file) ...", quiet)
            with tempfile.TemporaryDirectory() as tmp:
                report = Path(tmp) / "report.json"
                run_check(step, target, report_json=str(report), capture_output=True, text=True)
                try:
                    data = json.loads(report.read_text())["steps"][f"{step:02d}"]
                    first = data.get("first_failure") or {}
                    result = {"status": data["status"], "message": first.get("message", "")}
                except Exception:
                    result = {"status": "failed", "message": "its check did not run"}
            record.write_text(json.dumps(result))
        if result["status"] != "passed":
            message = (result.get("message") or "").strip().splitlines()
            raise CheckFailure(
                f"--model steps needs your steps 10-12 to pass; step {step:02d} does not pass its "
                f"check yet" + (f": {message[0]}" if message else ""),
                f"run `make s{step:02d}` for the details, or run the reference with --model solutions")


def load_engine(model: str, folder: str | Path, *, device: str | None = None,
                quiet: bool = False, target: str = "steps"):
    """(engine, sample_fn, description) for ``--model solutions|steps``."""
    if model == "solutions":
        return CachedEngine(folder, device=device, quiet=quiet), None, \
            "reference (solutions/, KV cache)"
    if model != "steps":
        raise CheckFailure(f"unknown --model {model!r}", "use --model solutions or --model steps")
    from gpt2course import targets

    gate_learner_steps(target, quiet=quiet)
    step11 = targets.load(11, target)
    step12 = targets.load(12, target)
    path11 = targets.step_file(11, target)
    cls = targets.export(step11, 11, "MaxGPT2LMHeadModel", path11)
    sample_fn = targets.export(step12, 12, "sample_next_token", targets.step_file(12, target))
    with targets.learner_errors(11, path11, "building and compiling MaxGPT2LMHeadModel"):
        engine = UncachedEngine(folder, cls, device=device, quiet=quiet)
    return engine, sample_fn, "yours (steps/, no cache)"
