"""The sandbox the grader starts each check under, and the confinement a check's worker puts
itself in.

``python -m gpt2course.grade.sandbox sandbox [--write DIR]... [--memory BYTES] [--no-landlock] -- CMD...``
    Resource limits (no core files; RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more
    address space than they use), then, where the kernel has Landlock, an OS-level rule that the
    whole process tree may write only beneath the ``--write`` folders and may not signal
    processes outside it (``restrict_writes``); then it execs the check.
``python -m gpt2course.grade.sandbox landlock-abi``
    Prints the kernel's Landlock ABI (0: none).
``python -m gpt2course.grade.sandbox probe``
    Prints, one line each, what confinement this machine offers.

A worker (``gpt2course.check.worker``), the only process that runs a student's code, confines
itself after importing what it needs and before importing the step file:

    isolate_network()                       # optional, first: before any thread exists
    ...import MAX, NumPy, the worker's modules, the steps and solutions packages...
    spec = worker_spec(workspace, step, [scratch])
    confine(spec["read"], spec["write"], listable=spec["listable"])

``confine`` is Landlock: it holds for the calling process and every child it starts afterwards,
and cannot be undone. Where the kernel lacks a Landlock feature, the lines it returns say which
rule does not hold.

MAX's default eager executor ("composite") compiles in a pool of processes started from a
forkserver on the first eager op. Started before ``confine``, that pool is outside the rules
(code that reaches it runs unconfined, and the confined parent can neither signal it nor remove
its semaphores and temporary folder, so it hangs at exit); started after, it cannot start (a new
interpreter may not list the standard library). A worker therefore runs MAX eager in-process:
``MAX_EAGER_EXECUTOR=fallback-internal`` (interpret; compile in-process what the interpreter
refuses), set before MAX is imported. ``confine`` names child processes that already existed.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
from collections.abc import Iterable

# --- Landlock's interface (include/uapi/linux/landlock.h) -----------------------------------
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, and the ABI that introduced each one (ABI 1 unless said).
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_FS_REFER = 1 << 13  # ABI 2: link or rename a file across folders
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5: ioctl on a device file opened after the restriction
_FS_READ = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE
# The rights that make sense on a file (a rule on a file with any other is refused).
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV

# Network rights (ABI 4): TCP only; UDP and Unix sockets have none.
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_ABI_NET = 4

# Scopes (ABI 6): no connecting to abstract Unix sockets, nor signalling, outside the domain.
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_ABI_SCOPE = 6

# --- Network namespaces (include/uapi/linux/sched.h) -----------------------------------------
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """Landlock's ABI version on this kernel (0: not available)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                                  ctypes.c_uint32(_CREATE_RULESET_VERSION))
        return max(int(version), 0)
    except Exception:
        return 0


def _write_rights(abi: int, *, ioctl: bool) -> int:
    """The write rights this ABI can handle (IOCTL_DEV only when ``ioctl``)."""
    rights = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if ioctl and abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _apply_ruleset(abi: int, handled_fs: int, handled_net: int, scoped: int,
                   rules: Iterable[tuple[str, int]]) -> list[str]:
    """The one Landlock ruleset builder: handles ``handled_fs``/``handled_net``/``scoped``,
    allows each ``(path, rights)`` beneath ``path`` (a file gets only the rights a file can
    have; a missing path is skipped), then restricts this process and its future children.
    Returns the paths skipped as missing."""
    libc = _libc()
    attr = _RulesetAttr(handled_fs, handled_net, scoped)
    size = 24 if abi >= _ABI_SCOPE else (16 if abi >= _ABI_NET else 8)  # the struct this ABI knows
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    missing = []
    try:
        for path, rights in rules:
            if not _add_path_rule(libc, fd, path, rights & handled_fs):
                missing.append(path)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return missing


def _add_path_rule(libc, ruleset_fd: int, path: str, rights: int) -> bool:
    """Adds "``rights`` beneath ``path``" to the ruleset; False if ``path`` does not exist."""
    if not os.path.exists(path):
        return False
    if not os.path.isdir(path):
        rights &= _FS_FILE_RIGHTS
    if not rights:
        return True
    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(rights, pfd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset_fd),
                        ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(pfd)
    return True


