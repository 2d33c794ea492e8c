"""A device's audit chain made in memory: sealed events and signed checkpoints without an appliance.

Central's ingest tests and the ingest benchmark publish what it makes as if many desks were sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit import chain
from core.audit.checkpoint import Checkpoint, public_key_hex
from core.events import AuditEvent


@dataclass
class ChainWriter:
    """Builds a device's sealed events and signed checkpoints in memory (no appliance needed)."""

    device_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    seq: int = 0
    head: str = ""

    def __post_init__(self) -> None:
        self.head = chain.genesis_hash(self.device_id)

    @property
    def public_hex(self) -> str:
        return public_key_hex(self.key.public_key())

    def event(self, type: str = "search", actor: str = "pc1", outcome: str = "candidates_shown",
              **details: object) -> AuditEvent:
        self.seq += 1
        e = chain.seal(AuditEvent(device_id=self.device_id, seq=self.seq, type=type, actor=actor, outcome=outcome,
                                  details=dict(details)), self.head)
        assert e.hash is not None
        self.head = e.hash
        return e

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.sign(self.key, self.device_id, self.seq, self.head)
