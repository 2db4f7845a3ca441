"""Shared tooling for the course: weights, reference model, comparisons, the CLI.

Learners never need to read this package; the step files and the book are theirs.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
