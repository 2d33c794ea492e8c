"""Finding cases in the audit trail: the events an auditor's search matched, grouped into cases.

A case is known at central only through its desk's events (each carries ``case_id`` and ``custody_ref``).
Case ids are short and made on each desk, so a case is keyed by (desk, case id): two desks could,
rarely, make the same id, and the auditor must never see their events mixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from central.audit.filter import utc_sort_key


@dataclass
class CaseSummary:
    """One case as the search result list shows it."""

    device_id: str
    case_id: str
    custody_refs: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    first_utc: str = ""
    last_utc: str = ""
    events: int = 0

    @property
    def custody_ref(self) -> str:
        return ", ".join(sorted(self.custody_refs)) or "Not recorded"


def group_cases(rows: Iterable[Mapping[str, Any]]) -> list[CaseSummary]:
    """Cases among ``rows`` (audit events; those without a case id are left out), most recent first."""
    found: dict[tuple[str, str], CaseSummary] = {}
    for row in rows:
        details = row["details"]
        case_id = details.get("case_id") if isinstance(details, Mapping) else None
        if not isinstance(case_id, str) or not case_id:
            continue
        key = (str(row["device_id"]), case_id)
        summary = found.setdefault(key, CaseSummary(*key))
        ref = details.get("custody_ref")
        if isinstance(ref, str) and ref:
            summary.custody_refs.add(ref)
        summary.people.add(str(row["actor"]))
        at = utc_sort_key(str(row["occurred_at"]))
        summary.first_utc = min(summary.first_utc or at, at)
        summary.last_utc = max(summary.last_utc, at)
        summary.events += 1
    return sorted(found.values(), key=lambda s: (s.last_utc, s.device_id, s.case_id), reverse=True)
