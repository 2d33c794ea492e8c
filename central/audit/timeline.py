"""One case's timeline: every event about it, from the desk's audit chain and from central, in time order.

A case lives on one desk (its audit events carry ``case_id`` and ``custody_ref``) and, when a peer review
is asked for, also at central (central's own record of the request, the reviewer's decision and the
outcome sent back). The auditor reads them as one story, so both sources are merged here on one UTC
clock, each entry saying where it was recorded. This module only arranges what it is given: the web
layer fetches the rows, because the audit store and central's peer-review store sit in different layers.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.audit import labels
from central.audit.filter import CASE_KEYS, utc_sort_key

DESK = "desk"
CENTRAL = "central"


@dataclass(frozen=True)
class TimelineEntry:
    """One step of a case as the auditor reads it; ``where`` names the desk or says central."""

    at_utc: datetime
    source: str  # DESK or CENTRAL
    where: str
    what: str
    actor: str
    outcome: str
    details: tuple[labels.DetailLine, ...]
    device_id: str
    seq: int | None = None

    @property
    def at_text(self) -> str:
        return self.at_utc.strftime("%d %b %Y %H:%M:%S UTC")


def _utc(moment: str) -> datetime:
    return datetime.fromisoformat(utc_sort_key(moment)).astimezone(UTC)


def desk_entry(row: Mapping[str, Any]) -> TimelineEntry:
    """A stored audit event (a row of ``AuditStore.query``) as a timeline entry."""
    return TimelineEntry(
        at_utc=_utc(str(row["occurred_at"])), source=DESK, where=f"Desk {row['device_id']}",
        what=labels.event_type(str(row["type"])), actor=str(row["actor"]), outcome=labels.outcome(str(row["outcome"])),
        details=tuple(labels.details(row["details"], skip=frozenset(CASE_KEYS))), device_id=str(row["device_id"]),
        seq=int(row["seq"]))


_CENTRAL_ACTIONS = {
    "requested": "Peer review request received",
    "decided": "Peer review decided",
    "outcome_sent": "Peer review outcome sent to the desk",
    "request_conflict": "Conflicting peer review request refused",
}


_DECIDED = re.compile(r"^(?P<outcome>[a-z_]+); decisions (?P<decisions>\{.*\})$")


def _central_details(action: str, detail: str) -> list[labels.DetailLine]:
    """Central's log line in words where its shape is known (a decision), else as it was written."""
    match = _DECIDED.match(detail) if action == "decided" else None
    if match:
        try:
            decisions = ast.literal_eval(match["decisions"])
        except (ValueError, SyntaxError):
            decisions = None
        if isinstance(decisions, dict):
            return [labels.DetailLine("outcome", "Outcome", labels.outcome(match["outcome"])),
                    labels.DetailLine("decisions", "Decisions", "", tuple(
                        f"Candidate {rank}: {labels.DECISIONS.get(str(d), str(d))}"
                        for rank, d in sorted(decisions.items(), key=lambda kv: str(kv[0]))))]
    return [labels.DetailLine("detail", "What central recorded", detail)]


def central_entry(row: Mapping[str, Any]) -> TimelineEntry:
    """A row of central's peer-review log (``at, request_id, device_id, action, actor, detail``)."""
    action = str(row["action"])
    lines = [labels.DetailLine("request_id", labels.detail_key("request_id"), str(row["request_id"]))]
    if row.get("detail"):
        lines += _central_details(action, str(row["detail"]))
    return TimelineEntry(
        at_utc=_utc(str(row["at"])), source=CENTRAL, where="Central",
        what=_CENTRAL_ACTIONS.get(action, labels.outcome(action)), actor=str(row["actor"]), outcome="",
        details=tuple(lines), device_id=str(row["device_id"]))


def assemble(desk_rows: Iterable[Mapping[str, Any]], central_rows: Iterable[Mapping[str, Any]]) -> list[TimelineEntry]:
    """Both sources in the order things happened; on a tie the desk's chain order, then central's."""
    entries = [desk_entry(r) for r in desk_rows] + [central_entry(r) for r in central_rows]
    return sorted(entries, key=lambda e: (e.at_utc, e.source != DESK, e.device_id, e.seq or 0))
