"""Text that came from a process we do not trust (a student's code, its error messages, a
submission's folder name), as the course prints and stores it. Standard library only."""

from __future__ import annotations


def clean_text(text, limit: int = 20000, *, newlines: bool = True) -> str:
    """At most ``limit`` characters; lone surrogates and control characters (but newlines and
    tabs, if ``newlines``) escaped, so that it encodes as UTF-8, is valid in XML 1.0 and
    cannot move a terminal's cursor, clear its screen or retitle its window."""
    text = str(text)
    cut = len(text) > limit
    text = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    keep = "\n\t" if newlines else ""
    out = "".join(c if c in keep or c.isprintable() else
                  (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                   else f"\\U{ord(c):08x}") for c in text)
    return out + (" [...]" if cut else "")
