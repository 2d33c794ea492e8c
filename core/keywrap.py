"""Envelope encryption: a content key wrapped to one desk's X25519 key, and documents sealed to many desks.

A library lineage is encrypted under a random 256-bit content key (the SQLCipher raw key). No desk is
given that key as it is: central wraps it to each desk's own key-wrapping key, an X25519 key made on
the desk at provisioning and sealed to its TPM, whose public half central registered. Wrapping is
ephemeral-static ECDH: a fresh X25519 key per wrap, HKDF-SHA256 over the shared secret (salted with
both public keys), AES-256-GCM over the content key. The associated data names the desk, the library
lineage and the key id, so a wrapped key moved to another desk, lineage or key id fails to open
rather than opening as something else.

``WrappedKey`` is one wrap (a compact binary blob, base64 in files); ``KeysDocument`` is the list
central publishes as a TUF target for one key id; ``SealedDocument`` encrypts a whole document (the
desk configuration) under a fresh key wrapped to each desk the same way. Everything here is pure:
no files, no network, and every parser refuses anything but exactly the format (``WireFormatError``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import CustodyRfrError, WireFormatError
from core.topics import validate_device_id
from core.wire import decode_object, encode_object

CONTENT_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_MAGIC = b"RFRW1"
_HKDF_INFO = b"rfr-keywrap-v1"
_KEY_ID_CONTEXT = b"rfr-content-key-id-v1"
KEY_ID = re.compile(r"^[0-9a-f]{32}$")
LIBRARY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: The scope a configuration's document key is wrapped under; ``validate_library_id`` refuses it as a library id,
#: so a configuration key can never pass for a library key or the other way round.
CONFIG_SCOPE = "desk-config"
#: The scope a peer-review probe's key is wrapped under (to central's review key, ``core.review_probe``); refused as
#: a library id too, so a probe key can never pass for a library or configuration key.
PROBE_SCOPE = "peer-review-probe"
_RESERVED_SCOPES = frozenset({CONFIG_SCOPE, PROBE_SCOPE})
KEYS_KIND = "keys"
SEALED_CONFIG_KIND = "sealed-config"
KEYS_VERSION = 1
MAX_RECIPIENTS = 20000
# A wrapped entry is under 200 bytes as base64; the cap leaves room for the largest fleet above.
MAX_KEYS_DOCUMENT_BYTES = MAX_RECIPIENTS * 256 + 4096
MAX_SEALED_PLAINTEXT_BYTES = 1024 * 1024
MAX_SEALED_DOCUMENT_BYTES = MAX_KEYS_DOCUMENT_BYTES + 2 * MAX_SEALED_PLAINTEXT_BYTES


class UnwrapError(CustodyRfrError):
    """A wrapped key or sealed document does not open with this desk's key (not for it, altered, or stale)."""


def validate_library_id(library_id: str) -> str:
    """Library ids name a lineage in wrapped keys and target names: short, lower case, no slashes."""
    if not isinstance(library_id, str) or not LIBRARY_ID.fullmatch(library_id) or library_id in _RESERVED_SCOPES:
        raise WireFormatError(f"Library id {library_id!r} is not valid: use 1-63 lower-case letters, digits, "
                              f"dots, dashes or underscores (not {CONFIG_SCOPE!r} or {PROBE_SCOPE!r}).")
    return library_id


def _scope(scope: str) -> str:
    return scope if scope in _RESERVED_SCOPES else validate_library_id(scope)


def key_id(content_key: bytes) -> str:
    """A content key's public name: lets desks and central say which key a file needs without showing it."""
    if len(content_key) != CONTENT_KEY_BYTES:
        raise WireFormatError(f"A content key is {CONTENT_KEY_BYTES} bytes, not {len(content_key)}.")
    return hashlib.sha256(_KEY_ID_CONTEXT + content_key).hexdigest()[:32]


def _key_id(value: str) -> str:
    if not isinstance(value, str) or not KEY_ID.fullmatch(value):
        raise WireFormatError("A key id is 32 lower-case hex digits.")
    return value


