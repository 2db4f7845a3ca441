"""Signed reports: the grader hands each check a fresh random key on stdin; the check signs its
JSON report with it (HMAC-SHA256), so a report written or edited by anything else, or none at
all (after ``os._exit``), is rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import json

def canonical(report: dict) -> bytes:
    body = {k: v for k, v in report.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signer(key_hex: str):
    """An HMAC object holding the key (the key bytes are not kept elsewhere)."""
    return hmac.new(bytes.fromhex(key_hex), digestmod=hashlib.sha256)


def sign(mac, report: dict) -> str:
    m = mac.copy()
    m.update(canonical(report))
    return m.hexdigest()


def signature_ok(key_hex: str, report: dict) -> bool:
    sig = report.get("signature")
    if not isinstance(sig, str):
        return False
    expected = hmac.new(bytes.fromhex(key_hex), canonical(report), hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, expected)
