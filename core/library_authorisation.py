"""The authorisation manifest: which reference libraries one desk may search, for what, and until when.

Policy does not speak of "the library": each Permitted (substantive) or Temporary Image Reference Library
is authorised for a purpose by a named officer, reviewed by a date and, if temporary, expires. Central
publishes one manifest per desk as a TUF target in the library repository (``authorisation-<device>-vNNNNNN.json``,
``custom`` = ``AuthorisationTargetInfo``), so a desk verifies it like a library: signed by central's targets key,
fresh, length and hash as signed. This module is the one definition both sides parse; central refuses to sign
a manifest that does not parse and the desk refuses to apply one.

The desk then applies it only if it names this desk and is newer than the one it holds (a replayed older
manifest would re-authorise a suspended library). Whether a library may be searched is decided on the desk at
search time, by ``search_refusal``, against the desk's own clock, so a temporary library expires while the desk
is offline too. Libraries central has retired are listed in ``retired``: the desk destroys its copy.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import WireFormatError

AUTHORISATION_KIND = "authorisation"
MAX_MANIFEST_BYTES = 128 * 1024
#: The use cases a library may be authorised for. The desk searches for ``custody`` only; a library
#: authorised for another purpose is never offered at a custody desk.
PURPOSES = frozenset({"custody"})
CUSTODY = "custody"
LIBRARY_ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # core.keywrap.LIBRARY_ID
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")  # core.topics
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

LibraryKind = Literal["substantive", "temporary"]
LibraryStatus = Literal["authorised", "suspended"]
#: Why a desk will not search a library; the desk's words for each are in the appliance.
Refusal = Literal["not_listed", "suspended", "expired", "review_overdue", "not_for_purpose"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AuthorisedLibrary(_Strict):
    """One library as authorised for this desk; the fields are the authorisation record central keeps."""

    library_id: str = Field(pattern=LIBRARY_ID, description="The lineage's id (targets and wrapped keys).")
    name: str = Field(min_length=1, max_length=120, description="What staff call it, shown on the form.")
    kind: LibraryKind
    purposes: list[str] = Field(min_length=1, max_length=8, description=f"Use cases, from {sorted(PURPOSES)}.")
    default: bool = Field(description="Ticked on the submission form for the custody use case.")
    status: LibraryStatus
    authorised_by: str = Field(min_length=1, max_length=120)
    authorised_rank: str = Field(min_length=1, max_length=60)
    authority_reference: str = Field(min_length=1, max_length=200,
                                     description="The authorising document (reference, not the document).")
    authorised_on: date
    review_due: date = Field(description="After this day the desk refuses the library until it is reviewed.")
    expires_at: AwareDatetime | None = Field(default=None, description="Required for a temporary library.")

    @model_validator(mode="after")
    def _consistent(self) -> AuthorisedLibrary:
        unknown = set(self.purposes) - PURPOSES
        if unknown:
            raise ValueError(f"unknown purposes {sorted(unknown)}; purposes are {sorted(PURPOSES)}")
        if self.kind == "temporary" and self.expires_at is None:
            raise ValueError("a temporary library must have an expiry (expires_at)")
        if self.review_due < self.authorised_on:
            raise ValueError("the review date is before the date of authorisation")
        return self

    def refusal(self, now: datetime, purpose: str = CUSTODY) -> Refusal | None:
        """Why this library may not be searched at ``now`` (the desk's clock), or None if it may."""
        if purpose not in self.purposes:
            return "not_for_purpose"
        if self.status == "suspended":
            return "suspended"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if now.date() > self.review_due:
            return "review_overdue"
        return None

    def has_expired(self, now: datetime) -> bool:
        """A temporary library past its expiry: the desk destroys its copy (not just refuses it)."""
        return self.expires_at is not None and now >= self.expires_at


class AuthorisationManifest(_Strict):
    """Everything one desk may search; a newer version replaces the previous one whole."""

    version: int = Field(ge=1, description="Strictly increasing per desk; a desk never applies an older one.")
    device_id: str = Field(pattern=DEVICE_ID.pattern)
    issued_at: AwareDatetime
    libraries: list[AuthorisedLibrary] = Field(max_length=100)
    retired: list[str] = Field(default_factory=list, max_length=1000,
                               description="Library ids central has retired: desks destroy their copies.")

    @model_validator(mode="after")
    def _unique(self) -> AuthorisationManifest:
        ids = [lib.library_id for lib in self.libraries]
        if len(set(ids)) != len(ids):
            raise ValueError("a library is listed twice")
        both = set(ids) & set(self.retired)
        if both:
            raise ValueError(f"libraries {sorted(both)} are both authorised and retired")
        return self

    def library(self, library_id: str) -> AuthorisedLibrary | None:
        return next((lib for lib in self.libraries if lib.library_id == library_id), None)

    def refusal(self, library_id: str, now: datetime, purpose: str = CUSTODY) -> Refusal | None:
        """Why ``library_id`` may not be searched now; ``not_listed`` covers retired and unknown ones."""
        entry = self.library(library_id)
        return "not_listed" if entry is None else entry.refusal(now, purpose)

    def searchable(self, now: datetime, purpose: str = CUSTODY) -> list[AuthorisedLibrary]:
        return [lib for lib in self.libraries if lib.refusal(now, purpose) is None]

    @classmethod
    def parse(cls, data: bytes) -> AuthorisationManifest:
        """Strictly parse a manifest; every problem is reported with its key path."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise WireFormatError(f"The authorisation manifest is {len(data)} bytes; the limit is "
                                  f"{MAX_MANIFEST_BYTES}.")
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
                                 for err in e.errors())
            raise WireFormatError(f"The authorisation manifest is not valid: {problems}.") from e

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


def manifest_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_target_name(device_id: str, version: int) -> str:
    """The one naming rule for a desk's manifest (never a library or configuration name)."""
    if not DEVICE_ID.fullmatch(device_id):
        raise WireFormatError(f"Device id {device_id!r} is not valid.")
    return f"authorisation-{device_id}-v{version:06d}.json"


@dataclass(frozen=True)
class AuthorisationTargetInfo:
    """What central signs into a manifest target's ``custom`` metadata."""

    device_id: str
    manifest_version: int
    digest: str
    kind: str = AUTHORISATION_KIND

    def __post_init__(self) -> None:
        if self.kind != AUTHORISATION_KIND:
            raise WireFormatError(f"An authorisation target has kind {AUTHORISATION_KIND!r}, not {self.kind!r}.")
        if not isinstance(self.device_id, str) or not DEVICE_ID.fullmatch(self.device_id):
            raise WireFormatError(f"Device id {self.device_id!r} is not valid.")
        version = self.manifest_version
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise WireFormatError(f"Manifest version must be a positive integer, not {version!r}.")
        if not isinstance(self.digest, str) or not _DIGEST.fullmatch(self.digest):
            raise WireFormatError("Manifest digest must be sha256:<64 hex digits>.")

    @property
    def name(self) -> str:
        return manifest_target_name(self.device_id, self.manifest_version)

    @classmethod
    def of(cls, document: bytes) -> AuthorisationTargetInfo:
        """Describe a manifest from its own content (so a mistyped version or desk cannot be signed)."""
        manifest = AuthorisationManifest.parse(document)
        return cls(manifest.device_id, manifest.version, manifest_digest(document))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "device_id": self.device_id, "manifest_version": self.manifest_version,
                "digest": self.digest}

    @classmethod
    def from_dict(cls, data: object) -> AuthorisationTargetInfo:
        expected = {"kind", "device_id", "manifest_version", "digest"}
        if not isinstance(data, dict) or set(data) != expected:
            raise WireFormatError(f"Authorisation target metadata must have exactly {sorted(expected)}.")
        return cls(**data)


def is_authorisation(custom: object) -> bool:
    """Whether a target's custom metadata claims to be a manifest (library logic skips these)."""
    return isinstance(custom, dict) and custom.get("kind") == AUTHORISATION_KIND
