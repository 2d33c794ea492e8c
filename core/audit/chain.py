"""The hash chain: canonical event bytes, the genesis value and the link rule.

Each event's hash is ``sha256(prev_hash || sha256(canonical bytes))``. Hashing
the digest of the event rather than the event itself lets an export prove that
an event it leaves out (another officer's search, say) still sits in the chain,
by giving only that digest: nothing about the omitted event is revealed, yet
any change to it, its removal or an insertion breaks every later link.

The genesis value binds a chain to its device, so a chain cannot be replayed
as another device's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from core.events import AuditEvent

HASH_HEX_CHARS = 64
_GENESIS_LABEL = b"custody-rfr audit chain v1 genesis\x00"


def canonical_json(value: Any) -> bytes:
    """One byte form for a JSON value: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def genesis_hash(device_id: str) -> str:
    """The ``prev_hash`` of a device's first event."""
    return hashlib.sha256(_GENESIS_LABEL + device_id.encode()).hexdigest()


def canonical_bytes(event: AuditEvent) -> bytes:
    """Everything an event says, without its chain fields, in one byte form."""
    data = event.to_dict()
    data.pop("prev_hash", None)
    data.pop("hash", None)
    return canonical_json(data)


def event_digest(event: AuditEvent) -> str:
    """sha256 of the canonical bytes: what an export gives for an event it leaves out."""
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def link_hash(prev_hash: str, digest: str) -> str:
    """The link rule: ``sha256(prev_hash || digest)`` over the raw 32-byte values."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(digest)).hexdigest()


def expected_hash(event: AuditEvent) -> str:
    """The hash an event must carry given its ``prev_hash`` and content."""
    if event.prev_hash is None:
        raise ValueError("event has no prev_hash")
    return link_hash(event.prev_hash, event_digest(event))


def seal(event: AuditEvent, prev_hash: str) -> AuditEvent:
    """``event`` linked after ``prev_hash``: the form that is stored and sent."""
    unsealed = replace(event, prev_hash=prev_hash, hash=None)
    return replace(unsealed, hash=expected_hash(unsealed))


def is_hash(value: object) -> bool:
    """True for a lower-case 64-digit hex string."""
    return (isinstance(value, str) and len(value) == HASH_HEX_CHARS
            and all(c in "0123456789abcdef" for c in value))
