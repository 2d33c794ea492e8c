"""The libraries the desk holds, each swapped atomically when an update is installed, and which may be searched.

A desk holds several reference libraries (issue #18): Permitted (substantive) ones and Temporary ones made
for one investigation. Each lives in its own versioned store (``data_dir/library/<library_id>/``) and its
own ``LibraryHolder``. Whether one may be searched is decided here, at the moment of asking, from the
authorisation manifest central signed for this desk (``core.library_authorisation``) against the desk's own
clock: a library whose authorisation is missing, suspended, expired or past its review date is refused in
plain words, and the others go on being served.

Searches take a reference to a snapshot and keep using it to the end, so an update never changes a
result half-way; a swap is one reference assignment under a lock, and versions only move forward.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from core.errors import CustodyRfrError
from core.library_announce import DEFAULT_LIBRARY_ID
from core.library_authorisation import CUSTODY, AuthorisationManifest
from library.errors import SnapshotError
from library.snapshot import Snapshot

#: Whom custody staff ask when a library is refused: central's RFR team authorises libraries.
ASK = "Ask the RFR team (facial recognition team) to check this library's authorisation for this desk."


class LibraryRollbackError(SnapshotError):
    """An update offered a library version that is not newer than the installed one."""


class LibraryRefusedError(CustodyRfrError):
    """A library may not be searched on this desk now; ``message`` says why in custody staff's words."""

    def __init__(self, library_id: str, refusal: str, message: str) -> None:
        super().__init__(message)
        self.library_id = library_id
        self.refusal = refusal  # core.library_authorisation.Refusal, or "not_held" / "no_manifest"


