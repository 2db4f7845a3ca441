"""The gate of ``gpt2 --model steps``: the learner's model runs only when their steps 10-12 are
done and pass their checks. Each check goes through ``run_check`` with the one verdict cache,
so a step whose file, check and checking code did not change is not checked again."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpt2course import course
from gpt2course.check import learner
from gpt2course.check.command import run_check
from gpt2course.errors import CheckFailure
from gpt2course.skeleton import open_todos
from gpt2course.state import read_text

GATE_STEPS = (10, 11, 12)


def gate_learner_steps(target: str = course.DEFAULT_TARGET, *, device: str | None = None,
                       run_checks: bool = True, quiet: bool = False,
                       steps: Sequence[int] = GATE_STEPS) -> None:
    """Raises CheckFailure naming the first of ``steps`` that is not done or does not pass.

    "Done": the file imports and no TODO still raises NotImplementedError.
    "Passes": its check passes on ``device``.
    """
    for step in steps:
        path = course.step_file(step, target)
        learner.load(step, target)  # missing file, syntax or import error -> CheckFailure
        todos = open_todos(read_text(path) or "", step)
        if todos:
            raise CheckFailure(
                f"--model steps needs your steps 10-12 to pass; step {step:02d} is not done yet: "
                f"TODO {todos[0]} in {course.display(path)}",
                f"finish it and run {course.command('check', step)}, or run the reference with "
                "--model solutions")
    if not run_checks:
        return
    for step in steps:
        if not course.test_file(step).exists():
            continue
        if not quiet:
            print(f"checking your step {step:02d} ({course.display(course.step_file(step, target))}) "
                  "before running it (remembered until the file changes) ...", file=sys.stderr, flush=True)
        result = run_check(step, target, device, show=False, use_cache=True)
        if result["status"] != "passed":
            message = ((result.get("first_failure") or {}).get("message") or "").strip().splitlines()
            raise CheckFailure(
                f"--model steps needs your steps 10-12 to pass; step {step:02d} does not pass its "
                f"check yet" + (f": {message[0]}" if message else ""),
                f"run {course.command('check', step)} for the details, or run the reference with "
                "--model solutions")
