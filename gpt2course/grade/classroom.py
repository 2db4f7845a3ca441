"""GitHub Classroom: classroom/.github/workflows/classroom.yml, one graded test per step.

The workflow is ``classroom.yml.in`` beside this file with one block per step of the
manifest filled in. Each test runs the learners' own check (``python -m gpt2course check NN``);
stderr goes to stdout because the command grader fails a test that writes anything to stderr.

    python -m gpt2course.grade.classroom      rewrite classroom/.github/workflows/classroom.yml
"""

from __future__ import annotations

from pathlib import Path

from gpt2course import course

TEMPLATE = Path(__file__).with_name("classroom.yml.in")
WORKFLOW = course.ROOT / "classroom" / ".github" / "workflows" / "classroom.yml"

STEP_BLOCK = """\
      - name: step {nn} - {title}
        id: step-{nn}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: "step {nn} - {title}"
          command: bash -c "python -m gpt2course check {nn} 2>&1"
          timeout: {minutes}
          max-score: 1"""


def step_minutes(number: int) -> int:
    """The Classroom timeout of a step's test: the compiled steps (07 on) may compile a graph."""
    return 10 if number <= 6 else 30


def workflow() -> str:
    steps = course.numbers()
    blocks = [STEP_BLOCK.format(nn=f"{n:02d}", title=course.step(n)["title"].replace('"', "'"),
                                minutes=step_minutes(n)) for n in steps]
    results = [f'          STEP-{n:02d}_RESULTS: "${{{{steps.step-{n:02d}.outputs.result}}}}"' for n in steps]
    return (TEMPLATE.read_text()
            .replace("{{steps}}", "\n".join(blocks))
            .replace("{{results}}", "\n".join(results))
            .replace("{{runners}}", ",".join(f"step-{n:02d}" for n in steps)))


if __name__ == "__main__":
    WORKFLOW.parent.mkdir(parents=True, exist_ok=True)
    WORKFLOW.write_text(workflow())
    print(f"wrote {course.display(WORKFLOW)}")
