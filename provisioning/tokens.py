"""One-time enrolment tokens: a technician carries one to the desk, and it buys exactly one certificate.

Only a SHA-256 of each token is stored: the tokens are 192 random bits, so a plain hash cannot
be brute-forced, and a copy of ``fleet.db`` gives no usable token. A token is bound to one
device id when it is made; redeeming it is a single conditional UPDATE, so two concurrent
requests with the same token cannot both succeed.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from core.topics import is_service_identity, validate_device_id
from provisioning.errors import TokenError
from provisioning.ledger import Ledger

DEFAULT_VALIDITY = timedelta(hours=24)
MAX_VALIDITY = timedelta(days=14)


def _hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token(ledger: Ledger, device_id: str, *, valid_for: timedelta = DEFAULT_VALIDITY,
              reserved: frozenset[str] = frozenset(), now: datetime | None = None) -> str:
    """A fresh token for ``device_id``, shown once. ``reserved`` holds service names (central's CN)
    that no device may take, since the broker would grant that name central's rights."""
    validate_device_id(device_id)
    if device_id in reserved or is_service_identity(device_id):
        raise TokenError(f"{device_id!r} is reserved for a service; choose another device id.")
    if not timedelta(0) < valid_for <= MAX_VALIDITY:
        raise TokenError(f"A token may be valid for at most {MAX_VALIDITY.days} days.")
    moment = now or datetime.now(UTC)
    token = secrets.token_urlsafe(24)
    while token.startswith("-"):  # one in 64 would read as an option on the `issue` command line
        token = secrets.token_urlsafe(24)
    with ledger.conn:
        ledger.conn.execute("INSERT INTO tokens (token_hash, device_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                            (_hash(token), device_id, moment.isoformat(), (moment + valid_for).isoformat()))
    return token


def token_device(ledger: Ledger, token: str, *, now: datetime | None = None) -> str:
    """The device a token is for, if it may still be used; does not use it up."""
    row = ledger.conn.execute("SELECT device_id, expires_at, used_at FROM tokens WHERE token_hash = ?",
                              (_hash(token),)).fetchone()
    if row is None:
        raise TokenError("The enrolment token is not known: check it was copied whole, or ask central for a new one.")
    if row["used_at"] is not None:
        raise TokenError(f"The enrolment token for {row['device_id']} was already used at {row['used_at']}; "
                         "ask central for a new one (and report it if you did not use it).")
    if datetime.fromisoformat(row["expires_at"]) <= (now or datetime.now(UTC)):
        raise TokenError(f"The enrolment token for {row['device_id']} expired at {row['expires_at']}; "
                         "ask central for a new one.")
    return str(row["device_id"])


def consume(ledger: Ledger, token: str, *, now: datetime | None = None) -> str:
    """Use the token up, atomically; the device id it was for."""
    moment = now or datetime.now(UTC)
    device_id = token_device(ledger, token, now=moment)
    with ledger.conn:
        cur = ledger.conn.execute(
            "UPDATE tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            (moment.isoformat(), _hash(token), moment.isoformat()))
    if cur.rowcount != 1:
        raise TokenError(f"The enrolment token for {device_id} was used by another request just now.")
    return device_id
