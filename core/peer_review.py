"""Peer review on the wire: the device's request to central and the reviewer's outcome back.

The policy sends a doubtful adjudication to the facial recognition team for
peer review before a case may close. The request holds the officer's reasoning,
each candidate's reference (subject ref, the image's ``source`` reference, rank,
score and band, the officer's decision) and the library version searched, so
central shows the reviewer the references from its own copy of the library;
optionally (``probe``), the probe's face thumbnail sealed to central's review key
(``core.review_probe``), readable only by central and destroyed there once the
review is answered (docs/desk-workflow.md, "Peer review by central"); and, when the
officer made them, their feature-by-feature comparisons in words (``morphology``,
``core.morphology``). The additions are optional on the wire: a request without
them parses as before.

The outcome is signed by central's fleet-command key (``core.signed``) when it is
sent, and names its device, so only central can close a case on a desk.

Parsing is strict like ``core.events``: exact field sets, bounded sizes and
lengths, and the outcome's summary must agree with its per-candidate
decisions, so a malformed or half-filled message is refused with a reason.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from core.errors import WireFormatError
from core.library_authorisation import LIBRARY_ID
from core.morphology import Morphology
from core.review_probe import MAX_SEALED_PROBE_CHARS, SealedProbe
from core.signed import SignedByCentral
from core.topics import validate_device_id
from core.wire import decode_object, encode_object

SCHEMA_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024
#: A request carrying the sealed probe may be larger by the probe's cap, and only then (``PeerReviewRequest``).
MAX_REQUEST_WITH_PROBE_BYTES = MAX_REQUEST_BYTES + MAX_SEALED_PROBE_CHARS
MAX_OUTCOME_BYTES = 16 * 1024
#: The label of central's signature on an outcome (``core.signed``): it closes or escalates a case.
OUTCOME_STATEMENT = "custody-rfr peer review outcome v1"
MAX_CANDIDATES = 50
MAX_TEXT = 4000  # doubts and reviewer's notes
MAX_NAME = 200

#: What the officer decided for each candidate (``appliance.services.policy.Decision``).
CANDIDATE_DECISIONS = frozenset({"viable", "not_viable", "needs_peer_review"})
#: What a reviewer may decide for a candidate in question: the case service accepts nothing else.
REVIEW_DECISIONS = frozenset({"viable", "not_viable"})
CONFIRMED_NOT_VIABLE = "confirmed_not_viable"
VIABLE_AFTER_REVIEW = "viable_after_review"
#: The reviewer's overall outcome. There is no "inconclusive": the device must either close the case
#: or ask for a Match Report, so a reviewer who cannot decide leaves the request pending.
OUTCOMES = frozenset({CONFIRMED_NOT_VIABLE, VIABLE_AFTER_REVIEW})

_CANDIDATE_FIELDS = {"rank", "subject_ref", "score", "band", "decision"}
_OPTIONAL_CANDIDATE_FIELDS = {"source", "library_id"}
_REQUEST_FIELDS = {"v", "request_id", "device_id", "case_id", "custody_ref", "requested_by", "requested_at",
                   "library_version", "doubts", "ranks", "candidates"}
#: Added later, and only sent when there is something in it: a request without them reads as before.
_OPTIONAL_REQUEST_FIELDS = {"probe", "morphology"}
#: At most this many candidates' feature comparisons in one request (12 components each).
MAX_COMPARED = 20
_MORPHOLOGY_FIELDS = {"rank", "findings"}
_OUTCOME_FIELDS = {"v", "request_id", "device_id", "reviewer", "decided_at", "outcome", "decisions", "notes"}


def _limit(with_probe: bool) -> int:
    return MAX_REQUEST_WITH_PROBE_BYTES if with_probe else MAX_REQUEST_BYTES


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def outcome_of(decisions: dict[int, str]) -> str:
    """The overall outcome that per-candidate review decisions amount to."""
    return VIABLE_AFTER_REVIEW if any(d == "viable" for d in decisions.values()) else CONFIRMED_NOT_VIABLE


def _text(name: str, value: object, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > limit:
        need = "a string" if empty else "a non-empty string"
        raise WireFormatError(f"Peer review field {name!r} must be {need} of at most {limit} characters.")
    return value


def _rank(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CANDIDATES:
        raise WireFormatError(f"A candidate rank must be a whole number from 1 to {MAX_CANDIDATES}.")
    return value


def _uuid(value: object) -> str:
    try:
        if not isinstance(value, str) or str(uuid.UUID(value)) != value:
            raise ValueError(value)
    except ValueError as e:
        raise WireFormatError("Peer review request id must be a lower-case UUID.") from e
    return value


def _moment(name: str, value: object) -> str:
    _text(name, value, 64)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as e:
        raise WireFormatError(f"Peer review field {name!r} is not an ISO date and time.") from e
    if moment.tzinfo is None:
        raise WireFormatError(f"Peer review field {name!r} must carry its UTC offset.")
    return str(value)


@dataclass(frozen=True)
class CandidateSummary:
    """One candidate as the reviewer is told of it: references central looks up in its library, never an image.

    ``source`` is the reference image's stable reference (``library.records.ReferenceRecord.source``), the same
    in every library version; None when the desk could no longer read it (its library was replaced).
    ``library_id`` names the library it came from (a desk searches several; sources are per library);
    None from a desk that held one library, which central reads as ``national``."""

    rank: int
    subject_ref: str
    score: float
    band: str
    decision: str
    source: str | None = None
    library_id: str | None = None

    def __post_init__(self) -> None:
        _rank(self.rank)
        if self.library_id is not None and (not isinstance(self.library_id, str)
                                            or not re.fullmatch(LIBRARY_ID, self.library_id)):
            raise WireFormatError("A candidate's library_id is not a library id.")
        _text("subject_ref", self.subject_ref, MAX_NAME)
        if self.source is not None:
            _text("source", self.source, MAX_NAME)
        _text("band", self.band, 100)
        if not isinstance(self.score, int | float) or isinstance(self.score, bool) or not math.isfinite(self.score):
            raise WireFormatError("A candidate score must be a finite number.")
        if not isinstance(self.decision, str) or self.decision not in CANDIDATE_DECISIONS:
            raise WireFormatError(f"Unknown candidate decision {self.decision!r}.")

    def to_dict(self) -> dict[str, Any]:
        out = {"rank": self.rank, "subject_ref": self.subject_ref, "score": self.score, "band": self.band,
               "decision": self.decision}
        if self.source is not None:
            out["source"] = self.source
        if self.library_id is not None:
            out["library_id"] = self.library_id
        return out

    @classmethod
    def from_dict(cls, obj: object) -> CandidateSummary:
        if not isinstance(obj, dict) or not _CANDIDATE_FIELDS <= set(obj) <= _CANDIDATE_FIELDS | \
                _OPTIONAL_CANDIDATE_FIELDS:
            raise WireFormatError(f"Each candidate must have exactly the fields {sorted(_CANDIDATE_FIELDS)} "
                                  f"(and optionally {sorted(_OPTIONAL_CANDIDATE_FIELDS)}).")
        return cls(**obj)


@dataclass(frozen=True)
class CandidateMorphology:
    """The officer's feature-by-feature comparison of the probe with one candidate (``core.morphology``)."""

    rank: int
    findings: Morphology

    def __post_init__(self) -> None:
        _rank(self.rank)
        if not isinstance(self.findings, Morphology):
            raise WireFormatError("A candidate's feature comparison must be a morphological comparison.")

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "findings": self.findings.to_dict()}

    @classmethod
    def from_dict(cls, obj: object) -> CandidateMorphology:
        if not isinstance(obj, dict) or set(obj) != _MORPHOLOGY_FIELDS:
            raise WireFormatError(f"Each feature comparison must have exactly the fields {sorted(_MORPHOLOGY_FIELDS)}.")
        return cls(obj["rank"], Morphology.from_dict(obj["findings"]))


