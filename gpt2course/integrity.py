"""Defences for graded runs (`python -m gpt2course grade`): a student's code must not decide its own grade.

A graded check runs the student's file inside the same Python process as the checks,
so nothing here is a proof; it closes the simple ways a submission could pass without
solving the step, and makes the rest leave traces:

* ``Guard`` snapshots, before any student code is imported, the objects that decide an
  outcome -- every function, class and module binding of the checking library
  (gpt2course.*, the tests), of pytest/pluggy, and of the libraries that compute the
  reference values (numpy, torch, transformers, ...), the code objects of those
  functions, and pytest's registered plugins and hook implementations -- and
  ``verify()`` lists whatever no longer matches. The plugin verifies after every call
  into student code and at the end.
* ``WriteFence`` is an audit hook (PEP 578; it cannot be removed once added) that
  refuses and records Python-level writes outside the check's workspace.
* ``sign``/``signature_ok``: the grader hands the check process a fresh random key on
  stdin; the plugin signs its JSON report with it (HMAC-SHA256), so a report written
  or edited by student code (or none at all, after ``os._exit``) is rejected.
* ``sandbox`` (``python -m gpt2course.integrity sandbox ...``) is the wrapper the grader
  starts each check under: resource limits, then, where the kernel has Landlock, an
  OS-level rule that the whole process tree may write only inside the workspace and
  MAX's kernel cache and may not signal processes outside it; then it execs the check.

Known limits (README, "Grading"): code that reads the key out of its own process's
memory (gc, frames) can forge a report; a patch that undoes itself before the next
verification, made from a thread or a finalizer, is not seen; without Landlock
(macOS, old kernels) native code and child processes can write outside the workspace,
which the grader then notices only by comparing file hashes.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import hmac
import json
import os
import sys
import threading
import types

# Modules whose bindings decide outcomes: "name" is that module, "name.*" it and its submodules.
# The checking library and the tests; pytest and pluggy, which turn results into outcomes; and
# the parts of numpy, torch and transformers that compute and compare the reference values.
# (Whole torch/transformers are not guarded: they rebind some of their own functions while
# running, e.g. torch.manual_seed, which would read as tampering.)
GUARDED = (
    "gpt2course.*", "_pytest.*", "pytest", "pluggy.*", "builtins", "numpy", "dataclasses", "json.*",
    "hmac", "hashlib", "torch.nn.functional", "torch.nn.modules.*", "torch._tensor",
    "transformers.models.gpt2.*", "transformers.masking_utils", "transformers.configuration_utils",
    "transformers.modeling_utils", "transformers.pytorch_utils", "safetensors.*",
)
# Modules whose plain data (constants, lists of fields, tolerances) is fingerprinted too.
STRICT = ("gpt2course.*",)
# Bindings that change legitimately while checks run.
IGNORED_NAMES = frozenset({"__warningregistry__", "__builtins__", "__loader__", "__spec__", "__cached__",
                           "_", "__file__", "__path__", "__package__", "__name__", "__doc__"})
_MISSING = object()


def _is_guarded(name: str, patterns) -> bool:
    for p in patterns:
        if p.endswith(".*"):
            if name == p[:-2] or name.startswith(p[:-1]):
                return True
        elif name == p:
            return True
    return False


def _fingerprint(value) -> str | None:
    if type(value) in (int, float, str, bytes, bool, type(None), tuple, list, dict, set, frozenset):
        try:
            text = repr(value)
        except Exception:
            return None
        return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return None


def _functions_of(value):
    """The plain functions behind a binding: itself, a static/class method's, a property's,
    an lru_cache's or a functools.wraps wrapper's. Reads only __dict__ slots: no getattr, so
    no code of a guarded library runs while the guard looks."""
    kind = type(value)
    if issubclass(kind, types.FunctionType):
        yield value
        wrapped = value.__dict__.get("__wrapped__")
        if type(wrapped) is types.FunctionType and wrapped is not value:
            yield wrapped
    elif issubclass(kind, (staticmethod, classmethod)):
        if type(value.__func__) is types.FunctionType:
            yield value.__func__
    elif issubclass(kind, property):
        for f in (value.fget, value.fset, value.fdel):
            if type(f) is types.FunctionType:
                yield f
    elif issubclass(kind, functools._lru_cache_wrapper):
        wrapped = value.__dict__.get("__wrapped__")
        if type(wrapped) is types.FunctionType:
            yield wrapped
    elif issubclass(kind, functools.partial):
        if type(value.func) is types.FunctionType:
            yield value.func


_DECIDING = (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType, staticmethod,
             classmethod, property, types.MethodType, functools.partial, functools._lru_cache_wrapper)


def _decides(value) -> bool:
    """Bindings worth guarding in third-party modules: code, classes, modules (not data)."""
    return issubclass(type(value), _DECIDING) or callable(value)


class Guard:
    """Snapshot of what decides a check's outcome; ``verify()`` names what changed since."""

    def __init__(self, prefixes=GUARDED, strict=STRICT, extra_modules=()):
        self.prefixes = tuple(prefixes)
        self.strict = tuple(strict)
        self.extra = tuple(extra_modules)
        self.modules: list = []      # (name, module, {key: value}, {key: fingerprint}, keys or None)
        self.functions: dict = {}    # id -> (label, fn, code, defaults, kwdefaults, closure contents)
        self.classes: dict = {}      # id -> (label, cls, {key: value})
        self.plugins = None
        self.hooks = None
        self.pluginmanager = None
        self.reported: set[str] = set()

    # -- snapshot ---------------------------------------------------------------------------
    def snapshot(self, pluginmanager=None) -> "Guard":
        for name, module in list(sys.modules.items()):
            if not issubclass(type(module), types.ModuleType):
                continue
            if not (_is_guarded(name, self.prefixes) or name in self.extra):
                continue
            strict = _is_guarded(name, self.strict) or name in self.extra
            try:
                items = list(vars(module).items())
            except TypeError:
                continue
            entries, prints = {}, {}
            for key, value in items:
                if key in IGNORED_NAMES:
                    continue
                if strict or _decides(value):
                    entries[key] = value
                if strict:
                    fp = _fingerprint(value)
                    if fp is not None:
                        prints[key] = fp
                self._add_code(f"{name}.{key}", value, name, strict)
            keys = frozenset(k for k, _ in items) if strict else None
            self.modules.append((name, module, entries, prints, keys))
        if pluginmanager is not None:
            self.pluginmanager = pluginmanager
            self.plugins = self._plugins(pluginmanager)
            self.hooks = self._hooks(pluginmanager)
        return self

    def _add_code(self, label, value, module_name, strict):
        for fn in _functions_of(value):
            self._add_function(label, fn, strict)
        if issubclass(type(value), type) and id(value) not in self.classes:
            try:
                attrs = dict(vars(value))
            except TypeError:
                return
            if attrs.get("__module__") != module_name:
                return  # guarded where it is defined, not where it is imported
            keep = {}
            for key, attr in attrs.items():
                if key in ("__dict__", "__weakref__", "__doc__", "_abc_impl", "__abstractmethods__",
                           "__parameters__", "__annotations__"):
                    continue
                if _decides(attr):
                    keep[key] = attr
                    for fn in _functions_of(attr):
                        self._add_function(f"{label}.{key}", fn, strict)
            self.classes[id(value)] = (label, value, keep)

    def _add_function(self, label, fn, strict):
        if id(fn) in self.functions:
            return
        closure = None
        if strict and fn.__closure__:
            closure = tuple(self._cell(c) for c in fn.__closure__)
        self.functions[id(fn)] = (label, fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__, closure)

    @staticmethod
    def _cell(cell):
        try:
            return cell.cell_contents
        except ValueError:
            return _MISSING

    @staticmethod
    def _plugins(pm):
        return [(name, plugin) for name, plugin in pm.list_name_plugin()]

    @staticmethod
    def _hooks(pm):
        out = {}
        for name in dir(pm.hook):
            caller = getattr(pm.hook, name, None)
            get = getattr(caller, "get_hookimpls", None)
            if get is None:
                continue
            out[name] = [(impl.plugin_name, impl.function, bool(impl.wrapper or impl.hookwrapper))
                         for impl in get()]
        return out

    # -- verify -----------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """What changed since the snapshot (each problem is reported once)."""
        problems = []
        for name, module, entries, prints, keys in self.modules:
            if sys.modules.get(name, module) is not module:
                problems.append(f"sys.modules[{name!r}] was replaced")
            d = vars(module)
            if keys is not None:  # a new global in the checking code can shadow a builtin it calls
                problems.extend(f"{name}.{key} was added" for key in d.keys() - keys - IGNORED_NAMES)
            for key, value in entries.items():
                if d.get(key, _MISSING) is not value:
                    problems.append(f"{name}.{key} was replaced or deleted")
            for key, fp in prints.items():
                if _fingerprint(d.get(key, _MISSING)) != fp:
                    problems.append(f"{name}.{key} was modified")
        for label, fn, code, defaults, kwdefaults, closure in self.functions.values():
            if fn.__code__ is not code:
                problems.append(f"{label}: its code was replaced")
            if fn.__defaults__ is not defaults or fn.__kwdefaults__ is not kwdefaults:
                problems.append(f"{label}: its default arguments were replaced")
            if closure is not None and (fn.__closure__ is None or
                                        any(self._cell(c) is not v for c, v in zip(fn.__closure__, closure))):
                problems.append(f"{label}: its closure was modified")
        for label, cls, attrs in self.classes.values():
            d = cls.__dict__
            for key, value in attrs.items():
                if d.get(key, _MISSING) is not value:
                    problems.append(f"{label}.{key} was replaced or deleted")
        if self.pluginmanager is not None:
            if self._plugins(self.pluginmanager) != self.plugins:
                problems.append("pytest's registered plugins changed")
            hooks = self._hooks(self.pluginmanager)
            for name, impls in hooks.items():
                if impls != self.hooks.get(name, []):
                    problems.append(f"pytest hook {name} implementations changed")
        new = [p for p in problems if p not in self.reported]
        self.reported.update(new)
        return new