def restrict_writes(paths) -> int:
    """Landlock: from now on this process and its children write only beneath ``paths`` (reads
    are not restricted), and, with ABI >= 6, signal and reach abstract Unix sockets only within.

    Returns the ABI used (0: Landlock unavailable, nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    handled = _write_rights(abi, ioctl=False)
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= _ABI_SCOPE else 0
    _apply_ruleset(abi, handled, 0, scoped, [(p, handled) for p in paths])
    return abi


def confine(read, write, *, network: bool = False, listable=()) -> list[str]:
    """Landlock, for this process and every child it starts afterwards: it may read (and
    execute) only beneath the paths in ``read``, read and write only beneath those in
    ``write``, list (not read) the folders in ``listable`` and what is beneath them (the import
    system lists a package's folder to find its modules); with ``network=False`` no TCP bind or
    connect (ABI >= 4); signals and abstract Unix sockets only within (ABI >= 6). ioctl on
    device files stays allowed (beneath /dev). Missing paths are skipped.

    Returns one plain-English line per rule saying whether it now holds."""
    abi = landlock_abi()
    if abi < 1:
        return ["reads: NOT restricted: this kernel has no Landlock",
                "writes: NOT restricted: this kernel has no Landlock",
                "TCP: NOT restricted: this kernel has no Landlock",
                "signals: NOT restricted: this kernel has no Landlock"]
    writes = _write_rights(abi, ioctl=True)
    handled_net = 0 if network or abi < _ABI_NET else _NET_BIND_TCP | _NET_CONNECT_TCP
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= _ABI_SCOPE else 0
    rules = ([(p, _FS_READ) for p in read] + [(p, _FS_READ | writes) for p in write]
             + [(p, _FS_READ_DIR) for p in listable])
    if abi >= 5:  # denying ioctl on devices breaks terminals and GPUs; opening them is ruled above
        rules.append(("/dev", _FS_IOCTL_DEV))
    before = _child_pids()
    missing = _apply_ruleset(abi, _FS_READ | writes, handled_net, scoped, rules)
    return _confine_lines(abi, network, len(missing), before)


def _child_pids() -> list[int]:
    """This process's children: started before ``confine``, they are not confined."""
    pids = []
    for task in glob.glob("/proc/self/task/*/children"):
        try:
            with open(task) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(pids)


def _confine_lines(abi: int, network: bool, missing: int, before: list[int]) -> list[str]:
    """What ``confine`` made hold, in words."""
    skipped = f" ({missing} missing path(s) skipped)" if missing else ""
    lines = [f"reads: only beneath the allowed paths (Landlock ABI {abi}){skipped}",
             f"writes: only beneath the writable paths (Landlock ABI {abi})"]
    if network:
        lines.append("TCP: NOT restricted: network=True")
    elif abi >= _ABI_NET:
        lines.append("TCP: no bind or connect (Landlock)")
    else:
        lines.append(f"TCP: NOT restricted: Landlock ABI {abi} has no network rules (needs {_ABI_NET})")
    lines.append("UDP and Unix-socket connects: NOT restricted by Landlock (isolate_network covers UDP)")
    if abi >= _ABI_SCOPE:
        lines.append("signals: only to its own processes (Landlock scope)")
        lines.append("abstract Unix sockets: only its own (Landlock scope)")
    else:
        lines.append(f"signals: NOT restricted: Landlock ABI {abi} has no scopes (needs {_ABI_SCOPE})")
    if before:  # e.g. MAX's compile pool (a forkserver), if an eager op ran before confine
        lines.append(f"child processes started before: NOT confined: pid(s) {', '.join(map(str, before))}")
    return lines


def isolate_network() -> str:
    """Moves this process into a network namespace of its own: no interface but a loopback
    that is down, so no socket reaches anything (TCP, UDP, or an abstract Unix socket outside).

    Call it before any thread exists (before importing MAX, which starts thread pools): the new
    namespace is the calling thread's and its later children's, not that of threads already
    running, and the unprivileged fallback (a user namespace) refuses a threaded process.
    Returns a line saying what holds."""
    if not sys.platform.startswith("linux"):
        return "network: NOT isolated: network namespaces are Linux only"
    libc = _libc()
    threads = _thread_count()
    errors = []
    for flags, how in ((_CLONE_NEWNET, ""), (_CLONE_NEWUSER | _CLONE_NEWNET, ", inside a user namespace")):
        if libc.unshare(ctypes.c_int(flags)) == 0:
            line = f"network: own empty network namespace (no interfaces but a down loopback{how})"
            if threads > 1:
                line += f"; NOT for the {threads - 1} thread(s) that already existed"
            return line
        errors.append(os.strerror(ctypes.get_errno()))
    return f"network: NOT isolated: unshare failed ({'; '.join(errors)})"


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


# --- What a worker may read ------------------------------------------------------------------

# Distributions a worker may never read, even if MAX (without extras) required them: the
# checking libraries and the ones that hold a reference GPT-2. (MAX 26.7's own requirements pull
# in none of them: max-core, mojo-compiler, their libs, click, exceptiongroup, msgspec, numpy,
# psutil, rich (markdown-it-py, mdurl, pygments), taskgroup, typing-extensions.)
WORKER_FORBIDDEN = ("torch", "transformers", "huggingface-hub", "safetensors", "tokenizers",
                    "pytest", "pluggy")

# Folders of shared libraries, read-only: their entries, but python3*/ (a system Python's
# packages, torch among them maybe, live there).
_SYSTEM_LIBS = ("/usr/lib", "/lib", "/lib64", "/usr/lib64")
# System files MAX and Python read; not all of /etc (it holds /etc/shadow, and a worker may run
# as root).
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/timezone", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts",
        "/etc/host.conf", "/etc/gai.conf", "/etc/os-release", "/etc/lsb-release",
        "/etc/mime.types", "/etc/OpenCL", "/etc/vulkan", "/etc/nvidia")
