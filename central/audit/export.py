"""Audit exports in JSON Lines and CSV, and reading them back for offline verification.

An export is self-contained evidence: besides the selected events it carries,
per device, the public key central has on file, the signed checkpoints that
bracket the selection, and a *link* (the event's digest only) for every event
between them that the filter left out, so ``python -m central.audit verify``
can re-check every hash and signature without access to central. Nothing in a
link reveals the left-out event.

Both formats hold the same records, one per line or row, in chain order; the
line number is the position a verification finding points at.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.audit.chain import canonical_json, is_hash
from core.audit.checkpoint import Checkpoint, public_key_from_bytes
from core.audit.errors import KeyFormatError
from core.audit.verify import CheckpointRecord, EventRecord, Finding, LinkRecord, Record
from core.errors import WireFormatError
from core.events import AuditEvent

FORMAT = "custody-rfr-audit-export"
VERSION = 1
CSV_COLUMNS = ["kind", "device_id", "seq", "v", "event_id", "occurred_at", "type", "actor", "outcome", "details",
               "prev_hash", "hash", "digest", "head", "signed_at", "signature", "public_key"]


def header(filters: dict[str, str]) -> dict[str, Any]:
    return {"kind": "export", "format": FORMAT, "version": VERSION,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "filters": filters}


def to_jsonl(records: Iterable[dict[str, Any]], filters: dict[str, str]) -> Iterator[str]:
    yield canonical_json(header(filters)).decode() + "\n"
    for rec in records:
        yield canonical_json(rec).decode() + "\n"


def to_csv(records: Iterable[dict[str, Any]], filters: dict[str, str]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")

    def row(rec: dict[str, Any]) -> str:
        out = {k: ("" if v is None else v) for k, v in rec.items() if k in CSV_COLUMNS}
        if rec["kind"] == "event":
            out["details"] = canonical_json(rec["details"]).decode()
        elif rec["kind"] == "export":
            out["details"] = canonical_json({k: v for k, v in rec.items() if k != "kind"}).decode()
        buf.seek(0)
        buf.truncate()
        writer.writerow(out)
        return buf.getvalue()

    buf.seek(0)
    writer.writeheader()
    yield buf.getvalue()
    yield row(header(filters))
    for rec in records:
        yield row(rec)


@dataclass
class ParsedExport:
    records: list[Record]
    keys: dict[str, Ed25519PublicKey]
    problems: list[Finding]


def _record(position: int, obj: dict[str, Any]) -> Record | None:
    kind = obj.get("kind")
    body = {k: v for k, v in obj.items() if k != "kind"}
    if kind == "event":
        return EventRecord(position, AuditEvent.from_bytes(json.dumps(body).encode()))
    if kind == "checkpoint":
        return CheckpointRecord(position, Checkpoint.from_dict(body))
    if kind == "link":
        if set(body) != {"device_id", "seq", "digest"} or not is_hash(body["digest"]) \
                or not isinstance(body["seq"], int):
            raise WireFormatError("link record is malformed")
        return LinkRecord(position, body["device_id"], body["seq"], body["digest"])
    raise WireFormatError(f"unknown record kind {kind!r}")


def _csv_object(row: dict[str, str]) -> dict[str, Any]:
    kind = row["kind"]
    ints = {"seq", "v"}
    if kind == "event":
        names = ["device_id", "seq", "v", "event_id", "occurred_at", "type", "actor", "outcome", "details",
                 "prev_hash", "hash"]
    elif kind == "checkpoint":
        names = ["device_id", "seq", "v", "head", "signed_at", "signature"]
    elif kind == "link":
        names = ["device_id", "seq", "digest"]
    elif kind == "device":
        names = ["device_id", "public_key"]
    else:
        return {"kind": kind}
    obj: dict[str, Any] = {"kind": kind}
    for name in names:
        value: Any = row.get(name, "")
        if name in ints:
            value = int(value)
        elif name == "details":
            value = json.loads(value)
        elif name in ("prev_hash", "hash", "public_key") and value == "":
            value = None
        obj[name] = value
    return obj


def parse_export(text: str) -> ParsedExport:
    """Records and keys from an export in either format; unreadable lines become findings."""
    records: list[Record] = []
    keys: dict[str, Ed25519PublicKey] = {}
    problems: list[Finding] = []
    if text.startswith("kind,"):
        reader = csv.DictReader(io.StringIO(text))
        items: Iterator[tuple[int, Any]] = ((reader.line_num, row) for row in reader)
        csv_mode = True
    else:
        items = ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())
        csv_mode = False
    for position, raw in items:
        try:
            obj = _csv_object(raw) if csv_mode else json.loads(raw)
            if not isinstance(obj, dict):
                raise WireFormatError("line is not a JSON object")
            if obj.get("kind") == "export":
                continue
            if obj.get("kind") == "device":
                if obj.get("public_key"):
                    keys[obj["device_id"]] = public_key_from_bytes(str(obj["public_key"]).encode())
                continue
            rec = _record(position, obj)
            if rec is not None:
                records.append(rec)
        except (WireFormatError, KeyFormatError, ValueError, KeyError, TypeError) as e:
            device = raw.get("device_id", "?") if isinstance(raw, dict) else "?"
            problems.append(Finding(position, str(device), None, "malformed",
                                    f"this entry cannot be read ({e}); it was altered or truncated"))
    return ParsedExport(records, keys, problems)