def public_key_bytes(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_hex(key: X25519PublicKey) -> str:
    """How central's registry stores a desk's key-wrapping key."""
    return public_key_bytes(key).hex()


def public_key_from_hex(text: str) -> X25519PublicKey:
    """A registered wrapping key (64 hex digits); anything else is refused."""
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError) as e:
        raise WireFormatError("A key-wrapping public key is 64 hex digits.") from e
    if len(raw) != PUBLIC_KEY_BYTES:
        raise WireFormatError("A key-wrapping public key is 64 hex digits.")
    return X25519PublicKey.from_public_bytes(raw)


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_HKDF_INFO).derive(shared)


def _field(value: str) -> bytes:
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class WrappedKey:
    """One content key wrapped to one desk; the header (everything before ``ephemeral``) is the GCM associated data."""

    desk_id: str
    library_id: str
    key_id: str
    ephemeral: bytes
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        validate_device_id(self.desk_id)
        _scope(self.library_id)
        _key_id(self.key_id)
        if len(self.ephemeral) != PUBLIC_KEY_BYTES or len(self.nonce) != NONCE_BYTES \
                or len(self.ciphertext) != CONTENT_KEY_BYTES + _TAG_BYTES:
            raise WireFormatError("A wrapped key has the wrong length of key, nonce or ciphertext.")

    @property
    def header(self) -> bytes:
        return _MAGIC + _field(self.desk_id) + _field(self.library_id) + _field(self.key_id)

    def to_bytes(self) -> bytes:
        return self.header + self.ephemeral + self.nonce + self.ciphertext

    def to_text(self) -> str:
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedKey:
        """Exactly one wrapped key: the magic, three length-prefixed ASCII ids, then fixed-size fields."""
        if not isinstance(data, bytes | bytearray) or not bytes(data).startswith(_MAGIC):
            raise WireFormatError("This is not a wrapped library key (wrong format marker).")
        data, pos, ids = bytes(data), len(_MAGIC), []
        for _ in range(3):
            if pos >= len(data):
                raise WireFormatError("A wrapped key is cut short.")
            size = data[pos]
            raw = data[pos + 1: pos + 1 + size]
            if len(raw) != size:
                raise WireFormatError("A wrapped key is cut short.")
            try:
                ids.append(raw.decode("ascii"))
            except UnicodeDecodeError as e:
                raise WireFormatError("A wrapped key names a desk, library or key id that is not ASCII.") from e
            pos += 1 + size
        rest = data[pos:]
        if len(rest) != PUBLIC_KEY_BYTES + NONCE_BYTES + CONTENT_KEY_BYTES + _TAG_BYTES:
            raise WireFormatError(f"A wrapped key has {len(rest)} bytes after its header; "
                                  f"{PUBLIC_KEY_BYTES + NONCE_BYTES + CONTENT_KEY_BYTES + _TAG_BYTES} are needed.")
        return cls(ids[0], ids[1], ids[2], rest[:32], rest[32:32 + NONCE_BYTES], rest[32 + NONCE_BYTES:])

    @classmethod
    def from_text(cls, text: str) -> WrappedKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError, AttributeError) as e:
            raise WireFormatError("A wrapped key is not base64 text.") from e
        return cls.from_bytes(raw)


