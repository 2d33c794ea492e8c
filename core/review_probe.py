"""The probe's face thumbnail sealed to central's review key, for one peer review only.

A central reviewer cannot judge a doubted "no viable match" without the face that was searched, so a
desk's peer review request carries the probe's face thumbnail (the same small JPEG the officer saw).
It must be readable at central and nowhere on the way: the broker, its persistence and anyone who
reads the desk's outbox see only ciphertext. The image is encrypted under a fresh AES-256-GCM key,
and that key is wrapped (``core.keywrap.wrap``: X25519 + HKDF-SHA256 + AES-256-GCM) to central's
review key, an X25519 key whose private half only central's ingest holds. The wrap names the sending
desk and the ``peer-review-probe`` scope, and the image's associated data names the desk, the request,
the case and the key id, so a sealed probe moved to another request, case or desk does not open.
Beside the image travel, in clear but bound into the same associated data, the two facts the
reviewer weighs it by: when the photo was taken (a date) and the desk's quality verdict on it.

Everything here is pure (no files, no network): ``SealedProbe.seal`` on the desk, ``SealedProbe.open``
at central, and a strict parser for the request's ``probe`` field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import WireFormatError
from core.keywrap import NONCE_BYTES, PROBE_SCOPE, UnwrapError, WrappedKey, public_key_bytes, unwrap, wrap
from core.topics import validate_device_id

KIND = "peer-review-probe"
#: The probe's face thumbnail is a 160 px JPEG of a few kilobytes; this leaves room for a larger crop and no more.
MAX_PROBE_IMAGE_BYTES = 32 * 1024
_TAG_BYTES = 16
#: The ``probe`` field's largest encoded size: base64 of the ciphertext plus the wrapped key and names.
MAX_SEALED_PROBE_CHARS = (MAX_PROBE_IMAGE_BYTES + _TAG_BYTES) * 4 // 3 + 1024
_FIELDS = frozenset({"kind", "wrapped", "nonce", "ciphertext", "taken_on", "quality"})
MAX_QUALITY_CHARS = 300
_AAD = b"rfr-review-probe-v1\x00"
_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def review_key_id(public: X25519PublicKey) -> str:
    """A review key's public name (16 hex digits), recorded in audits on both sides without showing the key."""
    return hashlib.sha256(b"rfr-review-key-id-v1\x00" + public_key_bytes(public)).hexdigest()[:16]


def check_jpeg(image: bytes) -> bytes:
    """The image, if it is a JPEG no larger than the cap; central serves it as ``image/jpeg`` and nothing else."""
    if not isinstance(image, bytes | bytearray) or not 0 < len(image) <= MAX_PROBE_IMAGE_BYTES:
        raise WireFormatError(f"A peer review probe image is 1 to {MAX_PROBE_IMAGE_BYTES} bytes.")
    if not (bytes(image).startswith(_JPEG_START) and bytes(image).rstrip(b"\x00").endswith(_JPEG_END)):
        raise WireFormatError("A peer review probe image must be a JPEG.")
    return bytes(image)


def _aad(device_id: str, request_id: str, case_id: str, kid: str, taken_on: str | None,
         quality: str | None) -> bytes:
    names = "\x00".join((device_id, request_id, case_id, kid)).encode("ascii")
    facts = json.dumps([taken_on, quality], ensure_ascii=True).encode("ascii")
    return _AAD + names + b"\x00" + facts


def _facts(taken_on: object, quality: object) -> None:
    if taken_on is not None:
        try:
            if not isinstance(taken_on, str) or len(taken_on) != 10:
                raise ValueError(taken_on)
            date.fromisoformat(taken_on)
        except ValueError as e:
            raise WireFormatError("The probe's date taken must be a date (YYYY-MM-DD) or null.") from e
    if quality is not None and (not isinstance(quality, str) or len(quality) > MAX_QUALITY_CHARS):
        raise WireFormatError(f"The probe's quality must be text of at most {MAX_QUALITY_CHARS} characters or null.")


