"""Importing the code under test (a learner's step, a solution, a student's folder) safely.

Whatever goes wrong -- a missing file, a syntax error, an import that fails, a
TODO still raising NotImplementedError -- becomes a ``CheckFailure`` whose
message says where and what to do, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import traceback
from pathlib import Path

from gpt2course import course, skeleton
from gpt2course.course import display, step_file
from gpt2course.errors import CheckFailure
from gpt2course.check import max_errors


class TodoNotDone(CheckFailure):
    def __init__(self, step: int, todo: int, path: Path) -> None:
        self.step, self.todo = step, todo
        line = _todo_line(path, todo)
        where = f"{display(path)}{f' line {line}' if line else ''}"
        if todo == 1:
            msg = f"step {step:02d} not implemented yet: start at TODO 1 ({where})"
        else:
            msg = f"step {step:02d}: TODO {todo} is not done yet ({where}); the TODOs before it run"
        super().__init__(msg, f"read the comments above TODO {todo}; {course.command('hint', step)} shows more")


def _todo_line(path: Path, todo: int) -> int | None:
    try:
        return skeleton.todo_line(path.read_text(), todo)
    except (OSError, UnicodeDecodeError):
        return None


def learner_traceback(exc: BaseException, path: Path | None) -> str:
    """The traceback frames in the learner's own file (or the last frames if none are)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path.resolve()]
    chosen = mine or frames[-3:]
    return "".join(traceback.format_list(chosen)).rstrip()


@contextlib.contextmanager
def learner_errors(step: int, path: Path | None, doing: str):
    """Turns exceptions raised by learner code into CheckFailures that name the place."""
    try:
        yield
    except CheckFailure:
        raise
    except NotImplementedError as exc:
        raised = skeleton.raised_todo(str(exc))
        if raised and path is not None:
            raise TodoNotDone(step, raised[1], path) from None
        raise CheckFailure(f"step {step:02d}: {doing} raised NotImplementedError: {exc}",
                           "something is still a placeholder") from None
    except Exception as exc:
        tb = learner_traceback(exc, path)
        known = max_errors.explain(exc)
        if known is not None:
            what, todo = known
            raw = str(exc).strip()
            raise CheckFailure(f"step {step:02d}: {doing} failed inside MAX: {what}\n"
                               f"  where:\n{_indent(tb, 4)}\n"
                               f"  MAX said ({type(exc).__name__}):\n{_indent(raw[:3000], 4)}", todo) from None
        err = CheckFailure(f"step {step:02d}: {doing} raised {type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}\n"
                           f"  where:\n{_indent(tb, 4)}",
                           "the line above is where it broke; check the shapes going into it")
        raise err from None


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def load(step: int, target: str = course.DEFAULT_TARGET):
    """Imports the step's module from the target; raises CheckFailure with a clear message."""
    path = step_file(step, target)
    if not path.exists():
        raise CheckFailure(f"step {step:02d}: {display(path)} not found",
                           f"{course.command('reset', step)} restores the skeleton")
    name = f"steps.step_{step:02d}" if "solution_" not in path.name else f"solutions.solution_{step:02d}"
    for key in [k for k in sys.modules if k == name]:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        source = path.read_text()
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        del sys.modules[name]
        caret = " " * max((exc.offset or 1) - 1, 0) + "^"
        raise CheckFailure(
            f"step {step:02d}: syntax error in {display(path)} line {exc.lineno}: {exc.msg}\n"
            f"    {(exc.text or '').rstrip()}\n    {caret}",
            "fix the line above; Python stops reading the file there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckFailure(f"step {step:02d}: cannot read {display(path)}: {exc}") from None
    try:
        with learner_errors(step, path, f"importing {display(path)}"):
            try:
                exec(code, module.__dict__)
            except ModuleNotFoundError as exc:
                raise CheckFailure(
                    f"step {step:02d}: {display(path)} imports {exc.name!r}, which does not exist",
                    "check the spelling of the import; earlier steps are in solutions.solution_NN") from None
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def export(module, step: int, name: str, path: Path):
    """A name the step must define, with a clear message when it is absent."""
    if not hasattr(module, name):
        raise CheckFailure(f"step {step:02d}: {display(path)} does not define {name}",
                           f"keep the name {name} exactly as in the skeleton")
    return getattr(module, name)
