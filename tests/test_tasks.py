"""pixi.toml is the learners' front door and the Makefile its twin without pixi:
every pixi task has a make target that runs the same command, and both install the same pins."""

import ast
import re
import tomllib

from gpt2course import course
from gpt2course.course import ROOT

PIXI = tomllib.loads((ROOT / "pixi.toml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()


def make_targets() -> set[str]:
    targets = set(re.findall(r"^([A-Za-z0-9_-]+):", MAKEFILE, re.M))
    steps = re.search(r"^STEPS := (.*)$", MAKEFILE, re.M).group(1).split()
    if re.search(r"^\$\(addprefix s,\$\(STEPS\)\): s%:", MAKEFILE, re.M):
        targets |= {f"s{n}" for n in steps}
    return targets


def make_recipe(target: str) -> str:
    if re.fullmatch(r"s\d\d", target):
        m = re.search(r"^\$\(addprefix s,\$\(STEPS\)\): s%:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
        return m.group(1).replace("$*", target[1:])
    m = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", MAKEFILE, re.M)
    if not m:
        return ""
    if m.group(2):
        return m.group(2)
    # A target without a recipe (warm: $(WARMED)) runs its prerequisites' recipes.
    return "".join(make_recipe(dep) for dep in m.group(1).split())


def normalize(cmd: str) -> str:
    """The command both runners execute, without the interpreter path and make's variables."""
    cmd = cmd.replace("@", "").replace("$(VENV)/bin/", "")
    cmd = re.sub(r"\$\(\w*PY\)", "python", cmd)
    cmd = re.sub(r"\$\(\w+\)", "", cmd)
    cmd = re.sub(r"--\w+(-\w+)*\s*(?=\s|$)", "", cmd)
    cmd = re.sub(r"--(target|device)\s+", "", cmd)
    return " ".join(cmd.split())


def test_every_pixi_task_has_a_make_twin():
    missing = sorted(set(PIXI["tasks"]) - make_targets())
    assert not missing, f"pixi tasks without a make target: {missing}"


def test_twins_run_the_same_command():
    for task, cmd in PIXI["tasks"].items():
        recipe = normalize(make_recipe(task))
        assert normalize(cmd) in recipe, f"{task}: pixi runs {cmd!r}, make runs {recipe!r}"


def test_a_task_per_step():
    for n in course.numbers():
        assert f"s{n:02d}" in PIXI["tasks"], f"pixi.toml has no s{n:02d}"
        assert f"s{n:02d}" in make_targets(), f"Makefile has no s{n:02d}"


def test_same_pins():
    pins = {name: "==" + version for name, version in course.pins().items()}
    assert pins, "requirements.txt lists no pins"
    pixi = {k.lower(): v["version"] if isinstance(v, dict) else v for k, v in PIXI["pypi-dependencies"].items()}
    assert pins == pixi
    extras = {k.lower(): sorted(v.get("extras", [])) for k, v in PIXI["pypi-dependencies"].items()
              if isinstance(v, dict)}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)\[([^\]]*)\]==", line)
        if m:
            assert extras.get(m.group(1).lower()) == sorted(e.strip() for e in m.group(2).split(",")), \
                f"{m.group(1)}: requirements.txt and pixi.toml ask for different extras"


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    # sNN stands for any step; every step's task is checked by test_a_task_per_step.
    for target in set(re.findall(r"`make ([A-Za-z0-9-]+)", readme)) - {"sNN"}:
        assert target in make_targets(), f"README mentions `make {target}`, which does not exist"
    for task in set(re.findall(r"`pixi run ([A-Za-z0-9-]+)", readme)) - {"sNN"}:
        assert task in PIXI["tasks"], f"README mentions `pixi run {task}`, which does not exist"


def test_course_knows_exactly_the_tasks_make_and_pixi_offer():
    """course.command spells only real tasks, and every task is one course.command knows."""
    steps = {f"s{n:02d}" for n in course.numbers()}
    assert set(course.TASKS) == make_targets() - steps - {"help"}
    assert set(course.TASKS) - set(course.MAKE_ONLY) == set(PIXI["tasks"]) - steps


def test_command_spelling():
    assert course.command("check", 7) == "`make s07` (pixi run s07)"
    assert course.command("hint", 7) == "`make hint STEP=07` (pixi run hint s07)"
    assert course.command("hint", 7, args="--all") == "`make hint STEP=07 ARGS=--all` (pixi run hint s07 --all)"
    assert course.command("check", 3, target="solutions") == \
        "`make s03 TARGET=solutions` (pixi run s03 --target solutions)"
    assert course.command("gpt2", args=["--prompt", "Hi there"]) == \
        "`make gpt2 ARGS='--prompt '\"'\"'Hi there'\"'\"''` (pixi run gpt2 --prompt 'Hi there')"
    assert course.command("setup") == "`make setup`"
    try:
        course.command("nonsense")
    except ValueError:
        pass
    else:
        raise AssertionError("course.command accepted a task that does not exist")


def test_no_command_is_spelled_by_hand():
    """Every make/pixi command the package prints comes from course.command (one spelling)."""
    tasks = "|".join(re.escape(t) for t in sorted(course.TASKS, key=len, reverse=True))
    pattern = re.compile(rf"\bmake (s\d\d|{tasks}|sNN)\b|\bpixi run [a-z0-9]")
    offenders = []
    for path in sorted((ROOT / "gpt2course").rglob("*.py")):
        if path.name == "course.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and pattern.search(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:100]}")
    assert not offenders, "commands spelled by hand (use course.command):\n" + "\n".join(offenders)


def test_each_make_target_is_defined_once():
    """make keeps the last recipe of a target defined twice and only warns: one definition each."""
    names = re.findall(r"^([A-Za-z0-9_-]+):(?!=)", MAKEFILE, re.M)
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"defined more than once in the Makefile: {twice}"
