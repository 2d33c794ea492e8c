"""Searches by reference library, and the governed libraries' authorisation, composition and lifecycle in a period.

Where each figure comes from:

- searches per library: the desk's ``search`` event names the libraries it searched (``details.libraries``, a
  list of ``{"library_id", "name", "kind", "version"}``, issue #18). Events from desks that predate it carry
  only ``library_version`` and searched the one default library, so they count under ``national``. A search
  over two libraries counts once for each; ``searches`` in the main figures counts it once.
- searches per kind: a search counts under each kind of library it searched (substantive, temporary).
- the library's name, kind, authorisation and composition come from central's register
  (``central.fleet.library_register``), never from the event: an id central has no record of is counted
  as ``other``, so no text a desk wrote reaches a report (the rule of ``aggregation``).
- temporary libraries created: authorised within the period; destroyed: retired or expired within the
  period, or a desk audited ``library_destroyed`` for it within the period (the desks that did are counted).

Pure (no I/O): the caller gives the events and the register's rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.fleet.library_register import TEMPORARY, RecordedComposition, RegisteredLibrary
from core.library_announce import DEFAULT_LIBRARY_ID

OTHER = "other"
KINDS = ("substantive", "temporary", "unknown")
DESTRUCTION_REASONS = ("expired", "retired", "other")
_LIBRARY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MAX_VERSION = 10**9


@dataclass(frozen=True)
class LibraryInPeriod:
    """One library: how it was searched in the period, and its authorisation and composition."""

    library_id: str
    name: str
    kind: str
    status: str
    searches: int
    devices: int
    versions: tuple[int, ...]
    register: RegisteredLibrary | None
    composition: RecordedComposition | None

    @property
    def temporary(self) -> bool:
        return self.kind == TEMPORARY


@dataclass(frozen=True)
class Lifecycle:
    """A library created or destroyed in the period, and how many desks reported destroying their copy."""

    library_id: str
    name: str
    kind: str
    authorised_at: datetime | None
    expires_at: datetime | None
    retired_at: datetime | None
    desks_destroyed: int
    destructions: dict[str, int]  # by reason: expired, retired, other
    last_destroyed_at: datetime | None


@dataclass(frozen=True)
class LibraryBreakdown:
    searches_by_kind: dict[str, int]
    searches_without_library_record: int  # older search events, counted under the default library
    libraries: tuple[LibraryInPeriod, ...]
    created: tuple[Lifecycle, ...]
    destroyed: tuple[Lifecycle, ...]

    def rows(self) -> list[tuple[str, str, int]]:
        """``(figure, category, count)`` for the CSV: ids are central's own library ids, or ``other``."""
        out = [("searches_by_library_kind", kind, n) for kind, n in self.searches_by_kind.items()]
        out.append(("searches_without_library_record", "total", self.searches_without_library_record))
        out.extend(("searches_by_library", lib.library_id, lib.searches) for lib in self.libraries)
        out.extend(("desks_searching_library", lib.library_id, lib.devices) for lib in self.libraries)
        out.extend(("temporary_library_created", life.library_id, 1) for life in self.created)
        out.extend(("library_destroyed_desks", life.library_id, life.desks_destroyed) for life in self.destroyed)
        return out