@dataclass(frozen=True)
class PeerReviewRequest:
    """A device asks for a review of the candidates in question (``ranks``) and of the officer's doubts."""

    device_id: str
    case_id: str
    custody_ref: str
    requested_by: str
    doubts: str
    ranks: tuple[int, ...]
    candidates: tuple[CandidateSummary, ...]
    library_version: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    requested_at: str = field(default_factory=now_iso)
    #: The probe's face thumbnail sealed to central's review key for this request (``core.review_probe``).
    probe: SealedProbe | None = None
    morphology: tuple[CandidateMorphology, ...] = ()

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        _uuid(self.request_id)
        _text("case_id", self.case_id, 32)
        _text("custody_ref", self.custody_ref, MAX_NAME)
        _text("requested_by", self.requested_by, MAX_NAME)
        _text("doubts", self.doubts, MAX_TEXT, empty=True)
        _moment("requested_at", self.requested_at)
        if self.library_version is not None:
            _text("library_version", self.library_version, MAX_NAME)
        if not isinstance(self.candidates, tuple) or len(self.candidates) > MAX_CANDIDATES:
            raise WireFormatError(f"A request lists at most {MAX_CANDIDATES} candidates.")
        known = [c.rank for c in self.candidates]
        if len(set(known)) != len(known):
            raise WireFormatError("Candidate ranks must be unique.")
        if not isinstance(self.ranks, tuple) or len(set(self.ranks)) != len(self.ranks):
            raise WireFormatError("The ranks in question must be a list without repeats.")
        if not set(map(_rank, self.ranks)) <= set(known):
            raise WireFormatError("A rank in question is not one of the candidates.")
        if not self.ranks and not self.doubts.strip():
            raise WireFormatError("A peer review request must name a candidate in question or record doubts.")
        if self.probe is not None and (not isinstance(self.probe, SealedProbe)
                                       or self.probe.device_id != self.device_id):
            raise WireFormatError("The request's probe was sealed by another desk.")
        if not isinstance(self.morphology, tuple) or len(self.morphology) > MAX_COMPARED:
            raise WireFormatError(f"A request carries at most {MAX_COMPARED} feature comparisons.")
        compared = [m.rank for m in self.morphology if isinstance(m, CandidateMorphology)]
        if len(compared) != len(self.morphology) or len(set(compared)) != len(compared):
            raise WireFormatError("Feature comparisons must be one per candidate.")
        if not set(compared) <= set(known):
            raise WireFormatError("A feature comparison is for a candidate the request does not list.")

    def to_dict(self) -> dict[str, Any]:
        out = {"v": SCHEMA_VERSION, "request_id": self.request_id, "device_id": self.device_id,
               "case_id": self.case_id, "custody_ref": self.custody_ref, "requested_by": self.requested_by,
               "requested_at": self.requested_at, "library_version": self.library_version,
               "doubts": self.doubts, "ranks": list(self.ranks),
               "candidates": [c.to_dict() for c in self.candidates]}
        if self.morphology:
            out["morphology"] = [m.to_dict() for m in self.morphology]
        return out if self.probe is None else {**out, "probe": self.probe.to_dict()}

    def without_probe(self) -> PeerReviewRequest:
        """The same request with no probe: what central keeps in its database (the probe goes to its vault)."""
        return replace(self, probe=None)

    def to_bytes(self) -> bytes:
        return encode_object(self.to_dict(), _limit(self.probe is not None), "Peer review request")

    @classmethod
    def from_bytes(cls, payload: bytes) -> PeerReviewRequest:
        obj = decode_object(payload, MAX_REQUEST_WITH_PROBE_BYTES, "Peer review request", version=SCHEMA_VERSION)
        if not _REQUEST_FIELDS - {"v"} <= set(obj) <= _REQUEST_FIELDS | _OPTIONAL_REQUEST_FIELDS:
            missing, extra = _REQUEST_FIELDS - {"v"} - set(obj), set(obj) - _REQUEST_FIELDS - _OPTIONAL_REQUEST_FIELDS
            raise WireFormatError(f"Peer review request fields wrong: missing {sorted(missing)}, "
                                  f"unexpected {sorted(extra)}.")
        # The larger cap is for a request that carries the probe, and only for it.
        if len(payload) > _limit("probe" in obj):
            raise WireFormatError(f"Peer review request is {len(payload)} bytes; the limit without a probe is "
                                  f"{MAX_REQUEST_BYTES}.")
        if "probe" in obj:
            obj["probe"] = SealedProbe.from_dict(obj["probe"])
        if not isinstance(obj["ranks"], list) or not isinstance(obj["candidates"], list):
            raise WireFormatError("Peer review request 'ranks' and 'candidates' must be lists.")
        obj["ranks"] = tuple(obj["ranks"])
        obj["candidates"] = tuple(CandidateSummary.from_dict(c) for c in obj["candidates"][:MAX_CANDIDATES + 1])
        if "morphology" in obj:
            if not isinstance(obj["morphology"], list) or not obj["morphology"]:
                raise WireFormatError("Peer review request 'morphology' must be a non-empty list when present.")
            obj["morphology"] = tuple(CandidateMorphology.from_dict(m) for m in obj["morphology"][:MAX_COMPARED + 1])
        try:
            return cls(**obj)
        except TypeError as e:
            raise WireFormatError(f"Peer review request fields have the wrong types: {e}") from e