# -- writes outside the workspace --------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # event -> indexes of (path, dir_fd) pairs among its arguments
    "os.remove": [(0, 1)], "os.rmdir": [(0, 1)], "os.mkdir": [(0, 2)], "os.rename": [(0, 2), (1, 3)],
    "os.chmod": [(0, 2)], "os.chown": [(0, 3)], "os.link": [(1, 3)], "os.symlink": [(1, 2)],
    "os.utime": [(0, 3)], "os.truncate": [(0, None)], "os.mkfifo": [(0, 2)], "os.mknod": [(0, 3)],
    "shutil.rmtree": [(0, None)], "shutil.copyfile": [(1, None)], "shutil.copytree": [(1, None)],
    "shutil.move": [(1, None)], "os.chflags": [(0, None)], "os.lchflags": [(0, None)],
}


class WriteFence:
    """Audit hook: Python-level writes outside ``roots``, and signals to processes outside this
    process's session (the grader, other students' checks), raise PermissionError and are recorded."""

    def __init__(self, roots):
        self.roots = [os.path.realpath(r) for r in roots]
        self.violations: list[str] = []
        self._busy = threading.local()

    def allowed(self, path) -> bool:
        real = os.path.realpath(path)
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    @staticmethod
    def _resolve(path, dir_fd):
        if isinstance(path, int):
            return None
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
        if not os.path.isabs(path) and isinstance(dir_fd, int) and dir_fd >= 0:
            try:
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                pass
        return os.path.abspath(path)

    def _signal(self, event, args):
        try:
            target, sig = int(args[0]), int(args[1])
        except (IndexError, TypeError, ValueError):
            return
        if sig == 0 or target in (0, os.getpid()):
            return
        try:
            if os.getsid(abs(target)) == os.getsid(0):
                return
        except OSError:
            return  # no such process: the call fails by itself
        self.violations.append(f"{event} {target} (signal {sig})")
        raise PermissionError(errno.EPERM, "grading: signalling processes outside the check is refused")

    def __call__(self, event, args):
        if event in ("os.kill", "os.killpg"):
            return self._signal(event, args)
        if event == "open":
            if len(args) < 3 or not isinstance(args[2], int) or not args[2] & _WRITE_FLAGS:
                return
            targets = [(args[0], None)]
        elif event in _PATH_EVENTS:
            targets = [(args[i] if i < len(args) else None,
                        args[j] if j is not None and j < len(args) else None) for i, j in _PATH_EVENTS[event]]
        else:
            return
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            for path, dir_fd in targets:
                resolved = self._resolve(path, dir_fd)
                if resolved is None or self.allowed(resolved):
                    continue
                if event == "os.mkdir" and os.path.isdir(resolved):
                    continue  # mkdir(exist_ok=True) of a folder that is there: changes nothing
                if "__pycache__" in resolved.split(os.sep):
                    # bytecode caching: importlib ignores the error; not the student's doing
                    raise PermissionError(errno.EACCES, "grading: writes outside the workspace are refused",
                                          resolved)
                self.violations.append(f"{event} {resolved}")
                raise PermissionError(errno.EACCES, "grading: writes outside the workspace are refused",
                                      resolved)
        finally:
            self._busy.on = False


