"""The one error a learner reads: what failed, in their words, and a hint."""

from __future__ import annotations


class CheckFailure(AssertionError):
    """A check that failed, with a message written for the learner.

    >>> str(CheckFailure("step 03: weight has shape [4], expected [64]", "use config.n_embd"))
    'step 03: weight has shape [4], expected [64]\\n  hint: use config.n_embd'
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))