@dataclass(frozen=True)
class PeerReviewOutcome(SignedByCentral):
    """The reviewer's decision for each candidate in question, who decided, when and why; stored unsigned at
    central and sent signed (``seal``, ``from_signed``)."""

    STATEMENT: ClassVar[str] = OUTCOME_STATEMENT
    MAX_BYTES: ClassVar[int] = MAX_OUTCOME_BYTES
    WHAT: ClassVar[str] = "Peer review outcome"

    device_id: str
    request_id: str
    reviewer: str
    decisions: dict[int, str]
    notes: str
    outcome: str = ""
    decided_at: str = field(default_factory=now_iso)

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        _uuid(self.request_id)
        _text("reviewer", self.reviewer, MAX_NAME)
        _text("notes", self.notes, MAX_TEXT)
        _moment("decided_at", self.decided_at)
        if not isinstance(self.decisions, dict) or len(self.decisions) > MAX_CANDIDATES:
            raise WireFormatError("Peer review decisions must be an object of at most "
                                  f"{MAX_CANDIDATES} candidates.")
        for rank, decision in self.decisions.items():
            _rank(rank)
            if not isinstance(decision, str) or decision not in REVIEW_DECISIONS:
                raise WireFormatError(f"A reviewer decides 'viable' or 'not_viable', not {decision!r}.")
        if not self.outcome:
            object.__setattr__(self, "outcome", outcome_of(self.decisions))
        if not isinstance(self.outcome, str) or self.outcome not in OUTCOMES:
            raise WireFormatError(f"Unknown peer review outcome {self.outcome!r}.")
        if self.outcome != outcome_of(self.decisions):
            raise WireFormatError(f"The outcome {self.outcome!r} contradicts the candidate decisions.")

    def to_dict(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "request_id": self.request_id, "device_id": self.device_id,
                "reviewer": self.reviewer, "decided_at": self.decided_at, "outcome": self.outcome,
                "decisions": {str(r): d for r, d in sorted(self.decisions.items())}, "notes": self.notes}

    def to_bytes(self) -> bytes:
        """The unsigned outcome, as central stores it until it is sent (then ``seal`` signs it)."""
        return encode_object(self.to_dict(), MAX_OUTCOME_BYTES, "Peer review outcome")

    @classmethod
    def from_bytes(cls, payload: bytes) -> PeerReviewOutcome:
        obj = decode_object(payload, MAX_OUTCOME_BYTES, "Peer review outcome", version=SCHEMA_VERSION,
                            fields=_OUTCOME_FIELDS)
        raw = obj["decisions"]
        # A rank is at most two digits; the length check comes first because int() refuses over 4300 digits.
        if not isinstance(raw, dict) or not all(isinstance(k, str) and 0 < len(k) <= 9 and k.isdecimal()
                                                and str(int(k)) == k for k in raw):
            raise WireFormatError("Peer review decisions must map candidate ranks to decisions.")
        obj["decisions"] = {int(k): v for k, v in raw.items()}
        if not isinstance(obj["outcome"], str) or not obj["outcome"]:
            raise WireFormatError("Peer review outcome must be named.")
        try:
            return cls(**obj)
        except TypeError as e:
            raise WireFormatError(f"Peer review outcome fields have the wrong types: {e}") from e
