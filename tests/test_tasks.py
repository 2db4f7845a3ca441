"""pixi.toml is the learners' front door and the Makefile its twin without pixi:
every pixi task has a make target that runs the same command, and both install the same pins."""

import re
import tomllib

from gpt2course import ROOT, manifest

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
    for n in manifest.numbers():
        assert f"s{n:02d}" in PIXI["tasks"], f"pixi.toml has no s{n:02d}"
        assert f"s{n:02d}" in make_targets(), f"Makefile has no s{n:02d}"


def test_same_pins():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = "==" + version
    pixi = {k.lower(): v for k, v in PIXI["pypi-dependencies"].items()}
    assert pins == pixi


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    # sNN stands for any step; every step's task is checked by test_a_task_per_step.
    for target in set(re.findall(r"`make ([A-Za-z0-9-]+)", readme)) - {"sNN"}:
        assert target in make_targets(), f"README mentions `make {target}`, which does not exist"
    for task in set(re.findall(r"`pixi run ([A-Za-z0-9-]+)", readme)) - {"sNN"}:
        assert task in PIXI["tasks"], f"README mentions `pixi run {task}`, which does not exist"
