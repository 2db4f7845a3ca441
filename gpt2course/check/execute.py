"""Running a learner's MAX module on fixed inputs: eager for small pieces, compiled graphs otherwise.

This is the worker's half of a check (``gpt2course.check.worker`` calls it; the judge
never does). Inputs and outputs are placed explicitly: inputs go to the device the caller
passes (``gpt2course.device.max_device``), results come back to the host as float32 NumPy
arrays, whatever dtype or device the module used. ``check_parameters`` is the judge's: it
compares the names and shapes the worker reports with the checkpoint's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from gpt2course.check import wire
from gpt2course.errors import CheckFailure


def to_host(x, name: str = "output") -> np.ndarray:
    """A MAX Tensor (or array-like) as a float32 NumPy array on the host."""
    arr = wire.host_array(x)
    if arr is None:
        raise CheckFailure(f"{name}: could not read the result as an array ({type(x).__name__})",
                           "return a MAX Tensor from forward()")
    return np.asarray(arr, dtype=np.float32)


def build(factory: Callable[[], object], what: str):
    """Constructs the learner's module lazily: no weights are materialized until compile."""
    from max.experimental import functional as F

    with F.lazy():
        return factory()


def parameter_shapes(module) -> dict[str, list[int]]:
    out = {}
    for name, tensor in module.parameters:
        try:
            out[name] = [int(d) for d in tensor.shape]
        except Exception:
            out[name] = [str(d) for d in tensor.shape]
    return out


def check_parameters(have: dict, kinds: dict, weights: Mapping[str, np.ndarray], what: str,
                     hint: str | None = None) -> None:
    """The learner's parameter names and shapes (``have``, as the worker reports them, with
    the kind of layer that holds each in ``kinds``) must be Hugging Face's, so its weights load."""
    want = {k: list(v.shape) for k, v in weights.items()}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        lines = [f"{what}: parameter names do not match the Hugging Face checkpoint"]
        if missing:
            lines.append(f"  missing: {', '.join(missing)}")
        if extra:
            lines.append(f"  unexpected: {', '.join(extra)}")
        lines.append(f"  your module has: {', '.join(sorted(have)) or '(no parameters)'}")
        raise CheckFailure("\n".join(lines), hint or "name the attributes exactly as the TODO says "
                           "(they are Hugging Face's names)")
    for name in sorted(want):
        if have[name] != want[name]:
            transposed = len(want[name]) == 2 and have[name] == want[name][::-1]
            raise CheckFailure(
                f"{what}: parameter {name} has shape {have[name]}, the checkpoint's is {want[name]}",
                transposed_hint(kinds.get(name), want[name])
                if transposed else hint or "check the sizes you passed when creating it")


def check_module_parameters(module, weights: Mapping[str, np.ndarray], what: str,
                            hint: str | None = None) -> None:
    """``check_parameters`` on a module in this process (the run path's own model)."""
    check_parameters(parameter_shapes(module), {name: owner_kind(module, name) for name, _ in module.parameters},
                     weights, what, hint)


def owner_kind(module, parameter: str) -> str | None:
    """The class name of the submodule that holds ``parameter`` ("h.0.attn.c_attn.weight" ->
    "Linear"), or None if it cannot be found."""
    obj = module
    for part in parameter.split(".")[:-1]:
        try:
            obj = obj[int(part)] if part.isdigit() and not hasattr(obj, part) else getattr(obj, part)
        except Exception:
            return None
    return type(obj).__name__


def transposed_hint(kind: str | None, want: list) -> str:
    """The hint for a 2-D parameter whose two sizes are swapped, in the terms of its layer."""
    if kind == "Embedding":
        return (f"Embedding(num_embeddings, dim) stores its table as [num_embeddings, dim] "
                f"(one row per token or position): create it as Embedding({want[0]}, dim={want[1]})")
    if kind == "Linear":
        return "Linear(in_dim, out_dim) stores its weight as [out_dim, in_dim]: swap the two sizes"
    return f"the two sizes are swapped: the checkpoint stores it as {want}"


_reporter = None


def set_reporter(fn) -> None:
    """Where progress lines go (the pytest plugin installs a writer that bypasses capture)."""
    global _reporter
    _reporter = fn


def say(msg: str) -> None:
    if _reporter is not None:
        _reporter(msg)
    else:
        print(msg, file=sys.stderr, flush=True)


# An eager run still going after this many seconds may be compiling kernels (see ``eager``).
SLOW_EAGER_S = 3.0


