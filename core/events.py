"""The audit event: what an appliance tells central about every action.

An event never carries biometric data (no image, template or thumbnail):
only who did what, when, why and with what outcome. The JSON form is the
wire format; parsing is strict so a malformed or oversized payload is
rejected with a reason instead of being half-stored.

A stored or sent event is *sealed*: ``prev_hash`` and ``hash`` link it into its
device's hash chain (``core.audit.chain``). They are optional here only so an
event can be built first and sealed by the log that gives it its place.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import WireFormatError
from core.topics import validate_device_id
from core.wire import decode_object

SCHEMA_VERSION = 2
MAX_PAYLOAD_BYTES = 16 * 1024
# Every action at the desk, including the ones that were refused: an auditor must be
# able to show that each search and each decision was recorded.
EVENT_TYPES = frozenset({
    "login", "logout", "submission", "approval", "search", "search_refused", "candidate_viewed", "access_refused",
    "adjudication", "match_report", "peer_review", "deletion", "library_loaded", "library_update",
    "library_update_refused", "config_change", "request_refused", "device_wiped",
    # The approver's other two answers to a submission: refused (the case ends) or returned for changes.
    "submission_refused", "submission_returned",
    # Governed libraries (core.library_authorisation): a manifest applied or refused, a library's copy destroyed
    # at expiry or retirement, with its proof of deletion.
    "authorisation_applied", "authorisation_refused", "library_destroyed",
    # A fault of the desk itself that bears on the events around it: its clock jumped or disagrees with central's
    # (the times nearby are doubtful), or its database failed SQLCipher's integrity check.
    "device_fault",
    # Central, restored from a backup, asked for the events logged since a moment again (a signed request).
    "events_resent",
    # Central rotated its fleet-command key: the desk trusts the new key from then on (a signed rekey command).
    "command_key_rotated",
})
_FIELDS = {"v", "event_id", "device_id", "seq", "occurred_at", "type", "actor", "outcome", "details",
           "prev_hash", "hash"}
# Keys that must never appear in details: they would carry biometric data.
_FORBIDDEN_DETAIL_KEYS = frozenset({"image", "probe", "template", "embedding", "thumbnail", "crop"})


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AuditEvent:
    device_id: str
    seq: int
    type: str
    actor: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = field(default_factory=_now)
    prev_hash: str | None = None
    hash: str | None = None

    @property
    def sealed(self) -> bool:
        """True once the event carries its chain fields."""
        return self.prev_hash is not None and self.hash is not None

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 1:
            raise WireFormatError("Event sequence number must be a positive integer.")
        if not isinstance(self.type, str) or self.type not in EVENT_TYPES:
            raise WireFormatError(f"Unknown event type {self.type!r}.")
        for name in ("actor", "outcome", "event_id", "occurred_at"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 200:
                raise WireFormatError(f"Event field {name!r} must be a non-empty string of at most 200 characters.")
        try:
            uuid.UUID(self.event_id)
            datetime.fromisoformat(self.occurred_at)
        except ValueError as e:
            raise WireFormatError(f"Event id or time is malformed: {e}") from e
        if not isinstance(self.details, dict):
            raise WireFormatError("Event details must be an object.")
        bad = _FORBIDDEN_DETAIL_KEYS.intersection(k.lower() for k in self.details)
        if bad:
            raise WireFormatError(f"Event details may not carry biometric data ({', '.join(sorted(bad))}).")
        for name in ("prev_hash", "hash"):
            value = getattr(self, name)
            if value is not None and not _is_hash(value):
                raise WireFormatError(f"Event field {name!r} must be 64 lower-case hex digits.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "event_id": self.event_id,
            "device_id": self.device_id,
            "seq": self.seq,
            "occurred_at": self.occurred_at,
            "type": self.type,
            "actor": self.actor,
            "outcome": self.outcome,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def to_bytes(self) -> bytes:
        try:
            data = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise WireFormatError(f"Event details are not plain JSON: {e}") from e
        if len(data) > MAX_PAYLOAD_BYTES:
            raise WireFormatError(f"Event is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}.")
        return data

    @classmethod
    def from_bytes(cls, payload: bytes) -> AuditEvent:
        obj = decode_object(payload, MAX_PAYLOAD_BYTES, "Event", version=SCHEMA_VERSION, fields=_FIELDS)
        try:
            return cls(**obj)
        except TypeError as e:
            raise WireFormatError(f"Event fields have the wrong types: {e}") from e
