"""Which libraries a search runs on: the officer's choice on the form, checked again at the search.

Policy speaks of Permitted and Temporary Image Reference Libraries, each authorised for a use; a desk
holds several (``appliance.services.library``, ``LibrarySet``) under central's signed authorisation
manifest (``core.library_authorisation``). The officer chooses among those offered for custody when the
request is made; the choice is stored with the case and approved with it.

Between the request and the search a library may be suspended, expire, pass its review date or leave
the manifest. The search then **stops**: nothing is searched, each refused library is audited
(``search_refused``/``library_not_authorised``), and the officer is told in plain words which library,
why, and that they may search the others they chose without it. Searching the rest silently would run a
search nobody approved in that form and hide that part of the request could not be met; the officer
decides, and narrowing the choice (never widening it: that would need approval again) is recorded.

Pure, apart from asking the library set: the case service applies it and records what happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from library.snapshot import Snapshot


class OfferedLibrary(Protocol):
    """What the form and the records need of one library (``core.library_authorisation.AuthorisedLibrary``)."""

    library_id: str
    name: str
    kind: str
    default: bool
    expires_at: datetime | None


class Libraries(Protocol):
    """The desk's libraries as the search sees them (``appliance.services.library.LibrarySet``)."""

    def choices(self, now: datetime | None = None) -> Sequence[OfferedLibrary]:
        """Authorised for custody, held and searchable at ``now``, in the manifest's order."""

    def refusal_code(self, library_id: str, now: datetime | None = None) -> str | None:
        """Why ``library_id`` may not be searched at ``now``, as a code (``core.library_authorisation``)."""

    def refusal(self, library_id: str, now: datetime | None = None) -> str | None:
        """The same, in plain words for custody staff, saying whom to ask."""

    def current(self, library_id: str, now: datetime | None = None) -> Snapshot:
        """The snapshot to search; refuses (``LibraryRefusedError``) a library that may not be searched."""

    def snapshot(self, library_id: str) -> Snapshot | None:
        """The held snapshot without the authorisation check: to show a past search's images, never to search."""


#: After the library set's words for each refused library: what the officer can do now.
WHAT_TO_DO = ("Nothing was searched. You can search the other libraries you chose without it (on the case "
              "page), or withdraw the request.")

CHOOSE_ONE = "Choose at least one library to search."
NOT_OFFERED = ("{name} is not a library this desk may search for custody. Choose from the libraries shown; "
               "the list may have changed since the page was loaded.")


KIND_WORDS = {"temporary": "Temporary library (for one investigation or operation)",
              "substantive": "Permitted library (substantive)"}


def offered(libraries: Libraries, now: datetime) -> list[dict[str, Any]]:
    """The form's choices: id, name, kind in words, expiry (seconds, for the page's time filter) and whether
    it starts ticked (the manifest's default set)."""
    return [{"library_id": lib.library_id, "name": lib.name, "kind": lib.kind,
             "kind_words": KIND_WORDS.get(lib.kind, lib.kind), "default": bool(lib.default),
             "expires_at": lib.expires_at.timestamp() if lib.expires_at is not None else None}
            for lib in libraries.choices(now)]


def default_choice(libraries: Libraries, now: datetime) -> list[str]:
    return [lib.library_id for lib in libraries.choices(now) if lib.default]


def unoffered(chosen: Iterable[str], libraries: Libraries, now: datetime) -> list[str]:
    """The chosen ids this desk does not offer now (a stale page, or a hand-made form)."""
    ids = {lib.library_id for lib in libraries.choices(now)}
    return [c for c in chosen if c not in ids]


def normalise(chosen: Iterable[str]) -> list[str]:
    """Each id once, in the order given; blanks dropped."""
    out: list[str] = []
    for value in chosen:
        value = value.strip()
        if value and value not in out:
            out.append(value)
    return out


def searched_record(library: OfferedLibrary, snapshot: Snapshot) -> dict[str, Any]:
    """What the case and the ``search`` audit event keep of one library searched (the agreed shape)."""
    return {"library_id": library.library_id, "name": library.name, "kind": library.kind,
            "version": snapshot.version}
