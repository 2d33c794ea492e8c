"""Central's acknowledgement: "everything up to here from you is stored", signed by central.

It is cumulative (like a TCP ack): ``events_through`` is the highest sequence
number below which central holds every event with no gap, so a device may drop
those outbox rows knowing a lost or reordered ack costs nothing but a resend.
``checkpoint_through`` is the newest checkpoint stored; a checkpoint covers
the whole chain before it, so older unsent ones are not needed.

Because an ack deletes pending audit events on the desk, it is signed with
central's fleet-command key (``core.signed``, statement ``ACK_STATEMENT``) and
names the device it is for. It also carries ``head_hash``, the hash of event
``events_through`` as central stored it: the chain makes that hash stand for
every event before it, so the desk can check that central holds exactly the
events it logged (and not merely a claim about how many) before deleting any.
``issued_at`` lets the desk tell a fresh ack from a replayed one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.errors import WireFormatError
from core.signed import SignedByCentral
from core.topics import validate_device_id
from core.wire import aware_time, decode_object, encode_object

ACK_VERSION = 2
MAX_ACK_BYTES = 512
ACK_STATEMENT = "custody-rfr audit ack v1"
_FIELDS = {"v", "device_id", "events_through", "checkpoint_through", "head_hash", "issued_at"}
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Ack(SignedByCentral):
    STATEMENT: ClassVar[str] = ACK_STATEMENT
    MAX_BYTES: ClassVar[int] = MAX_ACK_BYTES
    WHAT: ClassVar[str] = "Ack"

    device_id: str
    events_through: int
    checkpoint_through: int
    head_hash: str  # the hash of event ``events_through`` (the chain's genesis hash when it is 0)
    issued_at: str

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        for name in ("events_through", "checkpoint_through"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise WireFormatError(f"Ack field {name!r} must be a non-negative integer.")
        if not isinstance(self.head_hash, str) or not _HASH.fullmatch(self.head_hash):
            raise WireFormatError("Ack head hash must be 64 lower-case hex digits.")
        self.issued()

    def issued(self) -> datetime:
        """When central made the ack (its clock)."""
        return aware_time(self.issued_at, "Ack issued_at")

    @classmethod
    def now(cls, device_id: str, events_through: int, checkpoint_through: int, head_hash: str) -> Ack:
        return cls(device_id, events_through, checkpoint_through, head_hash,
                   datetime.now(UTC).isoformat(timespec="microseconds"))

    def to_bytes(self) -> bytes:
        """The unsigned body (what the signature covers)."""
        return encode_object({"v": ACK_VERSION, **asdict(self)}, MAX_ACK_BYTES, "Ack")

    def signed(self, key: Ed25519PrivateKey) -> bytes:
        """What central publishes: the body with its signature."""
        return self.seal(self.to_bytes(), key)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Ack:
        """Parse an unsigned body; on the desk use :meth:`from_signed`."""
        obj = decode_object(payload, MAX_ACK_BYTES, "Ack", version=ACK_VERSION, fields=_FIELDS)
        return cls(**obj)
