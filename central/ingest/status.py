"""What the rest of central may know about the ingest, without importing paho."""

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
