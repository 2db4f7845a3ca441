"""The tamper guard of a graded check: the objects that decide an outcome must not change.

``Guard`` snapshots, before any student code is imported, the objects that decide an
outcome -- every function, class and module binding of the checking library
(gpt2course.*, the tests), of pytest/pluggy, and of the libraries that compute the
reference values (numpy, torch, transformers, ...), the code objects of those
functions, and pytest's registered plugins and hook implementations -- and
``verify()`` lists whatever no longer matches. ``gpt2course.grade.plugin`` verifies after
every call into student code and at the end. A patch made and undone between two
verifications (from a thread or a finalizer) is not seen: docs/grading.md lists the limits.
"""

from __future__ import annotations

import functools
import hashlib
import sys
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