def wrap(content_key: bytes, recipient: X25519PublicKey, *, desk_id: str, library_id: str) -> WrappedKey:
    """Wrap ``content_key`` so only the holder of ``recipient``'s private half, as ``desk_id``, opens it."""
    kid = key_id(content_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = public_key_bytes(ephemeral.public_key())
    recipient_raw = public_key_bytes(recipient)
    kek = _kek(ephemeral.exchange(recipient), ephemeral_raw, recipient_raw)
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = WrappedKey(desk_id, library_id, kid, ephemeral_raw, nonce, bytes(CONTENT_KEY_BYTES + _TAG_BYTES)).header
    return WrappedKey(desk_id, library_id, kid, ephemeral_raw, nonce, AESGCM(kek).encrypt(nonce, content_key, header))


def unwrap(wrapped: WrappedKey, private: X25519PrivateKey, *, desk_id: str, library_id: str,
           expected_key_id: str | None = None) -> bytes:
    """The content key, only if it was wrapped to this key for this desk and lineage (and is the key expected)."""
    if wrapped.desk_id != desk_id:
        raise UnwrapError(f"This library key was wrapped for desk {wrapped.desk_id}, not {desk_id}.")
    if wrapped.library_id != library_id:
        raise UnwrapError(f"This key is for library {wrapped.library_id!r}, not {library_id!r}.")
    if expected_key_id is not None and wrapped.key_id != expected_key_id:
        raise UnwrapError(f"This is key {wrapped.key_id[:12]}, not the key {expected_key_id[:12]} needed.")
    try:
        peer = X25519PublicKey.from_public_bytes(wrapped.ephemeral)
        kek = _kek(private.exchange(peer), wrapped.ephemeral, public_key_bytes(private.public_key()))
        key = AESGCM(kek).decrypt(wrapped.nonce, wrapped.ciphertext, wrapped.header)
    except (InvalidTag, ValueError) as e:
        raise UnwrapError(f"The library key wrapped for {desk_id} does not open with this desk's key-wrapping "
                          "key: it was wrapped to another key, or altered.") from e
    if key_id(key) != wrapped.key_id:
        raise UnwrapError("The unwrapped key is not the key its header names.")
    return key


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise WireFormatError(f"{what} must be base64 text.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WireFormatError(f"{what} is not base64.") from e


def _entries(value: object, scope: str, kid: str, what: str) -> dict[str, WrappedKey]:
    if not isinstance(value, dict) or not 0 < len(value) <= MAX_RECIPIENTS:
        raise WireFormatError(f"{what} must list between 1 and {MAX_RECIPIENTS} desks.")
    entries = {}
    for desk, text in value.items():
        entry = WrappedKey.from_bytes(_b64(text, f"{what}'s entry for {desk!r}"))
        if (entry.desk_id, entry.library_id, entry.key_id) != (desk, scope, kid):
            raise WireFormatError(f"{what}'s entry for {desk!r} names another desk, library or key.")
        entries[desk] = entry
    return entries


def wrap_for(content_key: bytes, recipients: Mapping[str, X25519PublicKey], library_id: str) -> dict[str, WrappedKey]:
    """The key wrapped to every desk in ``recipients`` (desk id -> its registered public key)."""
    return {desk: wrap(content_key, public, desk_id=desk, library_id=library_id)
            for desk, public in sorted(recipients.items())}


_KEYS_FIELDS = frozenset({"v", "kind", "library_id", "key_id", "wrapped"})


@dataclass(frozen=True)
class KeysDocument:
    """One content key wrapped to every trusted desk: central publishes it as the TUF target ``keys-<key id>.json``."""

    library_id: str
    key_id: str
    wrapped: Mapping[str, WrappedKey]

    @property
    def name(self) -> str:
        return keys_target_name(self.key_id)

    @classmethod
    def build(cls, content_key: bytes, recipients: Mapping[str, X25519PublicKey], library_id: str) -> KeysDocument:
        if not recipients:
            raise WireFormatError("No desk can receive this library key: no registered, unrevoked desk has a "
                                  "key-wrapping key.")
        return cls(validate_library_id(library_id), key_id(content_key), wrap_for(content_key, recipients, library_id))

    def for_desk(self, desk_id: str) -> WrappedKey:
        try:
            return self.wrapped[desk_id]
        except KeyError:
            raise UnwrapError(f"Library key {self.key_id[:12]} was not wrapped for {desk_id}: central does not "
                              "(or no longer) trust this desk, or it was registered after the key was published."
                              ) from None

    def to_bytes(self) -> bytes:
        return encode_object({"v": KEYS_VERSION, "kind": KEYS_KIND, "library_id": self.library_id,
                              "key_id": self.key_id,
                              "wrapped": {d: w.to_text() for d, w in sorted(self.wrapped.items())}},
                             MAX_KEYS_DOCUMENT_BYTES, "Keys document")

    @classmethod
    def from_bytes(cls, data: bytes) -> KeysDocument:
        obj = decode_object(data, MAX_KEYS_DOCUMENT_BYTES, "Keys document", version=KEYS_VERSION,
                            fields=_KEYS_FIELDS, max_keys=MAX_RECIPIENTS + 16)
        if obj["kind"] != KEYS_KIND:
            raise WireFormatError(f"A keys document has kind {KEYS_KIND!r}, not {obj['kind']!r}.")
        library_id, kid = validate_library_id(obj["library_id"]), _key_id(obj["key_id"])
        return cls(library_id, kid, _entries(obj["wrapped"], library_id, kid, "The keys document"))


def keys_target_name(kid: str) -> str:
    """The one naming rule for a keys target (never a library or configuration name)."""
    return f"keys-{_key_id(kid)}.json"


_SEALED_FIELDS = frozenset({"v", "kind", "key_id", "nonce", "ciphertext", "wrapped"})


def _document_aad(kid: str) -> bytes:
    return b"rfr-sealed-document-v1\x00" + kid.encode("ascii")


@dataclass(frozen=True)
class SealedDocument:
    """A document encrypted under a fresh key (AES-256-GCM) that is wrapped to each recipient desk.

    Used for the desk configuration, whose account hashes must not be readable by whoever fetches the
    target: only the desks central trusted when it published can open it.
    """

    key_id: str
    nonce: bytes
    ciphertext: bytes
    wrapped: Mapping[str, WrappedKey]

    @classmethod
    def seal(cls, plaintext: bytes, recipients: Mapping[str, X25519PublicKey]) -> SealedDocument:
        if not recipients:
            raise WireFormatError("No desk can receive this document: no registered, unrevoked desk has a "
                                  "key-wrapping key.")
        if len(plaintext) > MAX_SEALED_PLAINTEXT_BYTES:
            raise WireFormatError(f"A sealed document holds at most {MAX_SEALED_PLAINTEXT_BYTES} bytes.")
        key = AESGCM.generate_key(bit_length=256)
        kid, nonce = key_id(key), secrets.token_bytes(NONCE_BYTES)
        return cls(kid, nonce, AESGCM(key).encrypt(nonce, plaintext, _document_aad(kid)),
                   wrap_for(key, recipients, CONFIG_SCOPE))

    def open(self, desk_id: str, private: X25519PrivateKey) -> bytes:
        """The plaintext, if this desk was a recipient; an ``UnwrapError`` otherwise."""
        wrapped = self.wrapped.get(desk_id)
        if wrapped is None:
            raise UnwrapError(f"This document was not sealed for {desk_id}: central did not trust this desk "
                              "(or did not know its key-wrapping key) when it was published.")
        key = unwrap(wrapped, private, desk_id=desk_id, library_id=CONFIG_SCOPE, expected_key_id=self.key_id)
        try:
            return AESGCM(key).decrypt(self.nonce, self.ciphertext, _document_aad(self.key_id))
        except InvalidTag as e:
            raise UnwrapError("The sealed document was altered after it was sealed.") from e

    def to_bytes(self) -> bytes:
        return encode_object({"v": KEYS_VERSION, "kind": SEALED_CONFIG_KIND, "key_id": self.key_id,
                              "nonce": base64.b64encode(self.nonce).decode(),
                              "ciphertext": base64.b64encode(self.ciphertext).decode(),
                              "wrapped": {d: w.to_text() for d, w in sorted(self.wrapped.items())}},
                             MAX_SEALED_DOCUMENT_BYTES, "Sealed document")

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedDocument:
        obj = decode_object(data, MAX_SEALED_DOCUMENT_BYTES, "Sealed document", version=KEYS_VERSION,
                            fields=_SEALED_FIELDS, max_keys=MAX_RECIPIENTS + 16,
                            max_string=4 * MAX_SEALED_PLAINTEXT_BYTES)
        if obj["kind"] != SEALED_CONFIG_KIND:
            raise WireFormatError(f"A sealed document has kind {SEALED_CONFIG_KIND!r}, not {obj['kind']!r}.")
        kid = _key_id(obj["key_id"])
        nonce, ciphertext = _b64(obj["nonce"], "The nonce"), _b64(obj["ciphertext"], "The ciphertext")
        if len(nonce) != NONCE_BYTES or len(ciphertext) < _TAG_BYTES:
            raise WireFormatError("A sealed document's nonce or ciphertext has the wrong length.")
        return cls(kid, nonce, ciphertext, _entries(obj["wrapped"], CONFIG_SCOPE, kid, "The sealed document"))


def recipients_from_hex(registered: Iterable[tuple[str, str]]) -> dict[str, X25519PublicKey]:
    """Desk id -> public key from the registry's hex text (a malformed registration is refused, not skipped)."""
    return {validate_device_id(desk): public_key_from_hex(text) for desk, text in registered}
