"""Central's acknowledgement: "everything up to here from you is stored".

It is cumulative (like a TCP ack): ``events_through`` is the highest sequence
number below which central holds every event with no gap, so a device may drop
those outbox rows knowing a lost or reordered ack costs nothing but a resend.
``checkpoint_through`` is the newest checkpoint stored; a checkpoint covers
the whole chain before it, so older unsent ones are not needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.audit.chain import canonical_json
from core.errors import WireFormatError
from core.topics import validate_device_id
from core.wire import decode_object

ACK_VERSION = 1
MAX_ACK_BYTES = 512


@dataclass(frozen=True)
class Ack:
    device_id: str
    events_through: int
    checkpoint_through: int

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        for name in ("events_through", "checkpoint_through"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise WireFormatError(f"Ack field {name!r} must be a non-negative integer.")

    def to_bytes(self) -> bytes:
        return canonical_json({"v": ACK_VERSION, "device_id": self.device_id,
                               "events_through": self.events_through,
                               "checkpoint_through": self.checkpoint_through})

    @classmethod
    def from_bytes(cls, payload: bytes) -> Ack:
        obj = decode_object(payload, MAX_ACK_BYTES, "Ack", version=ACK_VERSION)
        try:
            return cls(device_id=obj["device_id"], events_through=obj["events_through"],
                       checkpoint_through=obj["checkpoint_through"])
        except KeyError as e:
            raise WireFormatError(f"Ack is missing {e}.") from e
