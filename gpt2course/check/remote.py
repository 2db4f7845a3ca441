"""The judge's side of the worker: starting it, asking it, and reading what it answers.

The judge (the pytest process that checks a step) never imports the code under check.
``Remote`` starts a worker (``gpt2course.check.worker``) and turns each question into a
request; what comes back is arrays and plain values (checked on arrival by
``gpt2course.check.wire``), proxies for what stays in the worker, or the learner's error,
raised here as the same ``CheckFailure`` a learner reads. If the worker dies (``os._exit``,
a segfault, the kernel's OOM killer) the question that was under way fails with how it
died, and the next question starts a fresh worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from gpt2course import course
from gpt2course.check import execute, peer, wire
from gpt2course.errors import CheckFailure
from gpt2course.max_install import child_env

Proxy = peer.Proxy


class Remote:
    """The worker of one step. ``confine``: the rules it applies to itself (JSON text, the
    grader's), or None; ``env`` and ``cwd``: where it runs (default: the judge's)."""

    def __init__(self, step: int, target: str, device_name: str, *, confine: str | None = None,
                 env: dict | None = None, cwd: str | None = None):
        self.step, self.target, self.device_name = step, target, device_name
        self.path = course.step_file(step, target)
        self.confine = confine
        self.env, self.cwd = env, cwd
        self.proc: subprocess.Popen | None = None
        self.output: OutputTap | None = None
        self.printed: list[OutputTap] = []  # the output of every worker this step started
        self.fatal: str | None = None  # why the worker could not start, if it said
        self.peer: peer.Peer | None = None
        self.alerts: list[str] = []
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
    def command(self, read_fd: int, write_fd: int) -> list[str]:
        cmd = [sys.executable, "-m", "gpt2course.check.worker", "--step", str(self.step),
               "--target", str(self.target), "--device", self.device_name, "--fds", f"{read_fd},{write_fd}"]
        if self.confine:
            cmd += ["--confine", self.confine]
        return cmd

    def start(self) -> None:
        to_worker_r, to_worker_w = os.pipe()
        to_judge_r, to_judge_w = os.pipe()
        env = self.env if self.env is not None else child_env()
        try:
            self.proc = subprocess.Popen(self.command(to_worker_r, to_judge_w), env=env, cwd=self.cwd,
                                         pass_fds=(to_worker_r, to_judge_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        finally:
            os.close(to_worker_r)
            os.close(to_judge_w)
        self.output = OutputTap(self.proc.stdout)
        self.peer = peer.Peer(wire.Channel(to_judge_r, to_worker_w), "$j", "worker")
        self.peer.on_notice = self._notice
        self.peer.on_error = _judge_error
        self.peer.call = lambda proxy, args, kwargs: self.call(proxy, args, kwargs)
        self.peer.getattr = lambda proxy, name: self.ask(
            "getattr", None, doing=self.doing, target=proxy._ref, name=name)
        self.loaded = False
        self.fatal = None

    def _notice(self, message: dict) -> None:
        if message.get("op") == "say":
            execute.say(str(message.get("text", ""))[:2000])
        elif message.get("op") == "fatal":
            self.fatal = str(message.get("text", ""))[-4000:]

    def close(self) -> None:
        if self.peer is not None:
            self.peer.channel.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.output.join()
            self.printed.append(self.output)
        self.proc = self.peer = None

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
    def ask(self, op: str, value=None, *, doing: str, **header):
        try:
            if self.proc is None:
                self.start()
                if op != "load" and self.loaded_once:
                    self._request({"op": "load", "doing": f"importing {course.display(self.path)}"}, None)
                    self.loaded = True
            result = self._request(dict(header, op=op, doing=doing), value)
        except (wire.Closed, BrokenPipeError):
            how = self.how_it_died()
            self.proc, self.peer, self.loaded = None, None, False
            raise CheckFailure(f"step {self.step:02d}: the process running your code ended while "
                               f"{doing}: {how}",
                               "the line that ends or crashes the process is in the step's code; "
                               "run the step's code in Python directly to see it") from None
        except wire.WireError as exc:
            self.close()
            self.loaded = False
            raise CheckFailure(f"step {self.step:02d}: while {doing}, the process running your code "
                               f"sent something the check cannot read: {exc}",
                               "a step's code must not write to the check's pipes") from None
        return result

    def _request(self, header: dict, value):
        here = self.peer
        try:
            return here.request(header, value)
        except peer.RemoteError as exc:
            raise self._failure(exc.error) from None
        finally:
            self.alerts.extend(here.alerts)
            del here.alerts[:]

    def _failure(self, error: dict) -> CheckFailure:
        from gpt2course.check.learner import TodoNotDone

        message = str(error.get("message", ""))[:20000]
        hint = error.get("hint")
        hint = str(hint)[:2000] if hint is not None else None
        kind = error.get("type")
        if kind == "todo" and isinstance(error.get("todo"), int):
            return TodoNotDone(self.step, error["todo"], self.path)
        if kind == "check":
            return CheckFailure(message, hint)
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

    # -- the operations -------------------------------------------------------------------
    def load(self) -> None:
        doing = f"importing {course.display(self.path)}"
        self.loaded_once = True
        self.ask("load", None, doing=doing)
        self.loaded = True

    def export(self, name: str) -> Proxy:
        if not self.loaded:
            self.load()
        return self.ask("export", name, doing=f"reading {name} from {course.display(self.path)}")

    def call(self, target: Proxy, args, kwargs, *, doing: str | None = None):
        doing = doing or self.doing
        if target._peer is not self.peer:
            raise CheckFailure(f"step {self.step:02d}: {doing}: an object of an earlier worker "
                               "(the process running your code ended and was started again)")
        header = {"target": target._ref}
        if self._lazy:
            header["lazy"] = True
        return self.ask("call", (list(args), kwargs), doing=doing, **header)

    def describe(self, obj: Proxy, *, doing: str) -> dict:
        return self.ask("describe", obj, doing=doing)

    def parameters(self, module: Proxy, *, doing: str) -> dict:
        return self.ask("parameters", module, doing=doing)

    def run(self, module: Proxy, weights: dict, inputs, *, mode: str, what: str, doing: str) -> list:
        return self.ask("run", (module, weights, list(inputs), mode, what), doing=doing)

    def diagnose(self, module: Proxy, weights: dict, ids, body_attr, *, what: str, doing: str) -> list:
        return self.ask("diagnose", (module, weights, ids, body_attr, what), doing=doing)

    def cached_model(self, module: Proxy, config, weights: dict, *, what: str, doing: str) -> Proxy:
        return self.ask("cached_model", (module, config, weights, what), doing=doing)


class OutputTap:
    """Reads what the worker prints (the code under check's print(), MAX's native messages)
    on a thread, keeping the first and last KEEP bytes: a step that prints without end fills
    neither the judge's memory nor a disk."""

    KEEP = 32 << 10

    def __init__(self, stream):
        import threading

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
        return "".join(f"\n    | {line[:300]}" for line in lines)


def _judge_error(exc: BaseException, message: dict) -> dict:
    """A judge-side object the worker called (a stand-in model) raised: say so plainly."""
    text = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return {"type": "judge", "message": f"the check's object raised {text}"}
