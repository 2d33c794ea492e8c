"""What an auditor asks the audit store for: ``EventFilter``, and the clock events are ordered by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("device_id", "actor", "type", "outcome"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.since:
            clauses.append("occurred_utc >= ?")
            args.append(utc_sort_key(self.since))
        if self.until:
            clauses.append("occurred_utc < ?")
            args.append(utc_sort_key(self.until))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}
