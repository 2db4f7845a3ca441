"""The worker (runs in its own process): the only process that imports and runs the code
under check.

``python -m gpt2course.check.worker --step N --target T --device D --fds R,W,A [--confine JSON]``

The judge (the check's pytest process, ``gpt2course.check.judge_end``) starts it, and asks,
over the pipe pair ``R,W`` (``gpt2course.check.wire``), one of ``wire.WORKER_OPS``: load the
step; give me its export ``name``; call this object of yours, or read its attribute; its
parameters' names and shapes; run it on these weights and inputs, eager or compiled. The
worker answers with arrays, plain values, references to objects that stay here (``$w``), or
the learner's error as text. It holds no key, is given no expected value, and writes no
verdict: what it answers is compared in the judge. While a request runs, the code under check
may call the callables the judge passed with it (a stand-in model): each call is one
``wire.Callback`` to the judge, plain values in and out. The alert pipe ``A`` carries, the
moment they happen, the attempts the sandbox refused (graded).

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
from gpt2course.check import execute, learner, wire
from gpt2course.errors import CheckFailure

# Never importable by the code under check: the judge's libraries and the reference's.
REFUSED = ("gpt2course", "tests", "pytest", "_pytest", "pluggy", "torch", "transformers",
           "huggingface_hub", "safetensors", "tokenizers")


class Refuser(importlib.abc.MetaPathFinder):
    """Refuses imports of what a worker may not use (``hidden`` adds the graded step's own
    solution and the later ones), and records those the step's own file asks for. (A library
    that tries an optional import, as some do for torch, is refused without a record.)"""

    def __init__(self, hidden: tuple[str, ...], alert, learner_file: str):
        self.names, self.alert, self.learner_file = REFUSED + hidden, alert, learner_file

    def _asked_by_learner(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None and ("importlib" in frame.f_code.co_filename
                                     or frame.f_code.co_filename.startswith("<frozen")):
            frame = frame.f_back
        return frame is not None and os.path.realpath(frame.f_code.co_filename) == self.learner_file

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            if self._asked_by_learner():
                self.alert(f"import {fullname} (refused: code under check may not use it)")
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (a check's code may use MAX, NumPy, the standard "
                "library and the earlier steps' solutions only)", name=fullname)
        return None


class CallbackError(Exception):
    """The check's callable (in the judge) raised, or the judge refused the call."""


class Worker:
    """What the judge may ask (``op_*``, one per verb of ``wire.WORKER_OPS``)."""

    def __init__(self, step: int, target: str, device_name: str):
        self.step, self.target, self.device_name = step, target, device_name
        self.path = course.step_file(step, target)
        self.module = None
        self.held: list[str] = []   # what confinement holds (gpt2course.grade.sandbox's words)
        self._device = None

    @property
    def device(self):
        if self._device is None:
            from gpt2course.device import max_device

            self._device = max_device(self.device_name)
        return self._device

    def op_confinement(self, request, value):
        """What confinement holds in this worker, in words (the judge puts it in the report)."""
        return list(self.held)

    def op_load(self, request, value):
        self.module = learner.load(self.step, self.target)
        return True

    def op_export(self, request, value):
        if self.module is None:
            raise CheckFailure(f"step {self.step:02d}: the step's file is not loaded")
        return learner.export(self.module, self.step, str(request.name), self.path)

    def op_call(self, request, value, target):
        args, kwargs = value
        if request.lazy:
            from max.experimental import functional as F

            with F.lazy():
                return target(*args, **kwargs)
        return target(*args, **kwargs)

    def op_getattr(self, request, value, target):
        return getattr(target, str(request.name))

    def op_describe(self, request, obj):
        fields = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
        try:
            attrs = sorted(vars(obj)) if not isinstance(obj, type) else []
        except TypeError:
            attrs = []
        return {"dataclass": dataclasses.is_dataclass(obj), "fields": fields,
                "attributes": [str(a) for a in attrs][:1000]}

    def op_parameters(self, request, module):
        return {"shapes": execute.parameter_shapes(module),
                "kinds": {name: execute.owner_kind(module, name) for name, _ in module.parameters}}

    def op_run(self, request, value):
        module, weights, inputs, mode, what = value
        return execute.run(module, weights, inputs, mode=mode, dev=self.device, what=what)

    def op_diagnose(self, request, value):
        module, weights, ids, body_attr, what = value
        return execute.run_diagnosed(module, weights, ids, body_attr, dev=self.device, what=what)

    def op_cached_model(self, request, value):
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
    def make(self, tag: str, body):
        if tag == "$device":
            return self.device
        if tag == "$dtype":
            from max.dtype import DType

            if not isinstance(body, str) or not hasattr(DType, body):
                raise wire.WireError(f"no MAX dtype {str(body)[:40]!r}")
            return getattr(DType, body)
        if tag == "$config":
            from solutions.solution_01 import GPT2Config

            return GPT2Config(**body)
        if tag == "$rng":
            return wire.rng_from(body)
        if tag == "$tensor":
            from max.experimental.tensor import Tensor

            return Tensor.from_dlpack(np.ascontiguousarray(body)).to(self.device)
        if tag == "$make":
            return self.make_solution_piece(body)
        raise wire.WireError(f"an unknown tag {tag!r}")

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