def _b64(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit:
        raise WireFormatError(f"The probe's {what} must be base64 text of at most {limit} characters.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WireFormatError(f"The probe's {what} is not base64.") from e


@dataclass(frozen=True)
class SealedProbe:
    """The probe's face thumbnail, encrypted; only central's review key opens it, and only for its request."""

    wrapped: WrappedKey
    nonce: bytes
    ciphertext: bytes
    taken_on: str | None = None  # the date the probe photo was taken (ISO), as the desk recorded it
    quality: str | None = None  # the desk's quality verdict and reasons, in words

    def __post_init__(self) -> None:
        _facts(self.taken_on, self.quality)
        if self.wrapped.library_id != PROBE_SCOPE:
            raise WireFormatError(f"A probe's key is wrapped in scope {PROBE_SCOPE!r}, not "
                                  f"{self.wrapped.library_id!r}.")
        if len(self.nonce) != NONCE_BYTES:
            raise WireFormatError("The probe's nonce has the wrong length.")
        if not _TAG_BYTES < len(self.ciphertext) <= MAX_PROBE_IMAGE_BYTES + _TAG_BYTES:
            raise WireFormatError(f"The probe's ciphertext must hold 1 to {MAX_PROBE_IMAGE_BYTES} bytes of image.")

    @property
    def device_id(self) -> str:
        """The desk the probe was sealed by (named in the wrap, checked on opening)."""
        return self.wrapped.desk_id

    @classmethod
    def seal(cls, image: bytes, review_key: X25519PublicKey, *, device_id: str, request_id: str,
             case_id: str, taken_on: str | None = None, quality: str | None = None) -> SealedProbe:
        """Encrypt ``image`` (a JPEG) for central's review key, bound to this desk, request, case and facts."""
        check_jpeg(image)
        validate_device_id(device_id)
        _facts(taken_on, quality)
        key = AESGCM.generate_key(bit_length=256)
        wrapped = wrap(key, review_key, desk_id=device_id, library_id=PROBE_SCOPE)
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = _aad(device_id, request_id, case_id, wrapped.key_id, taken_on, quality)
        return cls(wrapped, nonce, AESGCM(key).encrypt(nonce, bytes(image), aad), taken_on, quality)

    def open(self, private: X25519PrivateKey, *, device_id: str, request_id: str, case_id: str) -> bytes:
        """The JPEG, if this is central's review key and the probe was sealed for this desk, request and case.

        ``UnwrapError`` if the key is another (rotated, misconfigured) or anything was altered;
        ``WireFormatError`` if what opens is not a JPEG under the cap.
        """
        if self.wrapped.desk_id != device_id:
            raise UnwrapError(f"The probe was sealed by desk {self.wrapped.desk_id}, not {device_id}.")
        try:
            key = unwrap(self.wrapped, private, desk_id=device_id, library_id=PROBE_SCOPE)
        except UnwrapError as e:
            raise UnwrapError("The probe does not open with central's review key: the desk sealed it to another "
                              "key (its [peer_review] central_review_key is not central's current review.key.pub), "
                              "or the sealed key was altered.") from e
        try:
            image = AESGCM(key).decrypt(self.nonce, self.ciphertext, _aad(
                device_id, request_id, case_id, self.wrapped.key_id, self.taken_on, self.quality))
        except InvalidTag as e:
            raise UnwrapError("The probe image was altered after it was sealed, or was sealed for another "
                              "request or case.") from e
        return check_jpeg(image)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "wrapped": self.wrapped.to_text(),
                "nonce": base64.b64encode(self.nonce).decode("ascii"),
                "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"), "taken_on": self.taken_on,
                "quality": self.quality}

    @classmethod
    def from_dict(cls, obj: object) -> SealedProbe:
        """The request's ``probe`` field, exactly: anything else is refused before any decryption."""
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise WireFormatError(f"A peer review probe must have exactly the fields {sorted(_FIELDS)}.")
        if obj["kind"] != KIND:
            raise WireFormatError(f"A peer review probe has kind {KIND!r}, not {str(obj['kind'])[:40]!r}.")
        wrapped = WrappedKey.from_bytes(_b64(obj["wrapped"], "wrapped key", 512))
        return cls(wrapped, _b64(obj["nonce"], "nonce", 64),
                   _b64(obj["ciphertext"], "ciphertext", MAX_SEALED_PROBE_CHARS), obj["taken_on"], obj["quality"])
