"""Session lifetimes over a store: the token is random, the store keeps only its SHA-256.

Each product keeps the rows in its own database (the desk in its encrypted device database, central
in its SQLite or PostgreSQL database); the rules on top are the same: a session unused for
``idle_s`` or older than ``absolute_s`` is gone, and a copy of the database cannot be replayed as a
cookie because only the token's hash is stored.

The times in the rows are wall-clock times, and a wall clock can be set back by hours, which would keep a
session alive long past its timeouts. Given a ``monotonic`` clock, the manager also remembers, for each session
this process created or last used, the monotonic reading beside the wall time it wrote: while the row still
holds that wall time (no other process has used the session since), the session's idle and absolute ages are
read from the monotonic clock, which never jumps; a timeout is reached if either clock says so (ending early on
a clock set forwards is the safe reading). A session the process has no reading for (made before a restart, or
used by another worker) is judged on the wall clock, unless ``clock_doubt`` names a reason: then it is ended,
and ``on_ended`` is told why (the desk audits it), because its age cannot be known. So is one whose row was
written later than the wall clock's now (by more than ``FUTURE_S``): the clock went back after it was used, by
an amount too small for the desk to doubt the clock at start (within the gap since its newest audit event).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Clock = Callable[[], float]


def token_hash(token: str) -> str:
    """What a store keeps instead of the cookie's token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRow:
    data: dict[str, Any]
    created_at: float
    last_seen: float


class SessionStoreInterface(Protocol):
    """Rows keyed by ``token_hash(token)``; times are UNIX seconds given by the caller."""

    def create(self, token: str, data: dict[str, Any], now: float) -> None: ...
    def get(self, token: str) -> SessionRow | None: ...
    def save(self, token: str, data: dict[str, Any], now: float) -> None: ...
    def delete(self, token: str) -> None: ...
    def purge(self, idle_before: float, created_before: float) -> None: ...


@dataclass
class _Reading:
    """What this process wrote for one session, wall and monotonic side by side."""

    created_wall: float
    created_mono: float
    seen_wall: float
    seen_mono: float


#: A session row written more than this after the wall clock's now was written before the clock went back (by
#: hours, say, while the service was stopped): its age cannot be read from that clock, so it is ended.
FUTURE_S = 60.0

#: Why a session was ended by the manager rather than by its user (``on_ended``'s second argument).
ENDED_IDLE, ENDED_ABSOLUTE, ENDED_CLOCK = "idle_timeout", "absolute_timeout", "clock_doubtful"


class SessionManager:
    """Server-side sessions: the cookie holds a random token, the data stays in the product's database."""

    def __init__(self, store: SessionStoreInterface, *, idle_s: float, absolute_s: float,
                 clock: Clock = time.time, monotonic: Clock | None = None,
                 clock_doubt: Callable[[], str | None] = lambda: None,
                 on_ended: Callable[[dict[str, Any], str], None] | None = None) -> None:
        self._store, self._clock, self._monotonic = store, clock, monotonic
        self._clock_doubt, self._on_ended = clock_doubt, on_ended
        self.idle_s, self.absolute_s = idle_s, absolute_s
        self._readings: dict[str, _Reading] = {}  # by token hash; only with a monotonic clock
        self._lock = threading.Lock()

    def _note(self, token: str, wall: float, created: bool) -> None:
        if self._monotonic is None:
            return
        mono, key = self._monotonic(), token_hash(token)
        with self._lock:
            old = self._readings.get(key)
            if created:
                self._readings[key] = _Reading(wall, mono, wall, mono)
            elif old is not None:  # (none: ended meanwhile, or judged on the wall clock at its next load)
                old.seen_wall, old.seen_mono = wall, mono

    def create(self, data: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._store.create(token, data, now)
        self._note(token, now, created=True)
        return token

    def _timed_out(self, token: str, row: SessionRow) -> tuple[str | None, bool]:
        """Why the session is over (None: it is not), and whether only the monotonic clock could tell."""
        now = self._clock()
        if now - row.last_seen > self.idle_s:
            return ENDED_IDLE, False
        if now - row.created_at > self.absolute_s:
            return ENDED_ABSOLUTE, False
        if self._monotonic is None:
            return None, False
        key, mono = token_hash(token), self._monotonic()
        with self._lock:
            reading = self._readings.get(key)
            if reading is not None and (reading.created_wall, reading.seen_wall) == (row.created_at, row.last_seen):
                if mono - reading.seen_mono > self.idle_s:
                    return ENDED_IDLE, True
                if mono - reading.created_mono > self.absolute_s:
                    return ENDED_ABSOLUTE, True
                return None, False
        if self._clock_doubt() is not None:
            return ENDED_CLOCK, True
        if max(row.created_at, row.last_seen) - now > FUTURE_S:  # written later than now: the clock went back
            return ENDED_CLOCK, True
        with self._lock:  # a trusted clock: the row's ages are right now, so from here the monotonic clock counts
            self._readings[key] = _Reading(row.created_at, mono - (now - row.created_at), row.last_seen,
                                           mono - (now - row.last_seen))
        return None, False

    def load(self, token: str) -> dict[str, Any] | None:
        """The session's data, or None if it does not exist or has timed out (a timed-out row is deleted)."""
        row = self._store.get(token)
        if row is None:
            return None
        why, clock_only = self._timed_out(token, row)
        if why is not None:
            self.end(token)
            if clock_only and self._on_ended is not None:  # the wall clock alone would have kept it alive
                self._on_ended(row.data, why)
            return None
        return row.data

    def save(self, token: str, data: dict[str, Any]) -> None:
        now = self._clock()
        self._store.save(token, data, now)
        self._note(token, now, created=False)

    def end(self, token: str) -> None:
        with self._lock:
            self._readings.pop(token_hash(token), None)
        self._store.delete(token)

    def purge(self) -> None:
        now = self._clock()
        self._store.purge(now - self.idle_s, now - self.absolute_s)
        if self._monotonic is not None:
            mono = self._monotonic()
            with self._lock:
                for key in [k for k, r in self._readings.items() if mono - r.created_mono > self.absolute_s]:
                    del self._readings[key]
