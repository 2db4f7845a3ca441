"""The judge's end of the worker (runs in the judge: the check's pytest process).

The judge never imports the code under check. ``WorkerLink`` starts a worker
(``gpt2course.check.worker``) and turns each question into a ``wire.Request``; what comes
back is arrays and plain values (checked on arrival), ``WorkerObject``s (the judge's name
for what stays in the worker: the learner's class, a built module), or the learner's error,
raised here as the ``CheckFailure`` a learner reads.

What the judge answers is decided here, not by the worker: while a request runs, the worker
may ask for exactly one thing, ``wire.Callback``: to call a callable the check registered for
that request (``wire.callback(name, fn)``: a stand-in model), with plain values, returning
plain values. Anything else (another kind of message, a name not registered for this
request, an object of the judge's, a value tag the judge does not read) ends the check:
graded, as ``error`` with what was asked (``refusals``); for a learner, as a failure that says
so. If the worker dies (``os._exit``, a segfault, the OOM killer) the question under way fails
with how it died, and the next question starts a fresh worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

from gpt2course import course
from gpt2course.check import execute, wire
from gpt2course.errors import CheckFailure
from gpt2course.max_install import worker_env
from gpt2course.text import clean_text

TEXT_LIMIT = 20000  # characters of a learner's error message kept


class WorkerRefused(CheckFailure):
    """The worker asked the judge for something the judge does not answer."""


class WorkerObject:
    """An object that stays in the worker (the learner's class, a module built there).
    Calling it, or reading a (non-dunder) attribute, is a request to the worker."""

    __slots__ = ("_link", "_ref", "_generation")

    def __init__(self, link: "WorkerLink", ref: int):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_generation", link.generation)

    def __call__(self, *args, **kwargs):
        return self._link.call(self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._link.getattr(self, name)

    def __setattr__(self, name, value):
        raise AttributeError("an object in the worker cannot be changed from the check")

    def __repr__(self) -> str:
        return "<an object in the process running the code under check>"


class WorkerLink:
    """The worker of one step. ``confine``: the rules it applies to itself (JSON text, the
    grader's), or None; ``env`` and ``cwd``: where it runs (default: the judge's); ``prefix``:
    the command it is started through (the grader's isolation launcher)."""

    def __init__(self, step: int, target: str, device_name: str, *, confine: str | None = None,
                 env: dict | None = None, cwd: str | None = None, prefix: list[str] | None = None):
        self.step, self.target, self.device_name = step, target, device_name
        self.path = course.step_file(step, target)
        self.confine = confine
        self.prefix = list(prefix or [])  # a launcher the worker is started through (graded)
        self.env, self.cwd = env, cwd
        self.proc: subprocess.Popen | None = None
        self.channel: wire.Channel | None = None
        self.output: OutputTap | None = None
        self.alert_tap: AlertTap | None = None
        self.printed: list[OutputTap] = []  # the output of every worker this step started
        self.fatal: str | None = None       # why the worker could not start, if it said
        self.alerts: list[str] = []         # what the worker's sandbox refused (graded: problems)
        self.refusals: list[str] = []       # what the worker asked that the judge does not answer
        self.generation = 0                 # which worker process: objects of a dead one are stale
        self.next_id = 0
        self.serving = False
        self.loaded = False
        self.loaded_once = False  # a fresh worker (after one died) loads the step again first
        self._lazy = False
        self.doings: list[str] = []  # what the check is doing (step.errors), innermost last

    @property
    def doing(self) -> str:
        return self.doings[-1] if self.doings else f"running step {self.step:02d}'s code"

    @contextlib.contextmanager
    def doing_this(self, doing: str):
        self.doings.append(doing)
        try:
            yield
        finally:
            self.doings.pop()

    # -- the process ----------------------------------------------------------------------
    def command(self, fds: tuple[int, int, int]) -> list[str]:
        cmd = [*self.prefix, sys.executable, "-m", "gpt2course.check.worker", "--step", str(self.step),
               "--target", str(self.target), "--device", self.device_name, "--fds", ",".join(map(str, fds))]
        if self.confine:
            cmd += ["--confine", self.confine]
        return cmd

    def start(self) -> None:
        to_worker_r, to_worker_w = os.pipe()
        to_judge_r, to_judge_w = os.pipe()
        alert_r, alert_w = os.pipe()
        env = self.env if self.env is not None else worker_env()
        try:
            self.proc = subprocess.Popen(self.command((to_worker_r, to_judge_w, alert_w)), env=env,
                                         cwd=self.cwd, pass_fds=(to_worker_r, to_judge_w, alert_w),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
        finally:
            os.close(to_worker_r)
            os.close(to_judge_w)
            os.close(alert_w)
        self.output = OutputTap(self.proc.stdout)
        self.alert_tap = AlertTap(alert_r, self.alerts)
        self.channel = wire.Channel(to_judge_r, to_worker_w, wire.FROM_WORKER, wire.FROM_WORKER_LIMITS)
        self.generation += 1
        self.loaded = False
        self.fatal = None

    def _alert_pipe_intact(self) -> None:
        """A worker that still answers must still have its alert pipe open: closing it is how
        code would hide what its sandbox refuses next."""
        if (self.alert_tap is not None and self.alert_tap.closed and self.proc is not None
                and self.proc.poll() is None):
            note = "the code under check closed the pipe that reports what its sandbox refuses"
            if note not in self.alerts:
                self.alerts.append(note)

    def close(self) -> None:
        if self.channel is not None:
            self._alert_pipe_intact()
            self.channel.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.output.join()
            self.alert_tap.join()
            self.printed.append(self.output)
        self.proc = self.channel = None

    def kill(self) -> None:
        """Ends a worker that broke the protocol: nothing more it says is read."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.close()

    def printed_summary(self) -> str | None:
        """What the code under check printed, in a few lines (None if nothing)."""
        total = sum(t.total for t in self.printed)
        if not any((t.head + t.tail).strip() for t in self.printed):
            return None  # nothing, or only blank lines (MAX's eager runs write a few)
        cut = sum(t.total - len(t.head) - len(t.tail) for t in self.printed if t.total > len(t.head) + len(t.tail))
        return (f"  the process running your code printed {total} bytes (your print()s and MAX's messages)" +
                (f" ([... {cut} bytes cut ...]: the first and last {OutputTap.KEEP // 1024} KiB are kept)"
                 if cut > 0 else "") + "; its last lines:" + self.printed[-1].last_lines(8))

    def how_it_died(self) -> str:
        """How the worker ended, in a learner's words."""
        proc = self.proc
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return "it stopped answering (it was killed)"
        self.output.join()
        said = self.output.last_lines(6)
        said_text = "\n  its last output:" + said if said and not self.fatal else ""
        if self.fatal:
            last = self.fatal.strip().splitlines()[-1]
            return (f"it could not start, before your code was imported (the course's checking code "
                    f"failed, not your step: {last}; run {course.command('doctor')})\n{self.fatal}")
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            why = {"SIGSEGV": "a crash in native code: a segmentation fault (ctypes, or memory a "
                              "C library does not own)",
                   "SIGKILL": "killed: most often for using too much memory",
                   "SIGABRT": "aborted by native code (a failed assertion in a C library or in MAX)",
                   "SIGBUS": "a bus error in native code"}.get(name, "a signal")
            return f"it was ended by {name}: {why}{said_text}"
        return (f"it exited with code {rc} (os._exit or exit() in the code under check ends the "
                f"process; a step's code must return, not exit){said_text}")

    # -- asking ---------------------------------------------------------------------------
    def ask(self, op: str, value=None, *, doing: str, target: int | None = None, name: str | None = None):
        """Request ``op`` of the worker and wait for its reply, answering the callbacks
        registered for this request meanwhile."""
        if self.serving:
            raise RuntimeError("the check asked the worker something from inside a callback")
        try:
            if self.proc is None:
                self.start()
                if op != "load" and self.loaded_once:
                    self._request("load", None, f"importing {course.display(self.path)}", None, None)
                    self.loaded = True
            return self._request(op, value, doing, target, name)
        except wire.Closed:
            how = self.how_it_died()
            self.close()
            self.loaded = False
            raise CheckFailure(f"step {self.step:02d}: the process running your code ended while "
                               f"{doing}: {how}",
                               "the line that ends or crashes the process is in the step's code; "
                               "run the step's code in Python directly to see it") from None
        except wire.WireError as exc:
            self.kill()
            self.loaded = False
            self.refusals.append(f"while {doing}: {exc}")
            raise WorkerRefused(
                f"step {self.step:02d}: while {doing}, the process running your code sent the checking "
                f"process something it does not answer: {exc}. The checking process answers only "
                "calls of the functions a check passes to your code, with plain values",
                "a step's code must not write to the check's pipes or reach into the checking "
                "process: call only what your function is given") from None

    def _request(self, op: str, value, doing: str, target, name):
        self.next_id += 1
        rid = self.next_id
        callbacks: dict[str, object] = {}
        header, blobs = wire.encode(value, lambda obj: self._out(obj, callbacks))
        self.channel.send(wire.Request(id=rid, op=op, doing=doing[:500], value=header, target=target,
                                       name=name, lazy=self._lazy, blobs=len(blobs)), blobs)
        while True:
            message, blobs = self.channel.receive()
            if isinstance(message, (wire.Reply, wire.Raise, wire.Callback)) and message.id != rid:
                raise wire.WireError(f"a {type(message).__name__.lower()} for request {message.id} "
                                     f"while request {rid} ran")
            if isinstance(message, wire.Reply):
                self._alert_pipe_intact()
                return wire.decode(message.value, blobs, tags=wire.TO_JUDGE, resolve=self._resolve)
            if isinstance(message, wire.Raise):
                raise self._failure(message.error)
            if isinstance(message, wire.Say):
                execute.say(clean_text(message.text, 2000))
            elif isinstance(message, wire.Fatal):
                self.fatal = clean_text(message.text, 4000)
            else:
                self._answer(message, blobs, callbacks)

    def _answer(self, message: wire.Callback, blobs, callbacks: dict) -> None:
        """One callback: only a callable registered for the request under way, plain values in
        and out. A refusal ends the check (WireError)."""
        fn = callbacks.get(message.name)
        if fn is None:
            offered = ", ".join(repr(n) for n in callbacks) or "none"
            raise wire.WireError(f"a call of {message.name[:80]!r}, which this check did not hand to "
                                 f"the code (handed for this call: {offered})")
        call = wire.decode(message.value, blobs)  # plain values only: no object of anyone's
        if not (isinstance(call, list) and len(call) == 2 and isinstance(call[0], list)
                and isinstance(call[1], dict)):
            raise wire.WireError(f"a call of {message.name!r} whose arguments are not [args, kwargs]")
        self.serving = True
        try:
            result = fn(*call[0], **call[1])
        except Exception as exc:  # the learner's arguments made the check's callable raise
            self.channel.send(wire.Refused(message=clean_text(
                f"the check's {message.name} raised {type(exc).__name__}: {exc}", 2000)))
            return
        finally:
            self.serving = False
        header, out = wire.encode(result)  # TypeError here is the check's bug: it must return values
        self.channel.send(wire.Answer(value=header, blobs=len(out)), out)

    def _out(self, obj, callbacks: dict):
        """How the judge's request names what is not a plain value."""
        if isinstance(obj, WorkerObject):
            if obj._link is not self or obj._generation != self.generation:
                raise CheckFailure(f"step {self.step:02d}: {self.doing}: an object of an earlier worker "
                                   "(the process running your code ended and was started again)")
            return {"$w": obj._ref}
        if isinstance(obj, wire.Callable_):
            if callbacks.get(obj.name, obj.fn) is not obj.fn:
                raise TypeError(f"two callables named {obj.name!r} in one request")
            callbacks[obj.name] = obj.fn
            return {"$callback": obj.name}
        import dataclasses

        import numpy as np

        if isinstance(obj, np.random.Generator):
            return {"$rng": wire.rng_state(obj)}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and type(obj).__name__ == "GPT2Config":
            header, _ = wire.encode({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
            return {"$config": header}
        raise TypeError(f"the check cannot send a {type(obj).__name__} to the worker "
                        "(register a callable with wire.callback)")

    def _resolve(self, tag: str, body):
        if not isinstance(body, int) or isinstance(body, bool) or body < 1:
            raise wire.WireError(f"an object reference {str(body)[:20]!r}")
        return WorkerObject(self, body)

    def _failure(self, error: wire.Error) -> CheckFailure:
        from gpt2course.check.learner import TodoNotDone

        message = clean_text(error.message, TEXT_LIMIT)
        hint = clean_text(error.hint, 2000) if error.hint is not None else None
        if error.type == "todo" and isinstance(error.todo, int):
            return TodoNotDone(self.step, error.todo, self.path)
        if error.type == "check":
            return CheckFailure(message, hint)
        if error.type == "refused":  # the judge refused a callback: the worker passed it on
            return CheckFailure(f"step {self.step:02d}: {message}", hint)
        return CheckFailure(f"step {self.step:02d}: {message}", hint or
                            "the line above is where it broke; check the shapes going into it")

    @contextlib.contextmanager
    def building(self):
        """Calls made inside construct modules lazily (no weights materialized until compile)."""
        old, self._lazy = self._lazy, True
        try:
            yield
        finally:
            self._lazy = old

    # -- the operations (wire.WORKER_OPS) ---------------------------------------------------
    def load(self) -> None:
        doing = f"importing {course.display(self.path)}"
        self.loaded_once = True
        self.ask("load", None, doing=doing)
        self.loaded = True

    def export(self, name: str) -> WorkerObject:
        if not self.loaded:
            self.load()
        return self.ask("export", None, name=name, doing=f"reading {name} from {course.display(self.path)}")

    def _live(self, obj: WorkerObject, doing: str) -> int:
        if obj._link is not self or obj._generation != self.generation or self.proc is None:
            raise CheckFailure(f"step {self.step:02d}: {doing}: an object of an earlier worker "
                               "(the process running your code ended and was started again)")
        return obj._ref

    def call(self, target: WorkerObject, args, kwargs, *, doing: str | None = None):
        doing = doing or self.doing
        return self.ask("call", [list(args), kwargs], doing=doing, target=self._live(target, doing))

    def getattr(self, target: WorkerObject, name: str):
        return self.ask("getattr", None, doing=self.doing, target=self._live(target, self.doing), name=name)

    def confinement(self) -> list:
        return self.ask("confinement", None, doing="reporting its confinement")

    def describe(self, obj: WorkerObject, *, doing: str) -> dict:
        return self.ask("describe", obj, doing=doing)

    def parameters(self, module: WorkerObject, *, doing: str) -> dict:
        return self.ask("parameters", module, doing=doing)

    def run(self, module: WorkerObject, weights: dict, inputs, *, mode: str, what: str, doing: str) -> list:
        return self.ask("run", [module, weights, list(inputs), mode, what], doing=doing)

    def diagnose(self, module: WorkerObject, weights: dict, ids, body_attr, *, what: str, doing: str) -> list:
        return self.ask("diagnose", [module, weights, ids, body_attr, what], doing=doing)

    def cached_model(self, module: WorkerObject, config, weights: dict, *, what: str, doing: str) -> WorkerObject:
        return self.ask("cached_model", [module, config, weights, what], doing=doing)


class OutputTap:
    """Reads what the worker prints (the code under check's print(), MAX's native messages)
    on a thread, keeping the first and last KEEP bytes: a step that prints without end fills
    neither the judge's memory nor a disk."""

    KEEP = 32 << 10

    def __init__(self, stream):
        self.stream, self.head, self.tail, self.total = stream, b"", b"", 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.stream.read1(1 << 16) if hasattr(self.stream, "read1") else self.stream.read(1 << 16)
            if not chunk:
                break
            self.total += len(chunk)
            if len(self.head) < self.KEEP:
                take = self.KEEP - len(self.head)
                self.head, chunk = self.head + chunk[:take], chunk[take:]
            if chunk:
                self.tail = (self.tail + chunk)[-self.KEEP:]
        self.stream.close()

    def join(self) -> None:
        self.thread.join(timeout=10)

    def last_lines(self, n: int) -> str:
        """The last ``n`` lines that are not blank, each on a line of its own after "    | "."""
        kept = self.head + self.tail if self.total <= len(self.head) + len(self.tail) else self.tail
        lines = [line for line in kept.decode("utf-8", "replace").splitlines() if line.strip()][-n:]
        return "".join(f"\n    | {clean_text(line, 300)}" for line in lines)


class AlertTap:
    """Reads the worker's alert pipe on a thread: each line is an attempt its sandbox refused
    (a read, a write, an import), written there by the worker's fence the moment it happened,
    so nothing the code under check does afterwards can take it back. The pipe closing while
    the worker still answers is itself an alert (WorkerLink.ask checks ``closed``)."""

    LIMIT = 200

    def __init__(self, fd: int, alerts: list):
        self.file = os.fdopen(fd, "rb", buffering=0)
        self.alerts = alerts
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.file.read(1 << 14)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if len(self.alerts) < self.LIMIT:
                    self.alerts.append(clean_text(line.decode("utf-8", "replace"), 500))
            buf = buf[-4096:]
        self.closed = True
        self.file.close()

    def join(self) -> None:
        self.thread.join(timeout=10)
