"""Peer review of a doubtful adjudication: the request goes out, the outcome comes back.

The policy sends a doubtful "no viable match" to the facial recognition team
at central for peer review, and the device may only close the case once the
outcome is back. ``PeerReviewChannel`` is that round trip; the case service
depends on nothing else. Two implementations:

* ``LocalPeerReviewChannel`` (here, complete): the **offline fallback**. The
  request is recorded on the device and a technical adviser signs in on the
  device and records the outcome there. Used by the tests and whenever the
  device has no central peer-review link.
* ``CentralPeerReviewChannel``: the request (``core.peer_review``: references,
  reasoning and, when central's review key is configured, the probe's face
  thumbnail sealed to that key, ``core.review_probe``) is queued in the device
  database and sent over MQTT by the comms thread until central's outcome comes
  back; the outcome, checked against the request it answers, is stored and
  handed to ``CaseService.apply_peer_review``. See docs/desk-workflow.md,
  "Peer review by central".
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from appliance.services.candidate_view import band_of
from appliance.services.library_choice import Libraries
from appliance.storage.cases import LEGACY_LIBRARY_ID, CaseStore
from appliance.storage.peer_review_outbox import PeerReviewOutbox
from appliance.storage.peer_reviews import PeerReviewStore
from core import peer_review as wire
from core.errors import CustodyRfrError, SettingsError, WireFormatError
from core.keywrap import public_key_from_hex
from core.morphology import MAX_NOTE, Morphology
from core.review_probe import MAX_QUALITY_CHARS, SealedProbe, review_key_id
from core.topics import peer_review_request_topic, validate_device_id
from library.errors import SnapshotError

logger = logging.getLogger(__name__)

_CHECK_EVERY_S = 5.0
_TRUNCATED = " [… cut short for the request; the full text is on the device]"


def _searched_versions(case: dict[str, Any]) -> dict[str, int]:
    """The version of each library the case's search used, by library id (``CaseStore``'s columns)."""
    raw = case.get("libraries_searched")
    if raw:
        return {str(lib["library_id"]): int(lib["version"]) for lib in json.loads(raw)}
    if case.get("library_version") is not None:  # searched before desks held several libraries
        return {LEGACY_LIBRARY_ID: int(case["library_version"])}
    return {}


@dataclass(frozen=True)
class PeerReviewRequest:
    """What the reviewer is asked: which candidates of which case, and the officer's doubts (no biometrics)."""

    case_id: str
    custody_ref: str
    requested_by: str
    ranks: list[int]
    question: str


@dataclass(frozen=True)
class PeerReviewOutcome:
    """The reviewer's decision for each candidate in question: "viable" or "not_viable"."""

    case_id: str
    reviewer: str
    decisions: dict[int, str]
    notes: str


def load_review_key(path: Path | None) -> X25519PublicKey | None:
    """Central's review public key from ``[peer_review] central_review_key`` (64 hex digits), or None if unset."""
    if path is None:
        return None
    try:
        return public_key_from_hex(Path(path).read_text().strip())
    except OSError as e:
        raise SettingsError(f"[peer_review] central_review_key {path} cannot be read ({e.strerror}): copy "
                            "the public half of central's review key there (the .pub file `python -m "
                            "central.peer_review review-key` made).") from e
    except WireFormatError as e:
        raise SettingsError(f"[peer_review] central_review_key {path} is not central's review public key "
                            "(64 hex digits).") from e


class PeerReviewChannel(ABC):
    """Carries a peer review request to the reviewers and brings the outcome back."""

    name: str

    @abstractmethod
    def send_request(self, request: PeerReviewRequest) -> dict[str, Any] | None:
        """Queue the request for the reviewers; must not lose it if the link is down. Returns what the
        request's audit event should add (what was sent, never what it contained)."""

    @abstractmethod
    def outcome(self, case_id: str) -> PeerReviewOutcome | None:
        """The outcome for this case if it has come back, else None."""


