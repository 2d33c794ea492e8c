"""Central's signature on what it tells the desks: one rule for every signed control message.

Acks, peer review outcomes, library announcements and fleet commands all change something on a
desk (pending audit events deleted, a case closed, an update check, a wipe), and anyone who can
publish on central's topics (central's certificate, the broker, its administrator) could otherwise
send them. So each is signed with central's fleet-command Ed25519 key, whose public half every desk
is given at provisioning, and verified on the desk before it acts.

What is signed is a *statement*: the message's own fields plus a ``statement`` label naming the
message type (``ACK_STATEMENT`` and the like, kept with each type), in one canonical byte form. A
signature made for one type can therefore never pass for another, even where the fields happen to
match, and a desk-specific message names its ``device_id`` inside the signed fields.

``seal`` and ``open_sealed`` carry the signature as one more field, ``signature``, of the message's
JSON object, and :class:`SignedByCentral` gives a message type ``seal`` and ``from_signed`` with its
own label; ``sign`` and ``verify`` are the primitives (``core.fleet.FleetCommand`` keeps its own
field layout and uses them directly). The desk verifies before it parses the message's meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.chain import canonical_json
from core.errors import WireFormatError
from core.wire import decode_object, encode_object

SIGNATURE_FIELD = "signature"
_LABEL_FIELD = "statement"
#: A sealed message is its body plus ``,"signature":"<128 hex>"``: this much larger, with room to spare.
SEAL_OVERHEAD = 160


class UnsignedMessageError(WireFormatError):
    """A control message is not signed by central's fleet-command key, or was signed as something else."""


def statement(label: str, fields: Mapping[str, Any]) -> bytes:
    """The exact bytes signed: the fields and the label that says what kind of message they are."""
    if _LABEL_FIELD in fields or SIGNATURE_FIELD in fields:
        raise WireFormatError(f"A signed message may not carry its own {_LABEL_FIELD!r} or {SIGNATURE_FIELD!r}.")
    return canonical_json({_LABEL_FIELD: label, **fields})


def sign(key: Ed25519PrivateKey, label: str, fields: Mapping[str, Any]) -> str:
    """Central's signature (128 lower-case hex digits) over ``fields`` as a ``label`` statement."""
    return key.sign(statement(label, fields)).hex()


def is_signature_text(value: object) -> bool:
    """Whether ``value`` has the form of a signature (128 lower-case hex digits), before it is checked."""
    return isinstance(value, str) and len(value) == 128 and all(c in "0123456789abcdef" for c in value)


def verify(public_key: Ed25519PublicKey, label: str, fields: Mapping[str, Any], signature: object,
           what: str) -> None:
    """Raise :class:`UnsignedMessageError` unless central signed exactly these fields as a ``label`` statement."""
    if not is_signature_text(signature):
        raise UnsignedMessageError(f"The {what} carries no signature from central (128 hex digits).")
    assert isinstance(signature, str)
    try:
        public_key.verify(bytes.fromhex(signature), statement(label, fields))
    except InvalidSignature as e:
        raise UnsignedMessageError(f"The {what} is not signed by central's fleet-command key.") from e


def seal(key: Ed25519PrivateKey, label: str, body: bytes, *, limit: int, what: str) -> bytes:
    """``body`` (a JSON object of at most ``limit`` bytes) with central's signature added as one more field."""
    obj = decode_object(body, limit, what)
    return encode_object({**obj, SIGNATURE_FIELD: sign(key, label, obj)}, limit + SEAL_OVERHEAD, what)


def open_sealed(payload: bytes, public_key: Ed25519PublicKey, label: str, *, limit: int, what: str) -> bytes:
    """The body of a sealed message, once its signature is verified; for the message type's strict parser.

    Raises :class:`UnsignedMessageError` (a ``WireFormatError``) for a missing, forged or mislabelled
    signature, and ``WireFormatError`` for a payload that is not a JSON object within the limits.
    """
    obj = decode_object(payload, limit + SEAL_OVERHEAD, what)
    signature = obj.pop(SIGNATURE_FIELD, None)
    verify(public_key, label, obj, signature, what.lower())
    return encode_object(obj, limit, what)


class SignedByCentral:
    """A message type central signs: ``STATEMENT`` labels its signatures, ``MAX_BYTES`` and ``WHAT`` are its
    body's size limit and name; ``from_bytes`` is its strict parser of the unsigned body."""

    STATEMENT: ClassVar[str]
    MAX_BYTES: ClassVar[int]
    WHAT: ClassVar[str]

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        raise NotImplementedError

    @classmethod
    def seal(cls, payload: bytes, key: Ed25519PrivateKey) -> bytes:
        """An unsigned body of this type signed by central, as it is sent."""
        return seal(key, cls.STATEMENT, payload, limit=cls.MAX_BYTES, what=cls.WHAT)

    @classmethod
    def from_signed(cls, payload: bytes, central_key: Ed25519PublicKey) -> Self:
        """A message of this type central signed; ``WireFormatError`` (:class:`UnsignedMessageError` for a
        missing or foreign signature) otherwise, before any of it is believed."""
        return cls.from_bytes(open_sealed(payload, central_key, cls.STATEMENT, limit=cls.MAX_BYTES, what=cls.WHAT))
