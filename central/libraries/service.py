"""What the RFR team may do to a reference library, and the rules each action keeps.

A library is requested with its purpose, legal basis and the reference of the authorising document;
it is then authorised (or refused) by a *different* person holding ``library_authoriser``: the
two-person rule is enforced here, not only on the page, so no route or script can authorise a
library its own requester asked for. The authoriser gives their name and rank and the review date;
a temporary library cannot be requested or authorised without an expiry. An authorised library is
reviewed (a new review date), suspended (desks refuse it but keep it; a second person reinstates it) or
retired (desks destroy it); it is searched only at the desks it is granted to. Every action is written
to the library log in the same transaction as the change (``central.libraries.store``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from central.database import iso
from central.libraries.store import EVERY_DESK, LibraryRecord, LibraryStore
from core.errors import CustodyRfrError
from core.library_authorisation import CUSTODY, DEVICE_ID, LIBRARY_ID

ROLE = "library_authoriser"
KINDS = ("substantive", "temporary")
_LIBRARY_ID = re.compile(LIBRARY_ID)
_MAX_TEXT = 2000
Clock = Callable[[], datetime]


class LibraryActionError(CustodyRfrError):
    """An action on a library was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Actor:
    """Who acts: the signed-in central account and its roles."""

    username: str
    roles: frozenset[str]


@dataclass(frozen=True)
class LibraryRequest:
    library_id: str
    name: str
    kind: str
    purpose_text: str
    legal_basis: str
    authority_reference: str
    expires_at: datetime | None = None
    default_for_custody: bool = True


def _text(value: str, what: str, limit: int = _MAX_TEXT) -> str:
    value = (value or "").strip()
    if not value:
        raise LibraryActionError(f"Enter {what}.")
    if len(value) > limit:
        raise LibraryActionError(f"{what[0].upper()}{what[1:]} must be {limit} characters or fewer.")
    return value