class LocalPeerReviewChannel(PeerReviewChannel):
    """Offline fallback: a technical adviser on this device records the outcome."""

    name = "local"

    def __init__(self, store: PeerReviewStore, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._store, self._clock = store, clock

    def send_request(self, request: PeerReviewRequest) -> dict[str, Any] | None:
        self._store.request(request.case_id, request.custody_ref, request.requested_by, self._clock(),
                            request.ranks, request.question, self.name)
        return None

    def record_outcome(self, outcome: PeerReviewOutcome) -> None:
        """Called by the case service once it has checked the reviewer may review this case."""
        self._store.record_outcome(outcome.case_id, outcome.reviewer, outcome.decisions, outcome.notes,
                                   self._clock())

    def outcome(self, case_id: str) -> PeerReviewOutcome | None:
        row = self._store.get(case_id)
        if row is None or row.decisions is None or row.reviewer is None:
            return None
        return PeerReviewOutcome(case_id, row.reviewer, row.decisions, row.notes or "")


class CentralPeerReviewChannel(PeerReviewChannel):
    """Peer review by the facial recognition team at central, over MQTT.

    ``send_request`` only queues (``PeerReviewOutbox``); ``drain`` is run by the
    comms thread (a ``CentralLink`` sender) and ``receive_outcome`` is the
    handler for this device's outcome topic. An outcome is applied only if
    central's fleet-command key signed it (``central_key``), it names this
    device and answers a request this device sent and has had no answer to,
    with a decision for exactly the candidates in question; a repeat is ignored.

    With ``review_key`` (central's review public key) the request carries the probe's face thumbnail
    sealed to it for this request only; the sealed copy sits in the outbox row, which is blanked once
    the outcome comes back, like the rest of the request.
    """

    name = "central"

    def __init__(self, device_id: str, store: PeerReviewStore, queue: PeerReviewOutbox, cases: CaseStore,
                 library: Libraries, manifest: Any, *, central_key: Ed25519PublicKey,
                 resend_after_s: float = 300.0, clock: Callable[[], float] = time.time,
                 review_key: X25519PublicKey | None = None) -> None:
        self.device_id = validate_device_id(device_id)
        self._central_key = central_key
        self._review_key = review_key
        self._store, self._queue, self._cases, self._library = store, queue, cases, library
        self._manifest, self._resend_after_s, self._clock = manifest, resend_after_s, clock
        self._topic = peer_review_request_topic(device_id)
        self._apply: Callable[[str], object] | None = None
        # Drain state, touched only by the comms thread (except the wake-up flag).
        self._wake = threading.Event()
        # One outcome at a time: a copy arriving while the first is applied must find it answered.
        self._outcome_lock = threading.Lock()
        self._session = 0
        self._next_check = 0.0

    def bind(self, apply: Callable[[str], object]) -> None:
        """What applies a stored outcome to its case (``CaseService.apply_peer_review``), which is built
        after the channel it is given."""
        self._apply = apply

    # --- the request ---

    def send_request(self, request: PeerReviewRequest) -> dict[str, Any] | None:
        case = self._cases.get(request.case_id) or {}
        searched = _searched_versions(case)
        version = case.get("library_version")
        if version is None and searched:  # several libraries: "id vN, id vM" for the reviewer to read
            version = ", ".join(f"{library_id} v{v}" for library_id, v in searched.items())
        doubts = request.question
        if len(doubts) > wire.MAX_TEXT:
            doubts = doubts[: wire.MAX_TEXT - len(_TRUNCATED)] + _TRUNCATED
        request_id = str(uuid.uuid4())
        sealed = self._sealed_probe(request.case_id, request_id)
        message = wire.PeerReviewRequest(
            device_id=self.device_id, case_id=request.case_id, custody_ref=request.custody_ref[: wire.MAX_NAME],
            requested_by=request.requested_by, doubts=doubts, ranks=tuple(request.ranks),
            candidates=tuple(self._summaries(request.case_id, searched)),
            library_version=None if version is None else str(version), request_id=request_id, probe=sealed)
        message = self._with_comparisons(message)
        now = self._clock()
        self._store.request(request.case_id, request.custody_ref, request.requested_by, now, request.ranks,
                            request.question, self.name)
        self._queue.enqueue(message.request_id, request.case_id, message.to_bytes(), now)
        self._wake.set()
        logger.info("peer review request %s for case %s queued for central (probe image %s)", message.request_id,
                    request.case_id, "sealed to central's review key" if sealed else "not sent")
        if sealed is None:
            return {"request_id": request_id, "face_image_sent": False}
        assert self._review_key is not None  # only a configured key seals
        return {"request_id": request_id, "face_image_sent": True,
                "review_key_id": review_key_id(self._review_key)}

    def _sealed_probe(self, case_id: str, request_id: str) -> SealedProbe | None:
        """The probe's face thumbnail sealed to central's review key; None without the key or a thumbnail."""
        if self._review_key is None:
            return None
        probe = self._cases.probe(case_id)
        if probe is None or not probe.thumbnail:
            logger.warning("case %s has no face thumbnail to send for peer review", case_id)
            return None
        case = self._cases.get(case_id) or {}
        taken = case.get("searched_at")
        quality = probe.quality or {}
        words = "; ".join([str(quality.get("verdict", "")), *map(str, quality.get("reasons", []))]).strip("; ")
        try:
            return SealedProbe.seal(probe.thumbnail, self._review_key, device_id=self.device_id,
                                    request_id=request_id, case_id=case_id,
                                    taken_on=date.fromtimestamp(taken).isoformat() if taken else None,
                                    quality=words[:MAX_QUALITY_CHARS] or None)
        except WireFormatError as e:  # the reviewer is told no image came; the request still goes
            logger.warning("the face thumbnail of case %s cannot be sent for peer review: %s", case_id, e)
            return None

    def _with_comparisons(self, message: wire.PeerReviewRequest) -> wire.PeerReviewRequest:
        """The request with the officer's feature comparisons (words only), shortened until it fits the
        message's cap: notes are cut, down to a marker alone if need be (the full text stays on the device)."""
        stored = self._cases.comparisons(message.case_id)
        compared = []
        for rank, findings in sorted(stored.items())[: wire.MAX_COMPARED]:
            try:
                compared.append(wire.CandidateMorphology(rank, Morphology.from_dict(findings)))
            except WireFormatError as e:
                logger.warning("feature comparison of case %s rank %s not sent: %s", message.case_id, rank, e)
        for limit in (MAX_NOTE, 120, 0):
            fitted = tuple(wire.CandidateMorphology(m.rank, m.findings.with_notes_cut(limit)) for m in compared)
            candidate = replace(message, morphology=fitted)
            try:
                candidate.to_bytes()
            except WireFormatError:
                continue
            return candidate
        return message

    def _summaries(self, case_id: str, searched: dict[str, int]) -> list[wire.CandidateSummary]:
        """Each candidate by reference (its library, subject ref, score, band, the officer's decision): no
        images. Record ids are per library, so each is read from the version of its own library searched."""
        out = []
        for c in self._cases.candidates(case_id):
            version = searched.get(c.library_id)
            try:
                snapshot = self._library.snapshot(c.library_id)
                if snapshot is None or version != snapshot.version:
                    raise SnapshotError("library updated")
                record = snapshot.record(c.record_id)
                subject = record.subject_ref
                # A reference cut short would name another image or none: sent whole or not at all.
                source = record.source if 0 < len(record.source) <= wire.MAX_NAME else None
            except SnapshotError:
                subject = f"unavailable: library {version} was replaced (record {c.record_id})"
                source = None
            band, _label = band_of(c.score, self._manifest)
            out.append(wire.CandidateSummary(c.rank, subject[: wire.MAX_NAME], round(c.score, 4), band,
                                             c.decision or "needs_peer_review", source, library_id=c.library_id))
        return out

    def drain(self, publish: Callable[[str, bytes], bool], session: int) -> None:
        """Send what is due: everything unanswered after a reconnection, else new requests and resends."""
        fresh = session != self._session
        if not (fresh or self._wake.is_set() or time.monotonic() >= self._next_check):
            return
        self._wake.clear()
        self._next_check = time.monotonic() + min(_CHECK_EVERY_S, self._resend_after_s)
        now = self._clock()
        for item in self._queue.due(now, self._resend_after_s, everything=fresh):
            if not publish(self._topic, item.payload):
                self._wake.set()  # try again on the next loop
                return
            self._queue.mark_sent(item.request_id, now)
        self._session = session

    # --- the outcome ---

    def receive_outcome(self, payload: bytes) -> str:
        """Check and apply one outcome from central: "applied", "repeat" or "refused" (logged)."""
        with self._outcome_lock:
            return self._receive_outcome(payload)

    def _receive_outcome(self, payload: bytes) -> str:
        try:
            outcome = wire.PeerReviewOutcome.from_signed(payload, self._central_key)
            if outcome.device_id != self.device_id:
                raise WireFormatError(f"the outcome is addressed to device {outcome.device_id!r}")
            queued = self._queue.get(outcome.request_id)
            if queued is None or (queued.sends == 0 and not queued.answered):
                raise WireFormatError(f"no peer review request {outcome.request_id} was sent by this device")
            if queued.answered:
                logger.info("peer review outcome for %s received again; ignored", outcome.request_id)
                return "repeat"
            asked = wire.PeerReviewRequest.from_bytes(queued.payload).ranks
            if set(outcome.decisions) != set(asked):
                raise WireFormatError(f"the outcome decides candidates {sorted(outcome.decisions)}, "
                                      f"but {sorted(asked)} were in question")
        except WireFormatError as e:
            logger.warning("refused a peer review outcome (%s bytes): %s", len(payload), e)
            return "refused"
        now = self._clock()
        # Stored first, marked answered last: after a crash in between, the request is sent again and
        # central's repeated outcome completes the job (applying twice is refused by the case's state).
        self._store.record_outcome(queued.case_id, outcome.reviewer, outcome.decisions, outcome.notes, now)
        if self._apply is not None:
            try:
                self._apply(queued.case_id)
            except CustodyRfrError as e:
                logger.warning("peer review outcome for case %s not applied: %s", queued.case_id, e)
        self._queue.mark_answered(outcome.request_id, now)
        logger.info("peer review outcome %s (%s) applied to case %s", outcome.request_id, outcome.outcome,
                    queued.case_id)
        return "applied"

    def handle_outcome(self, payload: bytes) -> None:
        """The ``CentralLink`` handler for this device's outcome topic."""
        self.receive_outcome(payload)

    def outcome(self, case_id: str) -> PeerReviewOutcome | None:
        row = self._store.get(case_id)
        if row is None or row.decisions is None or row.reviewer is None:
            return None
        return PeerReviewOutcome(case_id, row.reviewer, row.decisions, row.notes or "")
