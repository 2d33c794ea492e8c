"""What an auditor asks the audit store for: ``EventFilter``, and the clock events are ordered by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.audit.chain import canonical_json

#: Keys of an event's details an auditor can find a case by (the desk puts both on every case event).
CASE_KEYS = ("case_id", "custody_ref")


def detail_needle(key: str, value: str) -> str:
    """The exact text ``"key":"value"`` takes inside the stored details (canonical JSON: sorted keys, no
    spaces, ASCII escapes), so a case is found by a plain substring test that SQLite and PostgreSQL
    both do exactly and case-sensitively, without a JSON extension in either."""
    return canonical_json({key: value}).decode()[1:-1]


def utc_sort_key(occurred_at: str) -> str:
    """Devices may send any UTC offset (or none, meaning UTC); order by the same clock."""
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class EventFilter:
    """What an auditor asked for; every field optional. Times are UTC ISO strings."""

    device_id: str | None = None
    actor: str | None = None
    type: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    case_id: str | None = None
    custody_ref: str | None = None
    #: Only events about a case (the ones that carry a case id).
    with_case: bool = False

    def where(self, postgres: bool = False) -> tuple[str, list[Any]]:
        """The WHERE clause and its arguments; ``postgres`` picks the substring function for case keys."""
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("device_id", "actor", "type", "outcome"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        for key in CASE_KEYS:
            value = getattr(self, key)
            if value:
                clauses.append("strpos(details, ?) > 0" if postgres else "instr(details, ?) > 0")
                args.append(detail_needle(key, value))
        if self.with_case:
            clauses.append("strpos(details, ?) > 0" if postgres else "instr(details, ?) > 0")
            args.append('"case_id":"')
        if self.since:
            clauses.append("occurred_utc >= ?")
            args.append(utc_sort_key(self.since))
        if self.until:
            clauses.append("occurred_utc < ?")
            args.append(utc_sort_key(self.until))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v and isinstance(v, str)}