# Device files a worker reads; not all of /dev (root could read a disk raw).
_DEV_READ = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_DEV_WRITE = ("/dev/null", "/dev/full")
# GPU device nodes (NVIDIA, AMD), opened read-write by the drivers' user-space libraries.
_GPU_NODES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requires: list[str] | None) -> list[str]:
    """The distributions ``requires`` names when no extra is asked for (markers evaluated with
    ``extra`` unset; without ``packaging``, a requirement whose marker names an extra is
    dropped and the other markers are taken as true)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        Requirement = None
    names = []
    for line in requires or []:
        if Requirement is not None:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                names.append(req.name)
        else:
            spec, _, marker = line.partition(";")
            if "extra" not in marker:
                names.append(re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1))
    return names


def worker_distributions(root: str = "max", *, also=("numpy",)) -> list[str]:
    """The installed distributions a worker may read: ``root`` and what it requires without
    extras, transitively, plus ``also``; never those in ``WORKER_FORBIDDEN``. Canonical names."""
    import importlib.metadata as md

    forbidden = {_canonical(n) for n in WORKER_FORBIDDEN}
    todo, seen = [_canonical(root), *(_canonical(a) for a in also)], set()
    while todo:
        name = todo.pop()
        if name in seen or name in forbidden:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        todo.extend(_canonical(n) for n in _requirement_names(dist.requires))
    return sorted(seen)


def _distribution_paths(allowed: Iterable[str]) -> list[str]:
    """The top-level site-packages paths of the ``allowed`` distributions (each package folder,
    module file, its .dist-info). A top-level folder that another, not allowed, distribution
    also has files in (a namespace package, site-packages' __pycache__) is not given whole:
    the allowed one's paths one level down are, and so on."""
    import importlib.metadata as md

    allowed = set(allowed)
    own, others = [], set()
    for dist in md.distributions():
        files = [os.path.normpath(dist.locate_file(f)) for f in dist.files or ()
                 if f.parts and f.parts[0] != ".."]  # '..': scripts and data outside site-packages
        if _canonical(dist.metadata["Name"] or "") in allowed:
            own.append((os.path.normpath(dist.locate_file("")), files))
        else:
            others.update(_prefixes(files))
    paths = set()
    for site, files in own:
        for f in files:
            # the shortest path from site-packages down to f that holds no other distribution's file
            parts = os.path.relpath(f, site).split(os.sep)
            for i in range(1, len(parts) + 1):
                candidate = os.path.join(site, *parts[:i])
                if candidate not in others:
                    paths.add(candidate)
                    break
    return sorted(paths)


def _prefixes(files: Iterable[str]) -> set[str]:
    """Every file and folder on the way to each of ``files`` (the file itself included)."""
    out = set()
    for f in files:
        while f not in out and f not in ("/", ""):
            out.add(f)
            f = os.path.dirname(f)
    return out


def _python_runtime() -> list[str]:
    """The interpreter, its shared library, the standard library (without its site-packages)
    and the venv's pyvenv.cfg."""
    import sysconfig

    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    paths = {os.path.realpath(sys.executable), os.path.join(sys.prefix, "pyvenv.cfg")}
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library:
        paths.add(os.path.realpath(os.path.join(libdir, library)))
    for key in ("stdlib", "platstdlib"):
        paths.update(_entries_except(sysconfig.get_path(key, vars=base), ("site-packages", "dist-packages")))
    return sorted(paths)


def _entries_except(folder: str, skip) -> list[str]:
    """The entries of ``folder`` but those named in ``skip`` (so that a folder's site-packages,
    where torch may be installed, is not given with it)."""
    folder = os.path.realpath(folder)
    try:
        return [os.path.join(folder, e) for e in os.listdir(folder) if e not in skip]
    except OSError:
        return []


def _system_paths() -> list[str]:
    """Shared libraries (not the system Pythons' package folders beneath them), the few /etc
    files the loader and libc read, /proc, /sys, and the harmless device files."""
    paths = set()
    for folder in _SYSTEM_LIBS:
        paths.update(p for p in _entries_except(folder, ()) if not re.match(r"python\d", os.path.basename(p)))
    paths.update(p for p in (*_ETC, "/proc", "/sys", *_DEV_READ) if os.path.exists(p))
    return sorted(paths)


def _step_files(workspace: str, step: int) -> list[str]:
    """The graded step's file and the solutions before it, with both packages' __init__.py."""
    ws = os.path.realpath(workspace)
    return [os.path.join(ws, "steps", "__init__.py"), os.path.join(ws, "steps", f"step_{step:02d}.py"),
            os.path.join(ws, "solutions", "__init__.py"),
            *(os.path.join(ws, "solutions", f"solution_{n:02d}.py") for n in range(1, step))]


def worker_reads(workspace, step: int, *, extra=()) -> list[str]:
    """The read allow-list (for ``confine``) of a worker checking step ``step`` in ``workspace``
    (a copy of the course: steps/, solutions/, gpt2course/, tests/): the Python runtime; shared
    libraries, /proc, /sys and a few /etc and /dev files; NumPy, MAX and what MAX requires
    (``worker_distributions``); the step's file and the solutions before it; and ``extra``.

    Not in it, nor beneath anything in it: torch, transformers, huggingface_hub, safetensors,
    tokenizers, pytest, pluggy; the workspace's gpt2course/ and tests/; other workspaces; the
    step's own solution and later ones. MAX's cache must be writable: it is in ``worker_writes``,
    not here. The import system must list steps/ and solutions/: ``worker_listable``.

    Python's import caches, filled before ``confine``, still list what may no longer be read:
    importing such a module afterwards raises PermissionError, not ModuleNotFoundError (so
    ``try: import attr / except ImportError`` fails); the worker's import refuser turns the
    forbidden names into ModuleNotFoundError first. A new Python cannot start under these rules
    (the standard library's folder is not listable), so no child interpreter either."""
    paths = [*_python_runtime(), *_system_paths(), *_distribution_paths(worker_distributions()),
             *_step_files(workspace, step), *(os.fspath(p) for p in extra)]
    return list(dict.fromkeys(paths))


def worker_listable(workspace) -> list[str]:
    """Folders a worker may list but not read (``confine``'s ``listable``): the import system
    lists steps/ and solutions/ to find a step's modules. The workspace itself is not listable:
    import the ``steps`` and ``solutions`` packages before ``confine``, their modules after."""
    ws = os.path.realpath(workspace)
    return [os.path.join(ws, "steps"), os.path.join(ws, "solutions")]


def worker_writes(scratch=()) -> list[str]:
    """The read-write list (for ``confine``) of a worker: ``scratch``; MAX's cache (MAX writes
    compiled kernels there, and reads them back, lazily); /dev/null and /dev/full; the GPU
    device nodes (the drivers open them read-write)."""
    from gpt2course.check.execute import max_cache_dir

    gpus = sorted(p for pattern in _GPU_NODES for p in glob.glob(pattern))
    paths = [*(os.fspath(s) for s in scratch), os.fspath(max_cache_dir()), *_DEV_WRITE, *gpus]
    return list(dict.fromkeys(paths))


def worker_spec(workspace, step: int, scratch=(), *, extra=()) -> dict[str, list[str]]:
    """``confine``'s arguments for a worker, JSON-ready: ``{"read", "write", "listable"}``."""
    return {"read": worker_reads(workspace, step, extra=extra), "write": worker_writes(scratch),
            "listable": worker_listable(workspace)}


# --- Command line ----------------------------------------------------------------------------

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
            "network namespace: " + _probe_network()]


