"""Library publication wire formats: the signed target description and the MQTT announcement.

``LibraryTargetInfo`` is what central puts in each TUF target's ``custom``
metadata (so it is covered by the targets role's signature) and what the
appliance reads back before deciding whether a target fits the installed
library. ``LibraryAnnouncement`` is central's retained MQTT message saying
"version N is published".

The announcement is only a hint that it is worth checking now: the appliance
never installs anything because of it, it triggers a TUF refresh, and only
targets verified against the signed metadata are installed. The running
central server still signs it with its fleet-command key when it publishes it
(``core.signed``, statement ``ANNOUNCEMENT_STATEMENT``; the file written by
``python -m central.publish`` is the unsigned body), so a forged announcement
triggers nothing at all on a desk. It is for the whole fleet, so it names no
device. Parsing is still strict (exact fields, types, size cap), because
a retained message reaches every desk and a malformed one must be refused with
a reason rather than half-understood.

The same announcement, with kind ``config``, says a signed desk configuration
(``core.desk_config``) was published: ``library_version`` then carries the
configuration's version and ``result_digest`` its digest. Only the newest
announcement is retained, so any announcement makes the desk check both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from core.errors import WireFormatError
from core.signed import SignedByCentral
from core.wire import aware_time, decode_object, encode_object

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 2048
ANNOUNCEMENT_STATEMENT = "custody-rfr library announcement v1"
KINDS = frozenset({"full", "delta"})
# core.desk_config.CONFIG_KIND and core.library_authorisation.AUTHORISATION_KIND; never a library target kind.
# An "authorisation" announcement names the newest manifest signed for some desk: every desk checks, and applies
# only the manifest target named for itself.
ANNOUNCED_KINDS = KINDS | {"config", "authorisation"}
_FIELDS = {"v", "library_version", "target", "kind", "result_digest", "published_at"}
# Target names become URL path segments and file names on the device: no slashes, no leading dot.
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z0-9:_-]{16,200}$")
# The lineage a desk held before libraries were named (settings ``[library] library_id``'s default).
DEFAULT_LIBRARY_ID = "national"
_LIBRARY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # core.keywrap.LIBRARY_ID


def validate_target_name(name: str) -> str:
    """Refuse names that could escape a directory or a URL path segment."""
    if not isinstance(name, str) or not TARGET_NAME.fullmatch(name) or ".." in name:
        raise WireFormatError(
            f"Target name {name!r} is not valid: use 1-128 letters, digits, dots, hyphens or underscores."
        )
    return name


def target_name(kind: str, library_version: int, base_version: int | None = None,
                library_id: str = DEFAULT_LIBRARY_ID) -> str:
    """The one naming rule for published targets, so both sides agree on what a name means.

    The first lineage (``national``) keeps the names it was published under before desks held several
    libraries; every other library's targets carry its id, so two lineages never share a name.
    """
    stem = "library" if library_id == DEFAULT_LIBRARY_ID else f"library-{library_id}"
    if kind == "full":
        return f"{stem}-v{library_version:06d}.db"
    if kind == "delta" and base_version is not None:
        return f"{stem}-v{base_version:06d}-to-v{library_version:06d}.delta"
    raise WireFormatError(f"No target name for kind {kind!r} with base version {base_version!r}.")


def _positive_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WireFormatError(f"{what} must be a positive integer, not {value!r}.")
    return value


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise WireFormatError(f"{what} is malformed.")
    return value


_INFO_FULL = {"kind", "library_version", "embedder_id", "result_digest", "key_id"}
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")  # core.keywrap.KEY_ID
_INFO_DELTA = _INFO_FULL | {"base_version", "base_digest"}
_INFO_OPTIONAL = {"library_id"}  # absent: DEFAULT_LIBRARY_ID (targets signed before libraries were named)


@dataclass(frozen=True)
class LibraryTargetInfo:
    """What a published target is: signed by central as the target's ``custom`` metadata.

    A full snapshot needs nothing installed; a delta applies only on top of the
    library whose content digest is ``base_digest`` and yields ``result_digest``.
    ``library_id`` names the lineage (one of the libraries a desk may hold); it is signed, so a
    target of one library can never be installed as another.
    ``key_id`` names the content key the file is encrypted under (``core.keywrap``):
    the desk opens it with that key, unwrapped from the signed ``keys-<key_id>.json``.
    """

    kind: str
    library_version: int
    embedder_id: str
    result_digest: str
    key_id: str
    base_version: int | None = None
    base_digest: str | None = None
    library_id: str = DEFAULT_LIBRARY_ID

    def __post_init__(self) -> None:
        if not isinstance(self.library_id, str) or not _LIBRARY_ID.fullmatch(self.library_id):
            raise WireFormatError(f"Library id {self.library_id!r} is not valid.")
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise WireFormatError(f"Target kind {self.kind!r} is not one of {sorted(KINDS)}.")
        _positive_int(self.library_version, "Library version")
        if not isinstance(self.embedder_id, str) or not 0 < len(self.embedder_id) <= 200:
            raise WireFormatError("Embedder id must be a non-empty string of at most 200 characters.")
        _digest(self.result_digest, "Result digest")
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise WireFormatError("The library key id must be 32 lower-case hex digits.")
        if self.kind == "delta":
            base = _positive_int(self.base_version, "Delta base version")
            _digest(self.base_digest, "Delta base digest")
            if base >= self.library_version:
                raise WireFormatError(
                    f"A delta must move forward: base version {base}, result version {self.library_version}."
                )
        elif self.base_version is not None or self.base_digest is not None:
            raise WireFormatError("A full library has no base version or base digest.")

    @property
    def name(self) -> str:
        return target_name(self.kind, self.library_version, self.base_version, self.library_id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "library_version": self.library_version,
                                "embedder_id": self.embedder_id, "result_digest": self.result_digest,
                                "key_id": self.key_id}
        if self.kind == "delta":
            data.update(base_version=self.base_version, base_digest=self.base_digest)
        if self.library_id != DEFAULT_LIBRARY_ID:
            data["library_id"] = self.library_id
        return data

    @classmethod
    def from_dict(cls, data: object) -> LibraryTargetInfo:
        if not isinstance(data, dict):
            raise WireFormatError("Target custom metadata must be an object.")
        expected = _INFO_DELTA if data.get("kind") == "delta" else _INFO_FULL
        if not expected <= set(data) <= expected | _INFO_OPTIONAL:
            missing, extra = expected - set(data), set(data) - expected - _INFO_OPTIONAL
            raise WireFormatError(
                f"Target custom metadata wrong: missing {sorted(missing)}, unexpected {sorted(extra)}."
            )
        return cls(**data)


@dataclass(frozen=True)
class LibraryAnnouncement(SignedByCentral):
    """What central announces after publishing a library version (retained signed: ``seal``, ``from_signed``)."""

    STATEMENT: ClassVar[str] = ANNOUNCEMENT_STATEMENT
    MAX_BYTES: ClassVar[int] = MAX_PAYLOAD_BYTES
    WHAT: ClassVar[str] = "Announcement"

    library_version: int
    target: str
    kind: str
    result_digest: str
    published_at: str

    def __post_init__(self) -> None:
        version = self.library_version
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise WireFormatError("Announced library version must be a positive integer.")
        validate_target_name(self.target)
        if not isinstance(self.kind, str) or self.kind not in ANNOUNCED_KINDS:
            raise WireFormatError(f"Announced kind {self.kind!r} is not one of {sorted(ANNOUNCED_KINDS)}.")
        _digest(self.result_digest, "Announced result digest")
        aware_time(self.published_at, "Announced publication time")

    @classmethod
    def now(cls, library_version: int, target: str, kind: str, result_digest: str) -> LibraryAnnouncement:
        return cls(library_version, target, kind, result_digest,
                   datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "library_version": self.library_version,
            "target": self.target,
            "kind": self.kind,
            "result_digest": self.result_digest,
            "published_at": self.published_at,
        }

    def to_bytes(self) -> bytes:
        return encode_object(self.to_dict(), MAX_PAYLOAD_BYTES, "Announcement")

    @classmethod
    def from_bytes(cls, payload: bytes) -> LibraryAnnouncement:
        """Parse the unsigned body (``announcement.json``); on the desk use :meth:`from_signed`."""
        obj = decode_object(payload, MAX_PAYLOAD_BYTES, "Announcement", version=SCHEMA_VERSION, fields=_FIELDS)
        return cls(**obj)