class JudgeLink:
    """The worker's end of the pipe (runs in the worker): reads requests, runs them on the
    ``Worker``, replies; keeps the objects it handed out; carries callbacks to the judge."""

    def __init__(self, channel: wire.Channel, worker: Worker):
        self.channel, self.worker = channel, worker
        self.objects: dict[int, object] = {}
        self.refs: dict[int, int] = {}   # id(obj) -> its number, so one object keeps one
        self.request: wire.Request | None = None

    def serve_forever(self) -> None:
        """Answer requests until the judge closes the pipe."""
        while True:
            try:
                message, blobs = self.channel.receive()
            except wire.Closed:
                return
            if not isinstance(message, wire.Request):
                raise wire.WireError(f"expected a request, got a {type(message).__name__}")
            self.answer(message, blobs)

    def answer(self, request: wire.Request, blobs) -> None:
        self.request = request
        try:
            fn = getattr(self.worker, f"op_{request.op}", None) if request.op in wire.WORKER_OPS else None
            if fn is None:
                raise wire.WireError(f"an unknown operation {request.op!r}")
            value = wire.decode(request.value, blobs, tags=wire.TO_WORKER, resolve=self._make)
            with learner.learner_errors(self.worker.step, self.worker.path, request.doing or request.op):
                if request.op in ("call", "getattr"):
                    result = fn(request, value, self._object(request.target))
                else:
                    result = fn(request, value)
            header, out = wire.encode(result, self._keep)
        except wire.Closed:
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever learner code raises is reported
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.channel.send(wire.Raise(id=request.id, error=error_of(exc, request)))
            return
        finally:
            self.request = None
        self.channel.send(wire.Reply(id=request.id, value=header, blobs=len(out)), out)

    def _object(self, ref):
        if ref not in self.objects:
            raise wire.WireError(f"an object {ref!r} this worker never handed out")
        return self.objects[ref]

    def _keep(self, obj) -> dict:
        """A result that is not a value (MAX's tensors are arrays already): it stays here."""
        ref = self.refs.get(id(obj))
        if ref is None:
            ref = len(self.objects) + 1
            self.objects[ref], self.refs[id(obj)] = obj, ref
        return {"$w": ref}

    def _make(self, tag: str, body):
        if tag == "$w":
            return self._object(body)
        if tag == "$callback":
            return self._stub(str(body), self.request.id)
        return self.worker.make(tag, body)

    def _stub(self, name: str, request_id: int):
        """The judge's callable ``name``, as the code under check sees it."""
        def call(*args, **kwargs):
            if self.request is None or self.request.id != request_id:
                raise CallbackError(f"the check's {name} can be called only while the check's call "
                                    "that passed it runs (do not keep it for later)")
            header, blobs = wire.encode([list(args), kwargs], _args_out)
            self.channel.send(wire.Callback(id=request_id, name=name, value=header, blobs=len(blobs)), blobs)
            message, blobs = self.channel.receive()
            if isinstance(message, wire.Refused):
                raise CallbackError(message.message)
            if not isinstance(message, wire.Answer):
                raise wire.WireError(f"expected the answer to a callback, got a {type(message).__name__}")
            return wire.decode(message.value, blobs)
        call.__name__ = call.__qualname__ = name.replace(" ", "_")
        return call