def _version(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _MAX_VERSION:
        return value
    return None


def _known(value: object, register: Mapping[str, RegisteredLibrary]) -> str:
    """The library id if central knows it (or it is the default), else ``other``: event text never passes."""
    if isinstance(value, str) and _LIBRARY_ID.fullmatch(value) and (value in register or value == DEFAULT_LIBRARY_ID):
        return value
    return OTHER


def searched(details: Mapping[str, Any], register: Mapping[str, RegisteredLibrary]) -> dict[str, int | None]:
    """The libraries one search event searched: known id (or ``other``) -> version (None if not told)."""
    listed = details.get("libraries")
    if not isinstance(listed, list) or not listed:
        return {DEFAULT_LIBRARY_ID: _version(details.get("library_version"))}
    out: dict[str, int | None] = {}
    for entry in listed:
        if isinstance(entry, dict):
            out[_known(entry.get("library_id"), register)] = _version(entry.get("version"))
        else:
            out[OTHER] = None
    return out


def kind_of(library_id: str, register: Mapping[str, RegisteredLibrary]) -> str:
    known = register.get(library_id)
    if known is not None:
        return known.kind if known.kind in KINDS else "unknown"
    return "substantive" if library_id == DEFAULT_LIBRARY_ID else "unknown"


def name_of(library_id: str, register: Mapping[str, RegisteredLibrary]) -> str:
    known = register.get(library_id)
    if known is not None:
        return known.name
    if library_id == DEFAULT_LIBRARY_ID:
        return "National custody image library"
    return "A library central has no record of"


def in_force(library: RegisteredLibrary, start: datetime, end: datetime) -> bool:
    """Authorised at some moment of ``[start, end)``: authorised before the end, not retired or expired before
    the start (a suspension pauses searching; the library is still governed and reported)."""
    if library.authorised_at is None or library.authorised_at >= end:
        return False
    ended = [m for m in (library.retired_at, library.expires_at) if m is not None]
    return not ended or min(ended) >= start


def _in(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


def breakdown(events: Iterable[Mapping[str, Any]], register: Mapping[str, RegisteredLibrary],
              compositions: Mapping[str, RecordedComposition], start: datetime, end: datetime) -> LibraryBreakdown:
    """The library figures for ``events`` (already limited to the period ``[start, end)``)."""
    searches: Counter[str] = Counter()
    desks: dict[str, set[str]] = {}
    versions: dict[str, set[int]] = {}
    kinds: Counter[str] = Counter()
    without = 0
    destroyed_by: dict[str, set[str]] = {}
    reasons: dict[str, Counter[str]] = {}
    last_destroyed: dict[str, datetime] = {}
    for event in events:
        details = event["details"] if isinstance(event.get("details"), dict) else {}
        device = str(event["device_id"])
        if event["type"] == "search":
            if not isinstance(details.get("libraries"), list) or not details.get("libraries"):
                without += 1
            libs = searched(details, register)
            for library_id, version in libs.items():
                searches[library_id] += 1
                desks.setdefault(library_id, set()).add(device)
                if version is not None:
                    versions.setdefault(library_id, set()).add(version)
            kinds.update({kind_of(library_id, register) for library_id in libs})
        elif event["type"] == "library_destroyed":
            library_id = _known(details.get("library_id"), register)
            destroyed_by.setdefault(library_id, set()).add(device)
            reason = details.get("reason")
            reasons.setdefault(library_id, Counter())[reason if reason in DESTRUCTION_REASONS else OTHER] += 1
            when = event.get("occurred_at")
            moment = when if isinstance(when, datetime) else datetime.fromisoformat(str(when)) if when else None
            if moment is not None and (library_id not in last_destroyed or moment > last_destroyed[library_id]):
                last_destroyed[library_id] = moment

    ids = sorted(set(searches) | {lid for lid, lib in register.items() if in_force(lib, start, end)},
                 key=lambda lid: (lid == OTHER, kind_of(lid, register) != "substantive", lid))
    libraries = tuple(
        LibraryInPeriod(lid, name_of(lid, register), kind_of(lid, register),
                        register[lid].status if lid in register else "not registered", searches.get(lid, 0),
                        len(desks.get(lid, ())), tuple(sorted(versions.get(lid, ()))), register.get(lid),
                        compositions.get(lid))
        for lid in ids)

    def lifecycle(lid: str) -> Lifecycle:
        known = register.get(lid)
        return Lifecycle(lid, name_of(lid, register), kind_of(lid, register),
                         known.authorised_at if known else None, known.expires_at if known else None,
                         known.retired_at if known else None, len(destroyed_by.get(lid, ())),
                         {r: reasons.get(lid, Counter()).get(r, 0) for r in DESTRUCTION_REASONS},
                         last_destroyed.get(lid))

    created = tuple(lifecycle(lid) for lid, lib in sorted(register.items())
                    if lib.temporary and _in(lib.authorised_at, start, end))
    gone = {lid for lid, lib in register.items()
            if _in(lib.retired_at, start, end) or (lib.temporary and _in(lib.expires_at, start, end))}
    gone |= set(destroyed_by)
    destroyed = tuple(lifecycle(lid) for lid in sorted(gone, key=lambda lid: (lid == OTHER, lid)))
    return LibraryBreakdown({kind: kinds.get(kind, 0) for kind in KINDS}, without, libraries, created, destroyed)
