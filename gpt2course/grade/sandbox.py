"""The sandbox a graded check runs in: ``python -m gpt2course.grade.sandbox``.

``sandbox [--write DIR]... [--read DIR]... [--memory BYTES] [--cgroup DIR] [--cache DIR --layer DIR] [--no-landlock] -- CMD...``
    What the grader starts for each check, before the check's judge. In order: it joins the
    check's cgroup (the grader kills every process in it when the check ends); no core files and
    a data limit (RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more address space than
    they use); the check's namespaces (``gpt2course.grade.isolation.check_namespaces``: its own
    user, PID, mount and IPC namespaces, its own /proc and /dev/shm, MAX's cache under a layer
    of its own); then, where the kernel has Landlock, rules for the whole process tree: read
    only beneath the ``--read`` folders (given any), write only beneath the ``--write`` ones, no
    signals out (``gpt2course.grade.landlock``); then it execs the check. What holds is passed
    to the check in ``GPT2COURSE_CHECK_HELD`` (JSON lines) for its report.
``landlock-abi``
    Prints the kernel's Landlock ABI (0: none).
``probe``
    Prints, one line each, what confinement this machine offers.

The check's worker (``gpt2course.check.worker``), the only process that runs a student's code,
is started by the judge through ``python -m gpt2course.grade.isolation worker`` (its own PID
and network namespaces, no capabilities, a seccomp filter) and confines itself further after
its imports (``gpt2course.grade.landlock.confine``, ``gpt2course.grade.allowed``).
"""

from __future__ import annotations

import json
import os
import sys

from gpt2course.grade import isolation
from gpt2course.grade.landlock import landlock_abi, restrict, _ABI_NET, _ABI_SCOPE

HELD_ENV = "GPT2COURSE_CHECK_HELD"


def probe_lines() -> list[str]:
    """What confinement this machine offers, one line each (``probe``)."""
    abi = landlock_abi()
    no = f"no (Landlock ABI {abi})" if abi else "no (no Landlock)"

    def since(needed: int) -> str:
        return f"yes (Landlock ABI {abi})" if abi >= needed else no

    return [f"Landlock ABI: {abi}" + ("" if abi else " (not available)"),
            "write rules: " + since(1),
            "read rules: " + since(1),
            "TCP bind/connect rules: " + since(_ABI_NET),
            "signal and abstract-socket scoping: " + since(_ABI_SCOPE),
            *_probe_isolation()]


def _probe_isolation() -> list[str]:
    """The check's namespaces and the worker's launcher, tried in a forked child."""
    if not hasattr(os, "fork"):
        return ["namespaces: no (no fork on this platform)"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try them, report the lines, exit without cleanup
        try:
            os.close(r)
            lines = isolation.check_namespaces(None, None)
            lines += [isolation.drop_capabilities(), isolation.install_seccomp()]
            os.write(w, "\n".join(lines).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    return text.splitlines() or ["namespaces: the probe said nothing"]


def _join_cgroup(path: str) -> str:
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        return "cgroup: its own (every process in it is killed when the check ends)"
    except OSError as exc:
        return f"cgroup: NOT joined ({exc.strerror})"


def sandbox_main(argv: list[str]) -> int:
    """``sandbox [options] -- COMMAND...``: limit, isolate, fence, exec."""
    import argparse
    import resource  # Unix only: imported here so learners' checks never need it

    if "--" not in argv:
        print("usage: python -m gpt2course.grade.sandbox sandbox [--write DIR]... [--read DIR]... "
              "[--memory BYTES] [--cgroup DIR] [--cache DIR --layer DIR] -- CMD...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m gpt2course.grade.sandbox")
    p.add_argument("--write", action="append", default=[])
    p.add_argument("--read", action="append", default=[])
    p.add_argument("--memory", type=int, default=0)
    p.add_argument("--cgroup", default=None)
    p.add_argument("--cache", default=None, help="MAX's shared cache, to put under a layer of the check's")
    p.add_argument("--layer", default=None, help="a folder of the check's for that layer")
    p.add_argument("--no-landlock", action="store_true")
    p.add_argument("--no-namespaces", action="store_true")
    opts = p.parse_args(argv[:cut])
    command = argv[cut + 1:]
    held = [_join_cgroup(opts.cgroup)] if opts.cgroup else []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if opts.memory > 0:
        # RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more address space than they use.
        resource.setrlimit(resource.RLIMIT_DATA, (opts.memory, opts.memory))
    if not opts.no_namespaces:
        held += isolation.check_namespaces(opts.cache, opts.layer)  # the caller goes on in the child
    if not opts.no_landlock:
        held += restrict(opts.read, opts.write)
    os.environ[HELD_ENV] = json.dumps(held)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sandbox":
        sys.exit(sandbox_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "landlock-abi":
        print(landlock_abi())
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        print("\n".join(probe_lines()))
        sys.exit(0)
    print("usage: python -m gpt2course.grade.sandbox sandbox|landlock-abi|probe ...", file=sys.stderr)
    sys.exit(2)
