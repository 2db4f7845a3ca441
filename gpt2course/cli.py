"""`python -m gpt2course COMMAND`: what `make` and `pixi run` call."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from gpt2course import ROOT, manifest


def check_command(step: int, target: str = "steps", device: str | None = None,
                  report_json: str | None = None, quiet: bool = False) -> list[str]:
    """The pytest command line that checks one step."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / f"test_step_{step:02d}.py"),
           "-p", "no:cacheprovider", "--no-header", "-q", "--tb=no", "-rN",
           f"--target={target}"]
    if device:
        cmd.append(f"--device={device}")
    if report_json:
        cmd.append(f"--report-json={report_json}")
    return cmd


def cmd_check(args) -> int:
    step = manifest.parse_step(args.step)
    target = args.target or os.environ.get("GPT2_TARGET") or "steps"
    info = manifest.step(step)
    print(f"Checking step {step:02d} ({info['title']}) against Hugging Face GPT-2 "
          f"[target: {target}, device: {args.device or os.environ.get('GPT2_DEVICE') or 'cpu'}]",
          flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(check_command(step, target, args.device, args.report_json), cwd=ROOT, env=env)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="check one step against Hugging Face GPT-2")
    p.add_argument("step", help="s07, 07 or 7")
    p.add_argument("--target", help="steps (default), solutions, or a folder with step_NN.py files")
    p.add_argument("--device", help="cpu (default) or gpu")
    p.add_argument("--report-json", help="write the results as JSON here")
    p.set_defaults(func=cmd_check)

    args = parser.parse_args(argv)
    return args.func(args)
