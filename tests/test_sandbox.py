"""The worker's confinement (gpt2course.grade: landlock, allowed, isolation, sandbox): each test
runs a child Python that confines itself (or is started confined) and then tries things, printing
JSON; the same probes run unconfined show they can fail."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpt2course.course import ROOT
from gpt2course.grade import allowed, isolation, landlock
from gpt2course.max_install import EAGER_EXECUTOR, child_env

ABI = landlock.landlock_abi()

# Helpers every child has: each probe returns True or the error's name.
PRELUDE = textwrap.dedent("""
    import errno, json, os, signal, socket, sys
    from gpt2course.grade import allowed, landlock

    def runtime_reads():  # what any confined Python needs to read to go on (its stdlib, ...)
        return allowed.worker_reads(os.devnull, 1)

    def can_read(path):
        try:
            with open(path, "rb") as f:
                f.read(1)
            return True
        except OSError as e:
            return type(e).__name__

    def can_write(path):
        try:
            with open(path, "w") as f:
                f.write("x")
            return True
        except OSError as e:
            return type(e).__name__

    def can_connect(port):  # a TCP connect to 127.0.0.1:port: True, or the errno's name
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                return True
            except OSError as e:
                return errno.errorcode.get(e.errno, type(e).__name__)
""")


def needs(abi: int, what: str) -> None:
    if ABI < abi:
        pytest.skip(f"{what} needs Landlock ABI {abi}; this kernel has {ABI or 'no Landlock'}")


CHECK = [sys.executable, "-m", "gpt2course.grade.sandbox", "sandbox", "--no-landlock", "--"]
LAUNCHER = [sys.executable, "-m", "gpt2course.grade.isolation", "worker", "--"]


def run_child(code: str, args=(), timeout: int = 120, launcher: bool = False, check: bool = False,
              **env) -> dict:
    """Runs PRELUDE + ``code`` in a child Python (started through the worker's launcher, with
    ``launcher``, inside a check's namespaces, with ``check``: gpt2course.grade.isolation);
    returns the JSON its last line prints."""
    prefix = (CHECK if check else []) + (LAUNCHER if launcher else [])
    result = subprocess.run([*prefix, sys.executable, "-c", PRELUDE + textwrap.dedent(code), *map(str, args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env=child_env(PYTHONPATH=str(ROOT), **env))
    assert result.returncode == 0, f"child failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_workspace(root: Path) -> Path:
    """A fake course copy: tiny files with the real layout."""
    files = {"steps/__init__.py": "", "steps/step_03.py": "STEP = 3\n",
             "solutions/__init__.py": "", "gpt2course/__init__.py": "",
             "gpt2course/check/compare.py": "SECRET = 1\n", "tests/test_step_03.py": "EXPECTED = 1\n"}
    files.update({f"solutions/solution_{n:02d}.py": f"SOLUTION = {n}\n" for n in range(1, 6)})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def origin(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        pytest.skip(f"{module} is not installed")
    return spec.origin


def beneath(path: str, roots) -> list[str]:
    real = os.path.realpath(path)
    return [r for r in roots if real == os.path.realpath(r) or real.startswith(os.path.realpath(r) + os.sep)]


@pytest.fixture
def layout(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    other = make_workspace(tmp_path / "other")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return ws, other, scratch


def test_worker_reads_leave_out_the_reference_and_checking_code(layout):
    ws, other, _ = layout
    reads = allowed.worker_reads(ws, 3)
    dists = allowed.worker_distributions()
    assert {"max", "numpy"} <= set(dists)
    assert not set(dists) & {"torch", "transformers", "huggingface-hub", "safetensors", "tokenizers",
                             "pytest", "pluggy"}
    for readable in (ws / "steps/step_03.py", ws / "solutions/solution_02.py", origin("numpy"),
                    origin("max.experimental.tensor")):
        assert beneath(str(readable), reads), readable
    for forbidden in (ws / "solutions/solution_03.py", ws / "solutions/solution_04.py",
                      ws / "gpt2course/check/compare.py", ws / "tests/test_step_03.py",
                      other / "steps/step_03.py", origin("torch"), origin("transformers"),
                      origin("pytest"), origin("_pytest"), origin("pluggy"), "/etc/shadow", "/dev/sda"):
        assert not beneath(str(forbidden), reads), (forbidden, beneath(str(forbidden), reads))


def test_confined_worker_reads_writes_and_runs_max(layout):
    needs(1, "read rules")
    ws, other, scratch = layout
    probes = {"step": ws / "steps/step_03.py", "earlier_solution": ws / "solutions/solution_02.py",
              "numpy": origin("numpy"), "torch": origin("torch"), "transformers": origin("transformers"),
              "own_solution": ws / "solutions/solution_03.py", "compare": ws / "gpt2course/check/compare.py",
              "test_file": ws / "tests/test_step_03.py", "other_workspace": other / "steps/step_03.py"}
    code = """
        probes, ws, scratch, confined = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
        import numpy as np
        from max.experimental.tensor import Tensor
        x = Tensor.from_dlpack(np.ones(3, np.float32))
        warm = np.from_dlpack(x + x).tolist()               # MAX imported and warm before confine
        out = {"warm": warm}
        sys.path.insert(0, ws)
        import steps, solutions     # as the worker does: the packages before confine, the modules after
        if confined:
            spec = allowed.worker_spec(ws, 3, [scratch])
            out["held"] = landlock.confine(spec["read"], spec["write"], listable=spec["listable"])
        out["reads"] = {k: can_read(p) for k, p in probes.items()}
        out["write_scratch"] = can_write(os.path.join(scratch, "out.txt"))
        out["write_report"] = can_write(os.path.join(ws, "report.json"))
        out["after"] = np.from_dlpack(x * x + x).tolist()    # an op not run before: compiled now
        import steps.step_03, solutions.solution_02
        out["imported"] = [steps.step_03.STEP, solutions.solution_02.SOLUTION]
        try:
            import solutions.solution_03
            out["import_own_solution"] = True
        except Exception as e:
            out["import_own_solution"] = type(e).__name__
        print(json.dumps(out))
    """
    paths = json.dumps({k: str(v) for k, v in probes.items()})
    # In-process eager MAX: the default executor's compile pool, started before confine, would
    # stay outside it (and hang the confined process at exit); see sandbox's docstring.
    env = {"MAX_EAGER_EXECUTOR": EAGER_EXECUTOR}
    free = run_child(code, [paths, ws, scratch, 0], timeout=600, **env)
    assert all(v is True for v in free["reads"].values()), free["reads"]
    assert free["write_report"] is True and free["import_own_solution"] is True
    os.remove(ws / "report.json")

    out = run_child(code, [paths, ws, scratch, 1], timeout=600, **env)
    assert f"reads: only beneath the allowed paths (Landlock ABI {ABI})" in out["held"], out["held"]
    assert out["warm"] == [2.0, 2.0, 2.0] and out["after"] == [2.0, 2.0, 2.0]
    reads = out["reads"]
    assert reads["step"] is True and reads["earlier_solution"] is True and reads["numpy"] is True, reads
    for denied in ("torch", "transformers", "own_solution", "compare", "test_file", "other_workspace"):
        assert reads[denied] == "PermissionError", (denied, reads)
    assert out["write_scratch"] is True
    assert out["write_report"] == "PermissionError" and not (ws / "report.json").exists()
    assert out["imported"] == [3, 2] and out["import_own_solution"] == "PermissionError"


NET_CODE = """
    port, how = int(sys.argv[1]), sys.argv[2]
    held = [b for a, b in zip(sys.argv, sys.argv[1:]) if a == "--held"]   # the launcher's lines
    if "confine" in how:
        held += landlock.confine(runtime_reads(), [], network="network" in how)
    print(json.dumps({"held": held, "connect": can_connect(port)}))
"""


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(8)
        yield server.getsockname()[1]


def test_no_tcp_when_confined(listener):
    needs(4, "TCP rules")
    assert run_child(NET_CODE, [listener, "none"])["connect"] is True
    assert run_child(NET_CODE, [listener, "confine+network"])["connect"] is True
    out = run_child(NET_CODE, [listener, "confine"])
    assert "TCP: no bind or connect (Landlock)" in out["held"]
    assert out["connect"] == "EACCES"


def test_no_network_in_own_namespace(listener):
    assert run_child(NET_CODE, [listener, "none"])["connect"] is True
    out = run_child(NET_CODE, [listener, "isolate"], launcher=True)
    line = next(h for h in out["held"] if h.startswith("network"))
    if "NOT" in line:
        pytest.skip(line)
    assert line.startswith("network: its own empty network namespace")
    assert out["connect"] == "ENETUNREACH", out  # the loopback is down: no route
    if ABI >= 4:
        both = run_child(NET_CODE, [listener, "isolate+confine"], launcher=True)
        assert both["connect"] in ("ENETUNREACH", "EACCES"), both


def test_no_signals_out_of_the_confined_tree():
    needs(6, "signal scoping")
    code = """
        pid, confined = int(sys.argv[1]), sys.argv[2] == "1"
        held = landlock.confine(runtime_reads(), [], network=True) if confined else []
        try:
            os.kill(pid, signal.SIGTERM if confined else 0)   # unconfined: only ask, do not kill
            sent = True
        except OSError as e:
            sent = type(e).__name__
        print(json.dumps({"held": held, "sent": sent}))
    """
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert run_child(code, [sleeper.pid, 0])["sent"] is True
        out = run_child(code, [sleeper.pid, 1])
        assert "signals: only to its own processes (Landlock scope)" in out["held"]
        assert out["sent"] == "PermissionError"
        assert sleeper.poll() is None, "the confined child's SIGTERM reached the sleeper"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_restrict_writes_still_fences_writes_only(tmp_path):
    needs(1, "write rules")
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    code = """
        inside, outside, fenced = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
        abi = landlock.restrict_writes([inside]) if fenced else 0
        print(json.dumps({"abi": abi, "inside": can_write(os.path.join(inside, "a")),
                          "outside": can_write(os.path.join(outside, "a")), "read": can_read(sys.argv[4])}))
    """
    target = origin("torch")
    assert run_child(code, [inside, outside, 0, target])["outside"] is True
    os.remove(outside / "a")
    out = run_child(code, [inside, outside, 1, target])
    assert out == {"abi": ABI, "inside": True, "outside": "PermissionError", "read": True}


def test_probe_prints_one_line_per_feature():
    result = subprocess.run([sys.executable, "-m", "gpt2course.grade.sandbox", "probe"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=child_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Landlock ABI: {ABI}" + ("" if ABI else " (not available)")
    assert [line.split(":")[0] for line in lines[1:6]] == [
        "write rules", "read rules", "TCP bind/connect rules", "signal and abstract-socket scoping", "user"]
    for feature in ("processes", "/dev/shm", "capabilities", "seccomp"):
        assert any(line.startswith(feature + ":") for line in lines), (feature, lines)


def test_confine_names_children_started_before_it():
    needs(1, "Landlock")
    code = """
        import subprocess
        reads = runtime_reads()
        early = subprocess.Popen(["sleep", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        held = landlock.confine(reads, [], network=True)   # early: as MAX's compile pool would be
        try:
            early.terminate()
            stopped = True
        except OSError as e:
            stopped = type(e).__name__
        print(json.dumps({"held": held, "pid": early.pid, "stopped": stopped}))
    """
    out = run_child(code)
    assert f"child processes started before: NOT confined: pid(s) {out['pid']}" in out["held"]
    if ABI >= 6:  # outside the confined domain, so it cannot even be stopped from inside
        assert out["stopped"] == "PermissionError"


# What the worker's launcher takes away: a child started through it tries, and the same child
# started without it shows each attempt can succeed here.
LAUNCHED = """
    import ctypes, resource
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pid = int(sys.argv[1])
    held = [b for a, b in zip(sys.argv, sys.argv[1:]) if a == "--held"]
    def call(*args):  # the raw syscall: 0 or the errno's name
        r = libc.syscall(*[ctypes.c_long(a) for a in args])
        return 0 if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    nr = {"x86_64": {"bpf": 321, "ptrace": 101, "prlimit64": 302, "unshare": 272, "keyctl": 250},
          "aarch64": {"bpf": 280, "ptrace": 117, "prlimit64": 261, "unshare": 97, "keyctl": 219}}[os.uname().machine]
    out = {"held": held}
    out["bpf"] = call(nr["bpf"], 0, 0, 0)                       # BPF_MAP_CREATE with no attr
    out["ptrace_other"] = call(nr["ptrace"], 16, pid, 0, 0)     # PTRACE_ATTACH
    out["prlimit_other"] = call(nr["prlimit64"], pid, resource.RLIMIT_CORE, 0, 0)   # read only
    out["prlimit_self"] = call(nr["prlimit64"], 0, resource.RLIMIT_CORE, 0, 0)
    out["unshare"] = call(nr["unshare"], 0x10000000)
    out["keyctl"] = call(nr["keyctl"], 0, -3, 0)                # KEYCTL_GET_KEYRING_ID (session)
    try:
        os.kill(pid, 0)
        out["see_other"] = True
    except OSError as e:
        out["see_other"] = type(e).__name__
    out["caps"] = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
    out["pid"] = os.getpid()
    import threading, subprocess
    t = threading.Thread(target=lambda: None); t.start(); t.join()   # threads still start (clone3 -> clone)
    out["child"] = subprocess.run(["true"]).returncode                # and so do children
    print(json.dumps(out))
"""


def test_the_launcher_takes_away_what_a_check_never_needs():
    sleeper = subprocess.Popen(["sleep", "60"])  # another process of the same user
    try:
        free = run_child(LAUNCHED, [sleeper.pid])
        assert free["see_other"] is True and free["prlimit_other"] == 0 and free["prlimit_self"] == 0
        assert free["unshare"] == 0 or os.geteuid() != 0
        out = run_child(LAUNCHED, [sleeper.pid], launcher=True)  # the worker's own layer
        held = "\n".join(out["held"])
        if "NOT" in held:
            pytest.skip(held)
        for call in ("bpf", "ptrace_other", "prlimit_other", "unshare", "keyctl"):
            assert out[call] == "EPERM", (call, out)
        assert out["prlimit_self"] == 0 and int(out["caps"], 16) == 0 and out["child"] == 0, out
        assert out["see_other"] is True  # the worker's layer alone hides no process: the check's does
        inside = run_child(LAUNCHED, [sleeper.pid], launcher=True, check=True)
        assert inside["see_other"] == "ProcessLookupError", inside  # the check's PID namespace
        assert inside["bpf"] == "EPERM" and inside["prlimit_other"] == "EPERM", inside
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_check_leaves_nothing_behind():
    """A daemon that a check's code double-forks dies with the check (its PID namespace ends)."""
    code = """
        import subprocess
        p = subprocess.Popen(["sh", "-c", "(setsid sleep 300 >/dev/null 2>&1 &) ; echo started"], stdout=subprocess.PIPE)
        p.communicate()
        print(json.dumps({"ok": True}))
    """
    before = _sleepers()
    run_child(code, launcher=True, check=True)
    import time

    time.sleep(0.5)
    assert _sleepers() - before == set(), "a process of the launched tree outlived it"


def _sleepers() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:2] == [b"sleep", b"300"]:
                found.add(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("machine, header", [("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
                                             ("aarch64", "/usr/include/asm-generic/unistd.h")])
def test_the_seccomp_tables_match_the_kernel_headers(machine, header):
    import re

    if not os.path.exists(header):
        pytest.skip(f"{header} is not installed")
    text = open(header).read()
    for name, number in isolation._TABLES[machine].items():
        m = re.search(rf"#define __NR_{name}\s+(\d+)", text)
        assert m and int(m.group(1)) == number, (machine, name, number, m and m.group(1))
    prog = isolation.seccomp_program(machine)
    assert all(0 <= jt < len(prog) and 0 <= jf < len(prog) for _, jt, jf, _ in prog)
