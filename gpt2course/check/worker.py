"""The worker: the only process that imports and runs the code under check.

``python -m gpt2course.check.worker --step N --target T --device D --fds R,W [--confine JSON]``

The judge (the check's pytest process, ``gpt2course.check.remote``) starts it, and asks,
over the pipe pair ``R,W`` (``gpt2course.check.wire``): load the step; give me its export
``name``; build it with these arguments; its parameters' names and shapes; run it on these
weights and inputs, eager or compiled; call this function. The worker answers with arrays,
plain values, handles, or the learner's error as text. It holds no key, is given no
expected value, and writes no verdict: what it answers is compared in the judge.

Graded, it is started with ``--confine``: after importing what it needs (MAX, NumPy, this
package's worker half) and before the step's file, it confines itself
(``gpt2course.grade.sandbox.confine``: what it may read and write, no network, no signals
out of its process tree) and refuses imports of the checking and reference libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import json
import os
import sys

import numpy as np

from gpt2course import course
from gpt2course.check import execute, learner, peer, wire
from gpt2course.errors import CheckFailure

# Never importable by the code under check: the judge's libraries and the reference's.
REFUSED = ("gpt2course", "tests", "pytest", "_pytest", "pluggy", "torch", "transformers",
           "huggingface_hub", "safetensors", "tokenizers")


class Refuser(importlib.abc.MetaPathFinder):
    """Refuses imports of what a worker may not use (``hidden`` adds the graded step's own
    solution and the later ones), and records those the step's own file asks for. (A library
    that tries an optional import, as some do for torch, is refused without a record.)"""

    def __init__(self, hidden: tuple[str, ...], alerts: list, learner_file: str):
        self.names, self.alerts, self.learner_file = REFUSED + hidden, alerts, learner_file

    def _asked_by_learner(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None and ("importlib" in frame.f_code.co_filename
                                     or frame.f_code.co_filename.startswith("<frozen")):
            frame = frame.f_back
        return frame is not None and os.path.realpath(frame.f_code.co_filename) == self.learner_file

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            if self._asked_by_learner():
                self.alerts.append(f"import {fullname} (refused: code under check may not use it)")
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (a check's code may use MAX, NumPy, the standard "
                "library and the earlier steps' solutions only)", name=fullname)
        return None


class Worker:
    def __init__(self, step: int, target: str, device_name: str):
        self.step, self.target, self.device_name = step, target, device_name
        self.path = course.step_file(step, target)
        self.module = None
        self.alerts: list[str] = []
        self.held: list[str] = []   # what confinement holds (gpt2course.grade.sandbox's words)
        self.fence = None
        self._device = None

    @property
    def device(self):
        if self._device is None:
            from gpt2course.device import max_device

            self._device = max_device(self.device_name)
        return self._device

    # -- what the judge may ask -----------------------------------------------------------
    def serve(self, op, message, value):
        doing = str(message.get("doing") or op)
        fn = getattr(self, "op_" + str(op), None)
        if fn is None:
            raise wire.WireError(f"an unknown operation {op!r}")
        with learner.learner_errors(self.step, self.path, doing):
            return fn(value)

    @contextlib.contextmanager
    def around_call(self, message):
        """Around the judge's call of one of the learner's objects: the learner's errors as
        text naming the line, and lazy construction when the judge is building a module."""
        with learner.learner_errors(self.step, self.path, str(message.get("doing") or "calling")):
            if message.get("lazy"):
                from max.experimental import functional as F

                with F.lazy():
                    yield
            else:
                yield

    def take_alerts(self) -> list[str]:
        """What the import refuser and the fence saw since the last reply (the judge records it)."""
        found, self.alerts[:] = list(self.alerts), []
        if self.fence is not None:
            found += [f"read outside its sandbox: {v[5:]}" if v.startswith("read ") else
                      f"write outside its workspace: {v}" for v in self.fence.violations]
            del self.fence.violations[:]
        return found

    def op_confinement(self, _):
        """What confinement holds in this worker, in words (the judge puts it in the report)."""
        return list(self.held)

    def op_load(self, _):
        self.module = learner.load(self.step, self.target)
        return True

    def op_export(self, name):
        if self.module is None:
            raise CheckFailure(f"step {self.step:02d}: the step's file is not loaded")
        return learner.export(self.module, self.step, str(name), self.path)

    def op_describe(self, obj):
        fields = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
        try:
            attrs = sorted(vars(obj)) if not isinstance(obj, type) else []
        except TypeError:
            attrs = []
        return {"dataclass": dataclasses.is_dataclass(obj), "fields": fields,
                "attributes": [str(a) for a in attrs][:1000]}

    def op_parameters(self, module):
        return {"shapes": execute.parameter_shapes(module),
                "kinds": {name: execute.owner_kind(module, name) for name, _ in module.parameters}}

    def op_run(self, value):
        module, weights, inputs, mode, what = value
        return execute.run(module, weights, inputs, mode=mode, dev=self.device, what=what)

    def op_diagnose(self, value):
        module, weights, ids, body_attr, what = value
        return execute.run_diagnosed(module, weights, ids, body_attr, dev=self.device, what=what)

    def op_cached_model(self, value):
        """Step 13: the learner's cached model compiled, as (ids, cache) -> (logits, cache)."""
        from gpt2course.run import engine

        module, config, weights, what = value
        compiled = engine.compile_cached(module, config, weights, self.device, what, quiet=True)
        fn = engine.cached_logits_fn(compiled, config, self.device)

        def model(ids, cache):
            logits, grown = fn(ids, None if cache is None else cache.value)
            return logits, Box(grown)
        return model

    # -- values the judge names -----------------------------------------------------------
    def resolve(self, tag):
        (kind, body), = tag.items()
        if kind == "$device":
            return self.device
        if kind == "$dtype":
            from max.dtype import DType

            try:
                return getattr(DType, str(body))
            except AttributeError:
                raise wire.WireError(f"no MAX dtype {body!r}") from None
        if kind == "$config":
            from solutions.solution_01 import GPT2Config

            return GPT2Config(**body)
        if kind == "$tensor":
            from max.experimental.tensor import Tensor

            return Tensor.from_dlpack(np.ascontiguousarray(body)).to(self.device)
        if kind == "$make":
            return self.make_solution_piece(body)
        raise wire.WireError(f"an unknown tag {kind!r}")


    def make_solution_piece(self, body: dict):
        """An earlier step's solution class, built (lazily, as the learner's module is) in here."""
        module, name = str(body.get("module")), str(body.get("name"))
        number = module.rsplit("_", 1)[-1]
        if not (module.startswith("solutions.solution_") and number.isdigit() and int(number) < self.step):
            raise wire.WireError(f"{module}.{name}: only an earlier step's solution may be built here")
        import importlib

        from max.experimental import functional as F

        cls = getattr(importlib.import_module(module), name)
        with F.lazy():
            return cls(*body.get("args", []), **body.get("kwargs", {}))


