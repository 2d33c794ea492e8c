"""Session lifetimes over a store: the token is random, the store keeps only its SHA-256.

Each product keeps the rows in its own database (the desk in its encrypted device database, central
in its SQLite or PostgreSQL database); the rules on top are the same: a session unused for
``idle_s`` or older than ``absolute_s`` is gone, and a copy of the database cannot be replayed as a
cookie because only the token's hash is stored.
"""

from __future__ import annotations

import hashlib
import secrets
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


class SessionManager:
    """Server-side sessions: the cookie holds a random token, the data stays in the product's database."""

    def __init__(self, store: SessionStoreInterface, *, idle_s: float, absolute_s: float,
                 clock: Clock = time.time) -> None:
        self._store, self._clock = store, clock
        self.idle_s, self.absolute_s = idle_s, absolute_s

    def create(self, data: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        self._store.create(token, data, self._clock())
        return token

    def load(self, token: str) -> dict[str, Any] | None:
        """The session's data, or None if it does not exist or has timed out (a timed-out row is deleted)."""
        row = self._store.get(token)
        if row is None:
            return None
        now = self._clock()
        if now - row.last_seen > self.idle_s or now - row.created_at > self.absolute_s:
            self._store.delete(token)
            return None
        return row.data

    def save(self, token: str, data: dict[str, Any]) -> None:
        self._store.save(token, data, self._clock())

    def end(self, token: str) -> None:
        self._store.delete(token)

    def purge(self) -> None:
        now = self._clock()
        self._store.purge(now - self.idle_s, now - self.absolute_s)