def install_write_fence(roots) -> WriteFence:
    fence = WriteFence(roots)
    sys.addaudithook(fence)
    return fence


# -- signed reports ------------------------------------------------------------------------------

def canonical(report: dict) -> bytes:
    body = {k: v for k, v in report.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signer(key_hex: str):
    """An HMAC object holding the key (the key bytes are not kept elsewhere)."""
    return hmac.new(bytes.fromhex(key_hex), digestmod=hashlib.sha256)


def sign(mac, report: dict) -> str:
    m = mac.copy()
    m.update(canonical(report))
    return m.hexdigest()


def signature_ok(key_hex: str, report: dict) -> bool:
    sig = report.get("signature")
    if not isinstance(sig, str):
        return False
    expected = hmac.new(bytes.fromhex(key_hex), canonical(report), hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, expected)


# -- the sandbox the grader starts each check under ------------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and arm64
_PR_SET_NO_NEW_PRIVS = 38
_FS_WRITE_FILE, _FS_REMOVE_DIR, _FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """Landlock's ABI version on this kernel (0: not available)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        version = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                               ctypes.c_uint32(1))
        return max(int(version), 0)
    except Exception:
        return 0


def restrict_writes(paths) -> int:
    """Landlock: from now on this process and its children write only beneath ``paths``.

    Returns the ABI used (0: Landlock unavailable, nothing restricted)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    handled = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(attr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in paths:
            if os.path.isdir(path):
                allowed = handled
            elif os.path.exists(path):  # a file (/dev/null): only the rights a file can have
                allowed = handled & (_FS_WRITE_FILE | _FS_TRUNCATE)
            else:
                continue
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed, pfd)
                if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(fd), ctypes.c_int(1),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(pfd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return abi


def sandbox_main(argv: list[str]) -> int:
    """``sandbox [--write DIR]... [--memory BYTES] [--no-landlock] -- COMMAND...``: limit, fence, exec."""
    import argparse
    import resource  # Unix only: imported here so learners' checks never need it

    if "--" not in argv:
        print("usage: python -m gpt2course.integrity sandbox [--write DIR]... [--memory BYTES] -- CMD...",
              file=sys.stderr)
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="gpt2course.integrity sandbox")
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
    print("usage: python -m gpt2course.integrity sandbox|landlock-abi ...", file=sys.stderr)
    sys.exit(2)
