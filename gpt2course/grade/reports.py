"""The class's results: one dict, then one writer per format (grades.json, grades.csv,
summary.csv, junit.xml) and the terminal table."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from gpt2course import course
from gpt2course.grade.submissions import Submission
from gpt2course.grade.verdict import STATUSES, Verdict

MARKS = {"passed": "ok", "failed": "FAIL", "error": "ERR", "timeout": "TIME", "missing": "-"}


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def build_results(subs: list[Submission], steps: list[int], points: dict[int, float],
                  verdicts: dict[tuple[str, int], Verdict], meta: dict, owned: set | None = None) -> dict:
    """Per student and step: the verdict and its points; each student's total, the maximum and
    each step's counts. ``owned`` (a shard's pairs) limits it to those pairs: a student with
    none is left out, and totals and counts are the shard's own."""
    maximum = sum(points.values())
    students = {}
    for sub in subs:
        per = {}
        total = 0.0
        for n in steps:
            if owned is not None and (sub.name, n) not in owned:
                continue
            v = verdicts[(sub.name, n)]
            got = points[n] if v.status == "passed" else 0.0
            total += got
            per[f"{n:02d}"] = dict(v.as_dict(), points=_num(got), max_points=_num(points[n]))
        if per or owned is None:
            students[sub.name] = {"source": sub.source, "total": _num(total), "max": _num(maximum), "steps": per}
    counts = {f"{n:02d}": {s: sum(verdicts[(sub.name, n)].status == s for sub in subs
                                  if owned is None or (sub.name, n) in owned) for s in STATUSES}
              for n in steps}
    return dict(meta, steps=[f"{n:02d}" for n in steps], points={f"{n:02d}": _num(p) for n, p in points.items()},
                max=_num(maximum), students=students, per_step=counts)


def write_json(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")


def write_grades_csv(path: Path, results: dict) -> None:
    """One row per student and step, with the student's total and the maximum."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "step", "title", "status", "points", "max_points", "passed_checks",
                    "total_checks", "seconds", "first_failing_check", "message", "student_total", "student_max"])
        for name, s in results["students"].items():
            for nn, r in s["steps"].items():
                w.writerow([name, nn, course.step(int(nn))["title"], r["status"], r["points"], r["max_points"],
                            r["passed_checks"], r["total_checks"], r["seconds"], r["check"] or "",
                            r["message"] or "", s["total"], s["max"]])


def write_summary_csv(path: Path, results: dict) -> None:
    """One row per student: each step's status, the total and the maximum."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student"] + [f"s{nn}" for nn in results["steps"]] + ["total", "max"])
        for name, s in results["students"].items():
            w.writerow([name] + [s["steps"].get(nn, {}).get("status", "") for nn in results["steps"]]
                       + [s["total"], s["max"]])


def write_junit(path: Path, results: dict) -> None:
    """A testsuite per student, a testcase per step (failed/missing: failure; error/timeout: error)."""
    suites = ET.Element("testsuites", name="gpt2-max-course grades", max=str(results["max"]))
    for name, s in results["students"].items():
        rows = s["steps"].values()
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(s["steps"])),
                              failures=str(sum(r["status"] in ("failed", "missing") for r in rows)),
                              errors=str(sum(r["status"] in ("error", "timeout") for r in rows)),
                              skipped="0", time=f"{sum(r['seconds'] for r in rows):.2f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="total", value=str(s["total"]))
        ET.SubElement(props, "property", name="max", value=str(s["max"]))
        for nn, r in s["steps"].items():
            case = ET.SubElement(suite, "testcase", classname=name,
                                 name=f"step {nn} - {course.step(int(nn))['title']}", time=f"{r['seconds']:.2f}")
            text = "\n".join(x for x in (r["check"], r["message"], r["hint"] and f"hint: {r['hint']}") if x)
            if r["status"] == "failed":
                ET.SubElement(case, "failure", type="failed", message=_first_line(r["message"])).text = text
            elif r["status"] == "missing":
                ET.SubElement(case, "failure", type="missing", message=r["message"] or "not submitted")
            elif r["status"] in ("error", "timeout"):
                ET.SubElement(case, "error", type=r["status"], message=_first_line(r["message"])).text = text
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


# file name -> its writer: what `grade` writes into --out
WRITERS = {"grades.json": write_json, "grades.csv": write_grades_csv, "summary.csv": write_summary_csv,
           "junit.xml": write_junit}


def write_reports(out: Path, results: dict) -> list[Path]:
    """Every report; one writer's failure is said (on stderr and in ``failed.txt``) and never
    costs the others. Each is written beside its place and then moved there, whole."""
    import sys
    import traceback

    out.mkdir(parents=True, exist_ok=True)
    paths, failed = [], []
    for name, writer in WRITERS.items():
        tmp = out / f".{name}.tmp"
        try:
            writer(tmp, results)
            tmp.replace(out / name)
            paths.append(out / name)
        except Exception as exc:  # a grader bug in one format must not lose the class's grades
            tmp.unlink(missing_ok=True)
            failed.append(f"{name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            print(f"grade: could not write {name} ({type(exc).__name__}: {exc}); the other reports "
                  "are written", file=sys.stderr)
    if failed:
        (out / "failed.txt").write_text("\n".join(failed), encoding="utf-8", errors="backslashreplace")
    return paths


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def table(results: dict) -> str:
    steps = results["steps"]
    names = list(results["students"])
    width = max([7] + [len(n) for n in names])
    lines = ["student".ljust(width) + "  " + " ".join(f"{nn:>4}" for nn in steps) + "   total"]
    for name in names:
        s = results["students"][name]
        marks = " ".join(f"{MARKS.get(s['steps'].get(nn, {}).get('status'), ''):>4}" for nn in steps)
        lines.append(f"{name.ljust(width)}  {marks}   {_num(s['total'])}/{_num(s['max'])}")
    passing = " ".join(f"{results['per_step'][nn]['passed']:>4}" for nn in steps)
    lines.append("passing".ljust(width) + "  " + passing + f"   of {len(names)}")
    lines.append("ok passed  FAIL failed  ERR error  TIME timeout  - missing")
    return "\n".join(lines)


def details(results: dict, width: int = 150) -> str:
    out = []
    for name, s in results["students"].items():
        for nn, r in s["steps"].items():
            if r["status"] in ("passed", "missing"):
                continue
            what = f"{r['check']}: " if r["check"] else ""
            msg = " ".join(f"{what}{r['message'] or ''}".split())
            line = f"  {name} s{nn} {r['status']}: {msg}"
            out.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(out)