def _args_out(obj):
    raise TypeError(f"a {type(obj).__name__} cannot be passed to the check's functions "
                    "(they take arrays, numbers, strings, lists, tuples and dicts)")


class Box:
    """A value that stays in the worker (a model's cache on the device)."""

    def __init__(self, value):
        self.value = value


def error_of(exc: BaseException, request: wire.Request) -> wire.Error:
    """What an exception in the worker tells the judge: the learner's error as text."""
    if isinstance(exc, learner.TodoNotDone):
        return wire.Error(type="todo", todo=exc.todo, message=exc.message, hint=exc.hint)
    if isinstance(exc, CheckFailure):
        return wire.Error(type="check", message=exc.message, hint=exc.hint)
    if isinstance(exc, wire.WireError):
        return wire.Error(type="wire", message=str(exc))
    if isinstance(exc, SystemExit):
        return wire.Error(type="check", message=f"the code under check called sys.exit({exc.code!r}) while "
                          f"{request.doing or request.op}",
                          hint="a step's code must not end the program: remove the exit")
    return wire.Error(type="error", message=f"{type(exc).__name__}: {exc}")


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
    p.add_argument("--fds", required=True, help="read,write,alert: the pipes to the judge")
    p.add_argument("--confine", default=None, help="JSON: {read: [...], write: [...], listable: [...]}")
    p.add_argument("--held", action="append", default=[],
                   help="what the launcher that started this worker made hold (gpt2course.grade.isolation)")
    opts = p.parse_args(argv)
    read_fd, write_fd, alert_fd = (int(x) for x in opts.fds.split(","))
    spec = json.loads(opts.confine) if opts.confine else None
    channel = wire.Channel(read_fd, write_fd, wire.FROM_JUDGE, wire.FROM_JUDGE_LIMITS)
    worker = Worker(opts.step, opts.target, opts.device)
    worker.held += opts.held
    link = JudgeLink(channel, worker)
    execute.set_reporter(lambda text: channel.send(wire.Say(text=text[:2000])))
    try:
        _preload()
        if spec is not None:
            confine(spec, worker, alert_fd)
    except BaseException:  # noqa: BLE001 - before the step is imported: the course's fault
        import traceback

        channel.send(wire.Fatal(text=traceback.format_exc()[-4000:]))
        return 70
    link.serve_forever()
    return 0


def alert_writer(fd: int):
    """Writes one refused attempt to the judge's alert pipe, at once (a single write of at most
    PIPE_BUF bytes cannot interleave with another)."""
    def alert(text: str) -> None:
        line = (" ".join(str(text).split())[:400] + "\n").encode("utf-8", "backslashreplace")
        try:
            os.write(fd, line)
        except OSError:
            pass  # the pipe was closed: the judge notices that itself
    return alert


def confine(spec: dict, worker: Worker, alert_fd: int) -> None:
    """Graded: the sandbox's rules on this process, the write fence, the import refuser; every
    attempt they refuse goes to the judge's alert pipe the moment it happens."""
    import linecache

    from gpt2course.grade import fence, landlock

    # A traceback names lines of this package's files, which the worker may not read once
    # confined: read them now, so formatting a learner's error reads nothing new.
    root = os.path.realpath(course.ROOT)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and os.path.realpath(path).startswith(root + os.sep):
            linecache.getlines(path)  # this package (with __main__, this file) and the solutions
    alert = alert_writer(alert_fd)
    worker.held += landlock.confine(spec.get("read", []), spec.get("write", []),
                                    network=bool(spec.get("network", True)),
                                    listable=spec.get("listable", []))
    fence.install_write_fence(spec.get("write", []), spec.get("read", []), report=alert,
                              guarded=[str(execute.max_cache_dir())])
    hidden = tuple(f"solutions.solution_{n:02d}" for n in range(worker.step, 100))
    sys.meta_path.insert(0, Refuser(hidden, alert, os.path.realpath(worker.path)))


if __name__ == "__main__":
    sys.exit(main())