class Box:
    """A value that stays in the worker (a model's cache on the device)."""

    def __init__(self, value):
        self.value = value


def error_of(exc: BaseException, message: dict) -> dict:
    """What an exception in the worker tells the judge: the learner's error as text."""
    if isinstance(exc, learner.TodoNotDone):
        return {"type": "todo", "todo": exc.todo, "message": exc.message, "hint": exc.hint}
    if isinstance(exc, CheckFailure):
        return {"type": "check", "message": exc.message, "hint": exc.hint}
    if isinstance(exc, (wire.WireError, peer.RemoteError)):
        return {"type": "wire", "message": str(exc)}
    if isinstance(exc, SystemExit):
        return {"type": "check", "message": f"the code under check called sys.exit({exc.code!r}) while "
                f"{message.get('doing') or message.get('op')}",
                "hint": "a step's code must not end the program: remove the exit"}
    return {"type": "error", "message": f"{type(exc).__name__}: {exc}"}


def _preload() -> None:
    """What the worker's operations use, imported before any confinement (which may forbid
    reading this package's files afterwards)."""
    import max.driver  # noqa: F401
    import max.dtype  # noqa: F401
    import max.experimental.functional  # noqa: F401
    import max.experimental.nn  # noqa: F401
    import max.experimental.tensor  # noqa: F401
    import max.graph  # noqa: F401
    import numpy  # noqa: F401

    import gpt2course.device  # noqa: F401
    import gpt2course.run.engine  # noqa: F401
    import solutions  # noqa: F401  (confined, the workspace's folder cannot be listed to find it)
    import steps  # noqa: F401
    try:
        import solutions.solution_01  # noqa: F401  (GPT2Config, for configs the judge sends)
    except ModuleNotFoundError:
        pass  # grading step 01: its solution is hidden, and its checks send no config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt2course.check.worker")
    p.add_argument("--step", type=int, required=True)
    p.add_argument("--target", default=course.DEFAULT_TARGET)
    p.add_argument("--device", default=course.DEFAULT_DEVICE)
    p.add_argument("--fds", required=True, help="read,write: the pipe pair to the judge")
    p.add_argument("--confine", default=None, help="JSON: {read: [...], write: [...], fence: [...]}")
    opts = p.parse_args(argv)
    read_fd, write_fd = (int(x) for x in opts.fds.split(","))
    channel = wire.Channel(read_fd, write_fd)
    worker = Worker(opts.step, opts.target, opts.device)
    me = peer.Peer(channel, "$w", "worker", serve=worker.serve, resolve_extra=worker.resolve)
    me.on_error = error_of
    me.wrap = worker.around_call
    execute.set_reporter(lambda text: me.notify({"op": "say", "text": text}))
    try:
        start(opts, worker, me)
    except BaseException:  # noqa: BLE001 - before the step is imported: the course's fault
        import traceback

        me.notify({"op": "fatal", "text": traceback.format_exc()[-4000:]})
        return 70
    me.serve_forever()
    return 0


def start(opts, worker: Worker, me: peer.Peer) -> None:
    """Everything before the first request: network, imports, confinement."""
    spec = json.loads(opts.confine) if opts.confine else None
    if spec is not None and not spec.get("network", True):
        from gpt2course.grade import sandbox

        worker.held.append(sandbox.isolate_network())  # before MAX starts its threads
    _preload()
    if spec is not None:
        confine(spec, worker)
    me.take_alerts = worker.take_alerts


def confine(spec: dict, worker: Worker) -> None:
    """Graded: the sandbox's rules on this process, the write fence, the import refuser."""
    import linecache

    from gpt2course.grade import fence, sandbox

    # A traceback names lines of this package's files, which the worker may not read once
    # confined: read them now, so formatting a learner's error reads nothing new.
    root = os.path.realpath(course.ROOT)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and os.path.realpath(path).startswith(root + os.sep):
            linecache.getlines(path)  # this package (with __main__, this file) and the solutions
    worker.held += sandbox.confine(spec.get("read", []), spec.get("write", []),
                                   network=bool(spec.get("network", True)),
                                   listable=spec.get("listable", []))
    worker.fence = fence.install_write_fence(spec.get("write", []), spec.get("read", []))
    hidden = tuple(f"solutions.solution_{n:02d}" for n in range(worker.step, 100))
    sys.meta_path.insert(0, Refuser(hidden, worker.alerts, os.path.realpath(worker.path)))


if __name__ == "__main__":
    sys.exit(main())