class LibraryService:
    def __init__(self, store: LibraryStore, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._store, self._clock = store, clock

    @property
    def store(self) -> LibraryStore:
        return self._store

    # -- the actions ----------------------------------------------------------------------------------

    def request(self, actor: Actor, req: LibraryRequest) -> LibraryRecord:
        """Record a library asked for; it is searched nowhere until another person authorises it."""
        self._require_role(actor)
        now = self._clock()
        library_id = (req.library_id or "").strip()
        if not _LIBRARY_ID.fullmatch(library_id):
            raise LibraryActionError("The library id is 1 to 63 lower-case letters, digits, dots, dashes or "
                                     "underscores, starting with a letter or digit (for example temp-op-kestrel).")
        if req.kind not in KINDS:
            raise LibraryActionError("Choose whether the library is substantive or temporary.")
        expires_at = self._expiry(req.kind, req.expires_at, now)
        record = LibraryRecord(
            library_id=library_id, name=_text(req.name, "the library's name", 120), kind=req.kind,
            purposes=(CUSTODY,), purpose_text=_text(req.purpose_text, "the purpose"),
            legal_basis=_text(req.legal_basis, "the legal basis"),
            authority_reference=_text(req.authority_reference, "the authority reference", 200),
            default_for_custody=bool(req.default_for_custody), status="requested", requested_by=actor.username,
            requested_at=iso(now), expires_at=iso(expires_at) if expires_at else None)
        detail = {"name": record.name, "kind": record.kind, "purpose_text": record.purpose_text,
                  "legal_basis": record.legal_basis, "authority_reference": record.authority_reference,
                  "expires_at": record.expires_at, "default_for_custody": record.default_for_custody}
        if not self._store.insert(record, actor.username, detail, now):
            raise LibraryActionError(f"There is already a library with the id {library_id}; choose another id.")
        return record

    def authorise(self, actor: Actor, library_id: str, *, authoriser_name: str, authoriser_rank: str,
                  review_due: date, expires_at: datetime | None = None) -> LibraryRecord:
        """Authorise a requested library: another person than its requester, with their name and rank."""
        record = self._second_person(actor, library_id, "requested_by",
                                     "You requested {name}, so you cannot authorise it: a second person with the "
                                     f"{ROLE} role must authorise it (two-person rule).")
        now = self._clock()
        expiry = self._expiry(record.kind, expires_at or _parse(record.expires_at), now)
        if review_due <= now.date():
            raise LibraryActionError("The review date must be after today.")
        if expiry is not None and review_due > expiry.date():
            review_due = expiry.date()  # a temporary library is reviewed by its expiry at the latest
        name, rank = _text(authoriser_name, "your name", 120), _text(authoriser_rank, "your rank", 60)
        changes = {"status": "authorised", "authorised_by": name, "authorised_rank": rank,
                   "authorised_account": actor.username, "authorised_at": iso(now),
                   "review_due": review_due.isoformat(), "expires_at": iso(expiry) if expiry else None,
                   "status_reason": None}
        detail = {"authorised_by": name, "authorised_rank": rank, "review_due": review_due.isoformat(),
                  "expires_at": changes["expires_at"]}
        return self._transition(record, ("requested",), changes, "authorise", actor, detail, now)

    def refuse(self, actor: Actor, library_id: str, reason: str) -> LibraryRecord:
        """Refuse a request (anyone with the role but the requester); the record and reason are kept."""
        record = self._second_person(actor, library_id, "requested_by",
                                     "You requested {name}; a second person decides on it. To stop the request, "
                                     "ask another library authoriser to refuse it.")
        why = _text(reason, "why the library is refused", 500)
        now = self._clock()
        return self._transition(record, ("requested",), {"status": "refused", "refused_at": iso(now),
                                                         "status_reason": why},
                                "refuse", actor, {"reason": why}, now)

    def review(self, actor: Actor, library_id: str, *, review_due: date, notes: str) -> LibraryRecord:
        """Record that the library was reviewed and is still necessary and proportionate, until ``review_due``."""
        record = self._target(actor, library_id)
        now = self._clock()
        if review_due <= now.date():
            raise LibraryActionError("The next review date must be after today.")
        expiry = _parse(record.expires_at)
        if expiry is not None and review_due > expiry.date():
            review_due = expiry.date()
        why = _text(notes, "what the review found", 1000)
        return self._transition(record, ("authorised", "suspended"),
                                {"review_due": review_due.isoformat(), "reviewed_at": iso(now)},
                                "review", actor, {"review_due": review_due.isoformat(), "notes": why}, now)

    def suspend(self, actor: Actor, library_id: str, reason: str) -> LibraryRecord:
        """Desks refuse a suspended library at once (next manifest) but keep their copy."""
        record = self._target(actor, library_id)
        why = _text(reason, "why the library is suspended", 500)
        now = self._clock()
        return self._transition(record, ("authorised",), {"status": "suspended", "suspended_at": iso(now),
                                                          "suspended_by": actor.username, "status_reason": why},
                                "suspend", actor, {"reason": why}, now)

    def reinstate(self, actor: Actor, library_id: str, reason: str) -> LibraryRecord:
        """Lift a suspension; like authorising, a second person decides (not whoever suspended it)."""
        record = self._second_person(actor, library_id, "suspended_by",
                                     "You suspended {name}, so another library authoriser must reinstate it "
                                     "(two-person rule).")
        why = _text(reason, "why the suspension is lifted", 500)
        now = self._clock()
        review_due = _parse_day(record.review_due)
        if review_due is not None and review_due < now.date():
            raise LibraryActionError(f"{record.name} was due for review on {record.review_due}: record a review "
                                     "with a new review date first.")
        return self._transition(record, ("suspended",), {"status": "authorised", "status_reason": None},
                                "reinstate", actor, {"reason": why}, now)

    def retire(self, actor: Actor, library_id: str, reason: str) -> LibraryRecord:
        """Retired for good: desks destroy their copies when the next manifest lists it under ``retired``."""
        record = self._target(actor, library_id)
        why = _text(reason, "why the library is retired", 500)
        now = self._clock()
        return self._transition(record, ("authorised", "suspended"), {"status": "retired", "retired_at": iso(now),
                                                                      "status_reason": why},
                                "retire", actor, {"reason": why}, now)

    def grant(self, actor: Actor, library_id: str, device_id: str) -> bool:
        """Let a desk (or ``*``, every desk) search the library; False if it already could."""
        record = self._target(actor, library_id)
        if record.status in ("retired", "refused"):
            raise LibraryActionError(f"{record.name} is {record.status}; it cannot be given to a desk.")
        device = _device(device_id)
        return self._store.grant(record.library_id, device, actor.username, self._clock())

    def withdraw(self, actor: Actor, library_id: str, device_id: str) -> bool:
        """The desk may no longer search the library (not listed in its next manifest)."""
        record = self._target(actor, library_id)
        return self._store.withdraw(record.library_id, _device(device_id), actor.username, self._clock())

    # -- helpers --------------------------------------------------------------------------------------

    def _require_role(self, actor: Actor) -> None:
        if ROLE not in actor.roles:
            raise LibraryActionError(f"Only staff with the {ROLE} role may change reference libraries; ask "
                                     "your RFR team's system administrator.")

    def _target(self, actor: Actor, library_id: str) -> LibraryRecord:
        """The library an action is on, once the actor is found to hold the role."""
        self._require_role(actor)
        return self._existing(library_id)

    def _second_person(self, actor: Actor, library_id: str, first: Literal["requested_by", "suspended_by"],
                       refusal: str) -> LibraryRecord:
        """The library, for a decision a second person must take: the two-person rule, kept here so no page
        or script gets round it. ``first`` names the record's field holding who took the step being decided
        on (``requested_by``, ``suspended_by``); that account is refused with ``refusal`` (``{name}``: the
        library's name)."""
        record = self._target(actor, library_id)
        if getattr(record, first) == actor.username:
            raise LibraryActionError(refusal.format(name=record.name))
        return record

    def _existing(self, library_id: str) -> LibraryRecord:
        record = self._store.get(library_id)
        if record is None:
            raise LibraryActionError(f"There is no library with the id {library_id}.")
        return record

    def _expiry(self, kind: str, expires_at: datetime | None, now: datetime) -> datetime | None:
        if kind == "temporary":
            if expires_at is None:
                raise LibraryActionError("A temporary library must have an expiry date and time.")
            if expires_at.tzinfo is None:
                raise LibraryActionError("Give the expiry with its time zone.")
            if expires_at <= now:
                raise LibraryActionError("The expiry must be in the future.")
            return expires_at.astimezone(UTC)
        return None  # a substantive library is bounded by its review date, not an expiry

    def _transition(self, record: LibraryRecord, allowed: Collection[str], changes: dict[str, object],
                    action: str, actor: Actor, detail: dict[str, object], now: datetime) -> LibraryRecord:
        if record.status not in allowed:
            raise LibraryActionError(_not_now(record, action))
        updated = self._store.transition(record.library_id, tuple(allowed), changes, action, actor.username, detail,
                                         now)
        if updated is None:  # changed by someone else between our read and the row lock
            current = self._existing(record.library_id)
            raise LibraryActionError(_not_now(current, action))
        return updated


def _not_now(record: LibraryRecord, action: str) -> str:
    return (f"{record.name} is {record.status}, so it cannot be {_PAST[action]} now. Reload the page to see "
            "its current state.")


_PAST = {"authorise": "authorised", "refuse": "refused", "review": "reviewed", "suspend": "suspended",
         "reinstate": "reinstated", "retire": "retired"}


def _device(device_id: str) -> str:
    device = (device_id or "").strip()
    if device != EVERY_DESK and not DEVICE_ID.fullmatch(device):
        raise LibraryActionError("Enter a desk's device id (for example desk-01), or * for every desk.")
    return device


def _parse_day(day: str | None) -> date | None:
    return None if day is None else date.fromisoformat(day)


def _parse(moment: str | None) -> datetime | None:
    return None if moment is None else datetime.fromisoformat(moment)