class LibraryHolder:
    """One library lineage's current snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._current = snapshot
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def swap(self, new: Snapshot) -> Snapshot:
        """Install ``new`` and return the snapshot it replaced (the caller closes it when idle)."""
        with self._lock:
            old = self._current
            if new.version <= old.version:
                raise LibraryRollbackError(
                    f"Library version {new.version} is not newer than the installed version {old.version}; "
                    f"it was not installed."
                )
            if new.embedder_id != old.embedder_id:
                raise SnapshotError(
                    f"Library version {new.version} was built with {new.embedder_id}, not {old.embedder_id}."
                )
            self._current = new
            return old


@dataclass(frozen=True)
class LibraryChoice:
    """One library an officer may tick on the submission form (authorised, held, searchable now)."""

    library_id: str
    name: str
    kind: str  # "substantive" | "temporary"
    default: bool  # ticked on the form for the custody use case
    version: int  # the version held now (a search records the version it used)
    expires_at: datetime | None
    review_due: date


def _day(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def refusal_message(library_id: str, name: str, refusal: str, *, expires_at: datetime | None = None,
                    review_due: date | None = None) -> str:
    """What custody staff read when a library is refused: what happened, and whom to ask."""
    what = f"The library {name!r}" if name != library_id else f"The library {library_id!r}"
    if refusal == "no_manifest":
        return (f"{what} cannot be searched: this desk has not yet received its library authorisation from "
                f"central. {ASK}")
    if refusal == "not_listed":
        return f"{what} is not authorised for this desk, so it cannot be searched. {ASK}"
    if refusal == "suspended":
        return f"{what} has been suspended by the RFR team, so it cannot be searched. {ASK}"
    if refusal == "expired":
        when = f" on {_day(expires_at.date())}" if expires_at is not None else ""
        return (f"{what} was a temporary library and its authorisation ended{when}, so it cannot be searched. "
                f"The desk destroys its copy. {ASK}")
    if refusal == "clock_doubtful":
        if expires_at is not None:
            limit = f"whether its authorisation (as a temporary library, to {_day(expires_at.date())}) has ended"
        else:
            limit = "whether it is past its review date" + (f" ({_day(review_due)})" if review_due else "")
        return (f"{what} cannot be searched now: this desk's clock is in doubt, so the desk cannot tell {limit}. "
                f"It can be searched again once central confirms the clock. Call the RFR helpdesk.")
    if refusal == "review_overdue":
        when = f" by {_day(review_due)}" if review_due is not None else ""
        return (f"{what} was due for review{when} and has not been reviewed, so it cannot be searched until it "
                f"is. {ASK}")
    if refusal == "not_for_purpose":
        return f"{what} is not authorised for custody searches, so it cannot be searched here. {ASK}"
    if refusal == "under_repair":
        return (f"{what} is being repaired: the desk found its copy damaged and is fetching a fresh one from "
                f"central, so it cannot be searched until then. The other libraries can still be searched. If this "
                f"lasts more than an hour, call the RFR helpdesk.")
    if refusal == "not_held":
        return (f"{what} is authorised for this desk but has not yet been received from central, so it cannot "
                f"be searched yet. The desk fetches it at its next update; if this lasts, call the RFR helpdesk.")
    return f"{what} cannot be searched ({refusal}). {ASK}"


class PrimaryLibrary:
    """The ``LibraryHolder`` shape over one lineage of a ``LibrarySet`` (the provisioned one), for callers
    written when the desk held one library: ``current`` and ``swap``. It does not check authorisation:
    searches go through ``LibrarySet.current(library_id)``."""

    def __init__(self, libraries: LibrarySet, library_id: str) -> None:
        self._libraries, self.library_id = libraries, library_id

    def _holder(self) -> LibraryHolder:
        holder = self._libraries.holder(self.library_id)  # never another lineage: it may not be authorised
        if holder is None:
            raise SnapshotError(f"The library {self.library_id!r} is no longer held on this desk.")
        return holder

    @property
    def current(self) -> Snapshot:
        return self._holder().current

    def swap(self, new: Snapshot) -> Snapshot:
        return self._holder().swap(new)


class LibrarySet:
    """The libraries this desk holds, by library id, and the applied authorisation that governs them.

    ``manifest`` returns the authorisation manifest applied on this desk (None: none received yet, and
    nothing may be searched); ``clock`` is the desk's clock, injectable for tests of expiry.
    """

    def __init__(self, holders: Mapping[str, LibraryHolder], manifest: Callable[[], AuthorisationManifest | None],
                 *, primary: str = DEFAULT_LIBRARY_ID, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock_doubt: Callable[[], str | None] = lambda: None) -> None:
        """``clock``: under a clock doubt, the guard's estimate (``ClockGuard.limits_now``). ``clock_doubt``
        (``ClockGuard.unbounded_doubt``): while it names a reason there is no estimate, and every library is
        refused, since each has an end a clock set back could hide (a temporary library's expiry, and every
        library's review date)."""
        self._holders: dict[str, LibraryHolder] = dict(holders)
        self._manifest = manifest
        self._clock = clock
        self._clock_doubt = clock_doubt
        self._lock = threading.Lock()
        self._repairing: set[str] = set()  # damaged copies: never searched until a fresh one replaces them
        self.primary_id = primary
        #: The ``LibraryHolder`` shape for single-library callers (``Desk.library``).
        self.primary = PrimaryLibrary(self, primary)

    # --- what may be searched ------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    def manifest(self) -> AuthorisationManifest | None:
        return self._manifest()

    def choices(self, now: datetime | None = None, purpose: str = CUSTODY) -> list[LibraryChoice]:
        """The libraries an officer may choose now: authorised for ``purpose``, held, searchable; in the
        manifest's order (central lists them as the form shows them)."""
        now = now or self._clock()
        manifest = self._manifest()
        if manifest is None:
            return []
        out = []
        for entry in manifest.libraries:
            holder = self.holder(entry.library_id)
            if (holder is None or entry.refusal(now, purpose) is not None or self._clock_doubt() is not None
                    or entry.library_id in self.repairing()):
                continue
            out.append(LibraryChoice(entry.library_id, entry.name, entry.kind, entry.default,
                                     holder.current.version, entry.expires_at, entry.review_due))
        return out

    def refusal_code(self, library_id: str, now: datetime | None = None, purpose: str = CUSTODY) -> str | None:
        """Why ``library_id`` may not be searched now, as a code (None: it may be)."""
        now = now or self._clock()
        manifest = self._manifest()
        if manifest is None:
            return "no_manifest"
        code = manifest.refusal(library_id, now, purpose)
        if code is None and self.holder(library_id) is None:
            return "not_held"
        if code in (None, "expired", "review_overdue") and self._clock_doubt() is not None:
            return "clock_doubtful"  # refused either way, and said why: the clock cannot tell (nor is it destroyed)
        if code is None and library_id in self.repairing():
            return "under_repair"
        return code

    def refusal(self, library_id: str, now: datetime | None = None, purpose: str = CUSTODY) -> str | None:
        """Why ``library_id`` may not be searched now, in plain words for custody staff (None: it may be)."""
        code = self.refusal_code(library_id, now, purpose)
        if code is None:
            return None
        manifest = self._manifest()
        entry = manifest.library(library_id) if manifest is not None else None
        if entry is None:
            return refusal_message(library_id, library_id, code)
        return refusal_message(library_id, entry.name, code, expires_at=entry.expires_at,
                               review_due=entry.review_due)

    def current(self, library_id: str, now: datetime | None = None, purpose: str = CUSTODY) -> Snapshot:
        """The snapshot to search for ``library_id``; raises ``LibraryRefusedError`` (plain words) if it may
        not be searched now or is not held."""
        code = self.refusal_code(library_id, now, purpose)
        if code is not None:
            raise LibraryRefusedError(library_id, code, self.refusal(library_id, now, purpose) or code)
        holder = self.holder(library_id)
        assert holder is not None  # refusal_code said it is held
        return holder.current

    # --- what is held --------------------------------------------------------------------------

    def held(self) -> list[tuple[str, int]]:
        """(library_id, version) of every library on the desk, searchable or not (the heartbeat reports it)."""
        with self._lock:
            holders = sorted(self._holders.items())
        return [(library_id, holder.current.version) for library_id, holder in holders]

    def holder(self, library_id: str) -> LibraryHolder | None:
        with self._lock:
            return self._holders.get(library_id)

    def snapshot(self, library_id: str) -> Snapshot | None:
        """The held snapshot of ``library_id`` without the authorisation check: to show a past search's
        reference images, never to search."""
        holder = self.holder(library_id)
        return None if holder is None else holder.current

    def add(self, library_id: str, snapshot: Snapshot) -> LibraryHolder:
        """Hold a library received for the first time (the updater installed its first full version)."""
        with self._lock:
            if library_id in self._holders:
                raise SnapshotError(f"The library {library_id!r} is already held.")
            holder = self._holders[library_id] = LibraryHolder(snapshot)
            return holder

    # --- damaged copies ------------------------------------------------------------------------

    def repairing(self) -> set[str]:
        """Libraries whose copy on this desk is damaged: refused, and never updated by a delta, until repaired."""
        with self._lock:
            return set(self._repairing)

    def mark_repairing(self, library_id: str) -> bool:
        """Stop searching ``library_id`` at once (its file is damaged); False if it was already marked."""
        with self._lock:
            fresh = library_id not in self._repairing
            self._repairing.add(library_id)
            return fresh

    def repaired(self, library_id: str, snapshot: Snapshot) -> Snapshot | None:
        """Serve ``snapshot``, a fresh copy fetched from central, in place of the damaged one (which is returned
        for the caller to close). The version may be the same as the damaged one's: this is not an update.
        A library destroyed while its copy was fetched (``remove``) is not served again: ``snapshot`` itself is
        returned to be closed."""
        with self._lock:
            if library_id not in self._repairing:
                return snapshot
            held = self._holders.get(library_id)
            self._holders[library_id] = LibraryHolder(snapshot)
            self._repairing.discard(library_id)
        return None if held is None else held.current

    def remove(self, library_id: str) -> Snapshot | None:
        """Stop holding ``library_id`` (it is being destroyed); returns its snapshot for the caller to close."""
        with self._lock:
            holder = self._holders.pop(library_id, None)
            self._repairing.discard(library_id)  # a repair under way is dropped: nothing is to be served
        return None if holder is None else holder.current

    def close(self) -> None:
        with self._lock:
            holders, self._holders = list(self._holders.values()), {}
        for holder in holders:
            holder.current.close()
