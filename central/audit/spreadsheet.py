"""Audit events for spreadsheets: one file per kind of event, labelled columns, safe to open.

The evidence export (``central.audit.export``) mixes events, checkpoints and links because that is what
verification needs; a person reading events in a spreadsheet wants one kind of row per file, every
column meaning one thing. So each event type gets its own CSV: when, which desk, the case and custody
record, who, the outcome, then one column per detail that kind of event carries (labelled, values as
words, lists joined by semicolons), and the event's hash to find the same event in the evidence file.

Choices for spreadsheets:
- UTF-8 with a byte-order mark: without it Excel reads the file in the local code page and turns
  names with accents into mojibake; LibreOffice and Python's ``utf-8-sig`` read the mark and drop it.
- Times in UTC (the column says so), ``YYYY-MM-DD HH:MM:SS``, which spreadsheets read as a date.
- A cell that starts with ``= + - @``, a tab or a carriage return is prefixed with ``'``, so text a
  desk user typed (a custody reference, a name) can never run as a formula (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from central.audit import labels
from central.audit.filter import CASE_KEYS, utc_sort_key

BOM = "\ufeff"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_COLUMNS = ("Time (UTC)", "Desk", "Sequence number", "Case", "Custody record", "Person", "Outcome")
HASH_COLUMN = "Event hash (as in the evidence export)"


def safe_cell(text: str) -> str:
    """``text`` as a spreadsheet will show it, never as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def utc_text(occurred_at: str) -> str:
    """An event's time in UTC as ``YYYY-MM-DD HH:MM:SS`` (whatever offset the desk sent)."""
    return datetime.fromisoformat(utc_sort_key(occurred_at)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def file_name(event_type: str, stamp: str) -> str:
    """``audit-searches-20261204T101500Z.csv``: the kind in the name, so files from one export sort together."""
    return f"audit-{labels.EVENT_KINDS.get(event_type, event_type.replace('_', '-'))}-{stamp}.csv"


def _detail_keys(rows: list[Mapping[str, Any]]) -> list[str]:
    order = {k: n for n, k in enumerate(labels.DETAIL_KEYS)}
    seen = {k for r in rows for k in r["details"] if k not in CASE_KEYS}
    return sorted(seen, key=lambda k: (order.get(k, len(order)), k))


def kind_csv(rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The CSV text (with BOM) of events of one kind, oldest first, a header row naming every column."""
    items = list(rows)
    keys = _detail_keys(items)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def line(cells: list[str]) -> str:
        buf.seek(0)
        buf.truncate()
        writer.writerow([safe_cell(c) for c in cells])
        return buf.getvalue()

    yield BOM + line([*FIXED_COLUMNS, *(labels.detail_key(k) for k in keys), HASH_COLUMN])
    for r in items:
        d = r["details"]
        case = [labels.value(k, d.get(k)) if d.get(k) else "" for k in CASE_KEYS]
        lines = {x.key: x.plain for x in labels.details(d)}
        yield line([utc_text(str(r["occurred_at"])), str(r["device_id"]), str(r["seq"]), *case, str(r["actor"]),
                    labels.outcome(str(r["outcome"])), *(lines.get(k, "") for k in keys), str(r.get("hash") or "")])
