"""Skeletons never drift from solutions: each steps/step_NN.py is exactly what
gpt2course.skeleton makes of solutions/solution_NN.py, and the two agree outside the TODOs."""

import re

import pytest

from gpt2course import course, skeleton
from gpt2course.course import ROOT

STEPS = [n for n in course.numbers() if course.solution_file(n).exists()]


@pytest.mark.parametrize("step", STEPS, ids=lambda n: f"s{n:02d}")
def test_skeleton_is_generated_from_solution(step):
    committed = course.step_file(step).read_text()
    assert committed == skeleton.pristine_skeleton(step), (
        f"steps/step_{step:02d}.py differs from its solution outside the TODOs; "
        "run `python -m gpt2course.skeleton` after editing solutions/")


@pytest.mark.parametrize("step", STEPS, ids=lambda n: f"s{n:02d}")
def test_same_outside_todos(step):
    sol = course.solution_file(step).read_text()
    stp = course.step_file(step).read_text()
    assert skeleton.outside_todos(sol) == skeleton.outside_todos(stp)


@pytest.mark.parametrize("step", STEPS, ids=lambda n: f"s{n:02d}")
def test_todos_numbered_with_hints(step):
    text = course.solution_file(step).read_text()
    numbers = skeleton.todo_numbers(text)
    assert numbers == list(range(1, len(numbers) + 1)), f"TODOs must be numbered 1..n in order: {numbers}"
    for n in numbers:
        block = re.search(rf"# TODO {n}:(.*?)#>>> TODO {n}\n", text, re.S)
        assert block, f"TODO {n} needs a '# TODO {n}: ...' comment right above its fence"
        assert "Hint:" in block.group(1), f"TODO {n} needs a '# Hint: ...' line"


def test_manifest_lists_every_step():
    files = sorted(int(p.stem.split("_")[1]) for p in (ROOT / "solutions").glob("solution_*.py"))
    assert files == course.numbers()
    for n in files:
        info = course.step(n)
        assert info["title"] and len(info["hints"]) >= 2, f"step {n}: a title and 2+ hints"


def test_skeleton_round_trip_rejects_broken_fences():
    with pytest.raises(ValueError):
        skeleton.regions("#>>> TODO 1\nx = 1\n")
    with pytest.raises(ValueError):
        skeleton.regions("#<<< TODO 1\n")
