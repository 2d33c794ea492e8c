"""What the rest of central may know about the ingest, without reaching into the connection."""

from __future__ import annotations

from typing import Protocol


class IngestStatus(Protocol):
    """Read-only view of a running ingest, for health checks and pages."""

    @property
    def connected(self) -> bool: ...

    @property
    def received(self) -> int: ...

    @property
    def rejected(self) -> int: ...


class IngestPool:
    """Several workers seen as one: connected only when every worker is."""

    def __init__(self, workers: list[IngestStatus]) -> None:
        self.workers = workers

    @property
    def connected(self) -> bool:
        return all(w.connected for w in self.workers)

    @property
    def received(self) -> int:
        return sum(w.received for w in self.workers)

    @property
    def rejected(self) -> int:
        return sum(w.rejected for w in self.workers)
