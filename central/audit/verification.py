"""Checking an audit export: the one routine behind ``python -m central.audit verify`` and the page.

An auditor may hold an export anywhere; whether it still proves what it says is decided from the file
alone (and, for independence from central, keys the auditor pins). The command line and the auditors'
page call this same function so they can never disagree about a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.audit.export import parse_export
from core.audit.checkpoint import public_key_hex
from core.audit.verify import UNSIGNED_TAIL, verify_records


@dataclass(frozen=True)
class VerificationResult:
    """``ok`` and the lines to show: notes, one FAIL line per problem, then a summary line."""

    ok: bool
    lines: tuple[str, ...]
    events: int
    checkpoints: int


def verify_export(text: str, name: str, pinned: Mapping[str, Ed25519PublicKey] | None = None,
                  pinned_names: Mapping[str, str] | None = None,
                  allow_unsigned_tail: bool = False) -> VerificationResult:
    """Check ``text`` (an export in either format) named ``name`` in the messages; ``pinned`` keys win."""
    parsed = parse_export(text)
    keys = dict(parsed.keys)
    lines: list[str] = []
    for device, key in (pinned or {}).items():
        where = (pinned_names or {}).get(device, "the pinned key")
        if device in keys and public_key_hex(keys[device]) != public_key_hex(key):
            lines.append(f"note: the key in the export for {device} differs from {where}; using {where}")
        keys[device] = key
    report = verify_records(parsed.records, keys, require_signed_tail=not allow_unsigned_tail)
    findings = sorted(parsed.problems + [f for f in report.findings
                                         if not (allow_unsigned_tail and f.kind == UNSIGNED_TAIL)])
    if findings:
        lines += [f"FAIL {f}" for f in findings]
        lines.append(f"{name}: {len(findings)} problem(s) in {report.events} events, {report.links} links and "
                     f"{report.checkpoints} checkpoints")
        return VerificationResult(False, tuple(lines), report.events, report.checkpoints)
    used = ", ".join(f"{d} {public_key_hex(k)[:16]}…" for d, k in sorted(keys.items()))
    lines.append(f"OK {name}: {report.events} events, {report.links} links and {report.checkpoints} signed "
                 f"checkpoints from {report.devices} device(s) verify (keys: {used or 'none'})")
    return VerificationResult(True, tuple(lines), report.events, report.checkpoints)
