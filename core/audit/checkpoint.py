"""Signed checkpoints: the device's statement "my chain has N events and its head is H".

A hash chain alone shows that nothing between two points changed, but whoever
holds the events could rebuild the whole chain. A checkpoint signed with the
device's Ed25519 key pins the head, so a chain rebuilt by anyone else (central
included) no longer matches. Signing the head commits to every earlier event,
so a later checkpoint makes the earlier ones redundant: losing one is harmless.

Pure: keys come in as ``cryptography`` objects or raw bytes, never from files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.chain import canonical_json, is_hash
from core.audit.errors import KeyFormatError, SignatureError
from core.errors import WireFormatError
from core.topics import validate_device_id
from core.wire import decode_object

CHECKPOINT_VERSION = 1
MAX_CHECKPOINT_BYTES = 2048
_STATEMENT_LABEL = "custody-rfr audit checkpoint v1"
_FIELDS = {"v", "device_id", "seq", "head", "signed_at", "signature"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Checkpoint:
    device_id: str
    seq: int
    head: str
    signed_at: str
    signature: str

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 1:
            raise WireFormatError("Checkpoint sequence number must be a positive integer.")
        if not is_hash(self.head):
            raise WireFormatError("Checkpoint head must be 64 lower-case hex digits.")
        if not isinstance(self.signed_at, str) or len(self.signed_at) > 64:
            raise WireFormatError("Checkpoint time must be a short string.")
        try:
            datetime.fromisoformat(self.signed_at)
        except ValueError as e:
            raise WireFormatError(f"Checkpoint time is malformed: {e}") from e
        if (not isinstance(self.signature, str) or len(self.signature) != 128
                or any(c not in "0123456789abcdef" for c in self.signature)):
            raise WireFormatError("Checkpoint signature must be 128 lower-case hex digits.")

    @staticmethod
    def statement(device_id: str, seq: int, head: str, signed_at: str) -> bytes:
        """The exact bytes that are signed; labelled so they can never be mistaken for other signed data."""
        return canonical_json({"statement": _STATEMENT_LABEL, "device_id": device_id, "seq": seq,
                               "head": head, "signed_at": signed_at})

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, device_id: str, seq: int, head: str,
             signed_at: str | None = None) -> Checkpoint:
        signed_at = signed_at or _now()
        signature = key.sign(cls.statement(device_id, seq, head, signed_at)).hex()
        return cls(device_id=device_id, seq=seq, head=head, signed_at=signed_at, signature=signature)

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise ``SignatureError`` unless the device's key signed exactly this checkpoint."""
        try:
            public_key.verify(bytes.fromhex(self.signature),
                              self.statement(self.device_id, self.seq, self.head, self.signed_at))
        except InvalidSignature as e:
            raise SignatureError(
                f"Checkpoint {self.device_id} seq {self.seq} is not signed by the device's registered key."
            ) from e

    def to_dict(self) -> dict[str, Any]:
        return {"v": CHECKPOINT_VERSION, "device_id": self.device_id, "seq": self.seq, "head": self.head,
                "signed_at": self.signed_at, "signature": self.signature}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object) -> Checkpoint:
        if not isinstance(obj, dict):
            raise WireFormatError("Checkpoint must be a JSON object.")
        if obj.get("v") != CHECKPOINT_VERSION:
            raise WireFormatError(f"Unsupported checkpoint version {obj.get('v')!r}.")
        if set(obj) != _FIELDS:
            missing, extra = _FIELDS - set(obj), set(obj) - _FIELDS
            raise WireFormatError(
                f"Checkpoint fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}.")
        fields = {k: v for k, v in obj.items() if k != "v"}
        return cls(**fields)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Checkpoint:
        return cls.from_dict(decode_object(payload, MAX_CHECKPOINT_BYTES, "Checkpoint"))


def public_key_from_bytes(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo), raw 32 bytes, or 64 hex digits."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
            if not isinstance(key, Ed25519PublicKey):
                raise KeyFormatError("The public key is not an Ed25519 key.")
            return key
        raw = bytes.fromhex(text.decode("ascii")) if len(text) == 64 else data
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFormatError(f"Not an Ed25519 public key (PEM, raw or hex): {e}") from e


def public_key_hex(key: Ed25519PublicKey) -> str:
    """Raw public key as 64 hex digits: how keys are stored and exported."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