def _probe_network() -> str:
    """Whether ``isolate_network`` works here: tried in a forked child."""
    if not hasattr(os, "fork"):
        return "no (no fork on this platform)"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try it, report the line, exit without cleanup
        try:
            os.close(r)
            os.write(w, isolate_network().encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        line = f.read().decode()
    os.waitpid(pid, 0)
    return ("yes: " if "NOT" not in line and line else "no: ") + line.removeprefix("network: ")


def sandbox_main(argv: list[str]) -> int:
    """``sandbox [--write DIR]... [--memory BYTES] [--no-landlock] -- COMMAND...``: limit, fence, exec."""
    import argparse
    import resource  # Unix only: imported here so learners' checks never need it

    if "--" not in argv:
        print("usage: python -m gpt2course.grade.sandbox [--write DIR]... [--memory BYTES] -- CMD...",
              file=sys.stderr)
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m gpt2course.grade.sandbox")
    p.add_argument("--write", action="append", default=[])
    p.add_argument("--memory", type=int, default=0)
    p.add_argument("--no-landlock", action="store_true")
    opts = p.parse_args(argv[:cut])
    command = argv[cut + 1:]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if opts.memory > 0:
        # RLIMIT_DATA, not RLIMIT_AS: MAX and torch reserve far more address space than they use.
        resource.setrlimit(resource.RLIMIT_DATA, (opts.memory, opts.memory))
    if not opts.no_landlock:
        restrict_writes(opts.write)
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