def max_cache_dir() -> Path:
    """Where MAX keeps compiled kernels and graphs: MODULAR_CACHE_DIR, else
    $XDG_CACHE_HOME/modular, else ~/.cache/modular (bench/README.md: found by experiment)."""
    if os.environ.get("MODULAR_CACHE_DIR"):
        return Path(os.environ["MODULAR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modular"


def _cache_files() -> int:
    return sum(len(files) for _, _, files in os.walk(max_cache_dir()))


@contextlib.contextmanager
def eager(what: str):
    """Around an eager run. MAX compiles an op family's kernels, silently, the first time a
    machine runs it (15-60 s each on a laptop CPU; ~0.2 s a call afterwards). If the run is
    still going after SLOW_EAGER_S, say what may be compiling and that it happens once; at
    the end say whether it did (MAX's cache gained files) and how long it took, so a first
    compile does not look like a hang and a busy CPU is not called a compile. (Chosen over
    warming more op families in `warm`: a learner's own ops are not known in advance.)"""
    t0, before = time.time(), _cache_files()
    announced = threading.Event()

    def announce():
        announced.set()
        say(f"  compiling MAX kernels for {what}, if its ops are new here (an op's first run on a "
            "machine compiles it: 15-60 s per op family on a laptop CPU, once; then MAX's cache "
            "keeps it) ...")
    timer = threading.Timer(SLOW_EAGER_S, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if announced.is_set():
            seconds, new = time.time() - t0, _cache_files() - before
            say(f"  compiled in {seconds:.1f}s: {what}'s new ops, once (they now run in well under "
                "a second)" if new > 0 else
                f"  nothing to compile: {what} ran in {seconds:.1f}s (its ops were in MAX's cache; "
                "the CPU is busy)")


def run_compiled(module, weights: Mapping[str, np.ndarray], inputs: Sequence[np.ndarray], *,
                 dev, what: str = "module") -> list[np.ndarray]:
    """Compiles ``module.forward`` for the inputs' exact shapes and runs it once on ``dev``."""
    from max.dtype import DType
    from max.experimental.tensor import Tensor
    from max.graph import TensorType

    module.to(dev)
    types = [TensorType(DType.from_numpy(x.dtype), list(x.shape), device=module.device) for x in inputs]
    t0 = time.time()
    say(f"  compiling {what} with MAX (first time ~1-2 min on a laptop CPU; "
         "unchanged code is cached and takes seconds) ...")
    wts = {k: Tensor.from_dlpack(np.ascontiguousarray(v)).to(dev) for k, v in weights.items()}
    compiled = module.compile(*types, weights=wts)
    say(f"  compiled in {time.time() - t0:.1f}s")
    outs = compiled(*[Tensor.from_dlpack(np.ascontiguousarray(x)).to(dev) for x in inputs])
    if not isinstance(outs, (tuple, list)):
        outs = [outs]
    return [to_host(o, what) for o in outs]


def run_eager(module, weights: Mapping[str, np.ndarray], inputs: Sequence[np.ndarray], *,
              dev, what: str = "module") -> list[np.ndarray]:
    """Loads the weights and calls the module eagerly on ``dev`` (small pieces only: each op runs
    on its own)."""
    from max.experimental.tensor import Tensor

    with eager(what):
        module.load_state_dict({k: Tensor.from_dlpack(np.ascontiguousarray(v)).to(dev)
                                for k, v in weights.items()}, strict=True)
        module.to(dev)
        outs = module(*[Tensor.from_dlpack(np.ascontiguousarray(x)).to(dev) for x in inputs])
        if not isinstance(outs, (tuple, list)):
            outs = [outs]
        return [to_host(o, what) for o in outs]


def run(module, weights, inputs, *, mode: str, dev, what: str = "module") -> list[np.ndarray]:
    runner = run_compiled if mode == "compile" else run_eager
    return runner(module, weights, inputs, dev=dev, what=what)


def diagnostic_module(model, body_attr: str | None):
    """Wraps a learner's model so one compiled graph returns its output *and* each layer's
    activations (embeddings, every block, ln_f), computed with the learner's own submodules."""
    from max.dtype import DType
    from max.experimental.nn import Module
    from max.experimental.tensor import Tensor

    class Diagnose(Module):
        def __init__(self, model):
            self.model = model

        def forward(self, input_ids):
            out = self.model(input_ids)
            body = getattr(self.model, body_attr) if body_attr else self.model
            positions = Tensor.arange(input_ids.shape[-1], dtype=DType.int64, device=input_ids.device)
            hidden = body.wte(input_ids) + body.wpe(positions)
            layers = [out, hidden]
            for block in body.h:
                hidden = block(hidden)
                layers.append(hidden)
            layers.append(body.ln_f(hidden))
            return tuple(layers)

    return Diagnose(model)


def run_diagnosed(module, weights, ids, body_attr, *, dev, what: str) -> list[np.ndarray]:
    """The model's output and each layer's activations ([output, embeddings, blocks..., ln_f]);
    if the taps themselves fail (they use wte/wpe/h/ln_f directly), the output alone."""
    try:
        return run_compiled(diagnostic_module(module, body_attr),
                            {"model." + k: v for k, v in weights.items()}, [ids], dev=dev, what=what)
    except Exception as first:
        try:
            outs = run_compiled(module, weights, [ids], dev=dev, what=what)
        except Exception:
            raise first from None
        if len(outs) != 1:
            raise first from None
        return outs
