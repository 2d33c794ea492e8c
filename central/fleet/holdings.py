"""Which desks hold which reference library, from each desk's newest heartbeat and central's library register.

Pure (no I/O): the fleet page shows it both ways, per desk (the libraries and versions it holds) and per
library (the desks that still hold it). A copy is *withdrawn* when its library is retired (or was refused),
or its expiry has passed: the desk should have destroyed it by itself (issue #18), so a desk still
reporting it is flagged for the team to chase (a desk offline at the expiry destroys its copy on its own
clock; its next heartbeat clears the flag).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.fleet.health_store import held_libraries
from central.fleet.library_register import RegisteredLibrary
from core.library_announce import DEFAULT_LIBRARY_ID

WITHDRAWN_WORDS = {"retired": "retired", "refused": "refused", "expired": "past its expiry"}


@dataclass(frozen=True)
class HeldCopy:
    """One library copy on one desk, with why it should be gone (None: it may stay)."""

    device_id: str
    library_id: str
    version: int
    name: str
    kind: str
    withdrawn: str | None
    revoked: bool = False

    @property
    def withdrawn_words(self) -> str | None:
        return None if self.withdrawn is None else WITHDRAWN_WORDS.get(self.withdrawn, self.withdrawn)


@dataclass(frozen=True)
class LibraryHolders:
    """One library and the desks whose newest heartbeat says they hold it."""

    library_id: str
    name: str
    kind: str
    status: str  # the register's status, or "not registered"
    expires_at: datetime | None
    withdrawn: str | None
    copies: tuple[HeldCopy, ...]

    @property
    def withdrawn_words(self) -> str | None:
        return None if self.withdrawn is None else WITHDRAWN_WORDS.get(self.withdrawn, self.withdrawn)

    @property
    def still_held(self) -> bool:
        """Withdrawn, yet some desk still reports a copy: the case the page highlights."""
        return self.withdrawn is not None and bool(self.copies)


@dataclass(frozen=True)
class Holdings:
    by_desk: dict[str, tuple[HeldCopy, ...]]
    by_library: tuple[LibraryHolders, ...]

    def withdrawn_on(self, device_id: str) -> tuple[HeldCopy, ...]:
        return tuple(c for c in self.by_desk.get(device_id, ()) if c.withdrawn is not None)


def _describe(library_id: str, register: Mapping[str, RegisteredLibrary]) -> tuple[str, str, str]:
    known = register.get(library_id)
    if known is not None:
        return known.name, known.kind, known.status
    if library_id == DEFAULT_LIBRARY_ID:
        return "National custody image library", "substantive", "not registered"
    return library_id, "unknown", "not registered"


def holdings(latest: Mapping[str, Mapping[str, Any]], register: Mapping[str, RegisteredLibrary], *, now: datetime,
             revoked: Mapping[str, object] = {}) -> Holdings:
    """Per desk and per library; every registered library is listed, held or not, then any unregistered one."""
    by_desk: dict[str, tuple[HeldCopy, ...]] = {}
    by_id: dict[str, list[HeldCopy]] = {lid: [] for lid in register}
    for device_id in sorted(latest):
        copies = []
        for library_id, version in held_libraries(latest[device_id]):
            name, kind, _status = _describe(library_id, register)
            known = register.get(library_id)
            copy = HeldCopy(device_id, library_id, version, name, kind,
                            known.withdrawn(now) if known is not None else None, device_id in revoked)
            copies.append(copy)
            by_id.setdefault(library_id, []).append(copy)
        by_desk[device_id] = tuple(copies)
    libraries = []
    for library_id in sorted(by_id, key=lambda lid: (lid not in register, lid)):
        name, kind, status = _describe(library_id, register)
        known = register.get(library_id)
        libraries.append(LibraryHolders(library_id, name, kind, status, known.expires_at if known else None,
                                        known.withdrawn(now) if known else None, tuple(by_id[library_id])))
    return Holdings(by_desk, tuple(libraries))
