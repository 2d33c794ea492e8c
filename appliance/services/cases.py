"""The custody case: submission -> approval -> probe -> candidates -> adjudication -> closed.

Each step checks the case's state and the policy (``appliance.services.policy``)
before it acts, and records an audit event; so no search runs without the
required approval, nobody approves their own request, and a case cannot close
as "no viable match" past a doubt without a peer review.

The probe image, template and face crops are held in the encrypted device
database only while the case is open. Closing with no viable match destroys
them at once (``CaseStore.destroy_biometrics``); closing with a viable match
keeps the probe image and face thumbnail with the Match Report (the policy
allows retaining a viable match) and destroys the template and crops. What a
viable match kept is destroyed in turn when central's retention period
(``retention.viable_match_days``) ends: ``appliance.services.retention``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

import numpy as np

from appliance.services.access import Access, CaseAccess, CaseNotFound, CaseParties, case_access
from appliance.services.accounts import User
from appliance.services.audit import AuditLog
from appliance.services.candidate_view import CandidateView, describe
from appliance.services.library import LibraryHolder
from appliance.services.peer_review import (
    LocalPeerReviewChannel,
    PeerReviewChannel,
    PeerReviewOutcome,
    PeerReviewRequest,
)
from appliance.services.policy import (
    Decision,
    PolicyRefusal,
    Role,
    Submission,
    apparent_minor_flags,
    check_approval,
    check_can_submit,
    check_case_owner,
    check_peer_reviewer,
    check_technical_adviser,
    may_approve_for,
    needs_peer_review,
    required_approval,
    validate_match_report,
    validate_submission,
)
from appliance.storage.cases import CandidateRow, CaseStore, ProbeRow
from appliance.storage.peer_reviews import PeerReviewRow, PeerReviewStore
from core.errors import CustodyRfrError
from library.errors import SnapshotError
from library.records import ReferenceRecord
from models.errors import ImageRejectedError, NoFaceError
from models.image import encode_pixels
from models.pipeline import FacePipeline

logger = logging.getLogger(__name__)


class State(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    PROBE_CAPTURED = "probe_captured"
    CANDIDATES_SHOWN = "candidates_shown"
    AWAITING_PEER_REVIEW = "awaiting_peer_review"
    AWAITING_MATCH_REPORT = "awaiting_match_report"
    CLOSED_NO_MATCH = "closed_no_match"
    CLOSED_VIABLE = "closed_viable"
    WITHDRAWN = "withdrawn"


STATE_LABELS = {
    State.AWAITING_APPROVAL: "Waiting for approval",
    State.APPROVED: "Approved: take the photo",
    State.PROBE_CAPTURED: "Photo taken: ready to search",
    State.CANDIDATES_SHOWN: "Candidates shown: judge each one",
    State.AWAITING_PEER_REVIEW: "Waiting for peer review",
    State.AWAITING_MATCH_REPORT: "Viable match: Match Report needed",
    State.CLOSED_NO_MATCH: "Closed: no viable match (photo destroyed)",
    State.CLOSED_VIABLE: "Closed: viable match reported",
    State.WITHDRAWN: "Withdrawn (photo destroyed)",
}
OPEN_STATES = frozenset({State.AWAITING_APPROVAL, State.APPROVED, State.PROBE_CAPTURED, State.CANDIDATES_SHOWN,
                         State.AWAITING_PEER_REVIEW, State.AWAITING_MATCH_REPORT})

RETENTION_VIABLE = ("Viable match: the probe image and face thumbnail are kept with the Match Report and the "
                    "candidate list as the basis of the intelligence lead, until the retention period the force "
                    "sets for viable matches ends; then they are destroyed. The probe template and any other "
                    "face crops were destroyed.")
RETENTION_NONE = ("No viable match: the probe image, its template, face crops and the candidate list were "
                  "destroyed. Only this record of who searched, when, why and with what outcome remains.")


class CaseError(CustodyRfrError):
    """A step cannot be taken now (wrong state, missing or invalid input); the message says what to do."""


class SubmissionInvalid(CaseError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The submission has problems: " + " ".join(errors.values()))
        self.errors = errors


class MatchReportInvalid(CaseError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The Match Report is incomplete: " + " ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class Case:
    """One case as the pages show it (the stored row, typed)."""

    row: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError as e:
            raise AttributeError(name) from e

    @property
    def state(self) -> State:
        return State(self.row["state"])

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def submission(self) -> Submission:
        return Submission(self.row["custody_ref"], self.row["reason"], tuple(json.loads(self.row["checks"])),
                          self.row["checks_detail"], self.row["age_band"], bool(self.row["disability"]),
                          bool(self.row["predates_reassignment"]))


class CaseFile:
    """One case as one person may see it: built only by ``CaseService.open_case``, after the access check.

    The pages and image routes read a case only through this, so what they can show is bounded by the
    access the service granted: a part above it comes back empty, whatever a template asks for.
    """

    def __init__(self, service: CaseService, case: Case, user: User, access: Access) -> None:
        self._service, self.case, self.user, self.access = service, case, user, access

    @property
    def images(self) -> bool:
        return self.access >= Access.IMAGES

    @property
    def record(self) -> bool:
        """The written record beyond the submission: candidate list, peer review, Match Report, summary."""
        return self.access >= Access.RECORD

    @property
    def is_owner(self) -> bool:
        return self.case.submitted_by == self.user.username

    @property
    def may_approve(self) -> bool:
        """Whether to offer the approval form (the service still checks everything when it is sent)."""
        return not self.is_owner and may_approve_for(self.user.role, Role(self.case.required_role))

    @property
    def is_adviser(self) -> bool:
        return self.user.role is Role.TECHNICAL_ADVISER

    def probe(self) -> ProbeRow | None:
        return self._service.store.probe(self.case.case_id) if self.images else None

    def crop_count(self) -> int:
        return self._service.store.crop_count(self.case.case_id) if self.images else 0

    def crop(self, index: int) -> bytes | None:
        return self._service.store.crop(self.case.case_id, index) if self.images else None

    def reference_thumbnail(self, rank: int) -> bytes | None:
        """A candidate's reference image; ``CaseError`` when it is no longer on this device."""
        return self._service._reference(self.case, rank)[1] if self.images else None

    def candidate_ranks(self) -> list[int]:
        return [c.rank for c in self._service.store.candidates(self.case.case_id)] if self.record else []

    def candidate_views(self) -> list[CandidateView]:
        return self._service.candidate_views(self.case.case_id) if self.record else []

    def review(self) -> PeerReviewRow | None:
        return self._service.reviews.get(self.case.case_id) if self.record else None

    def match_report(self) -> dict[str, Any] | None:
        return self._service.store.match_report(self.case.case_id) if self.record else None


@dataclass(frozen=True)
class CaptureResult:
    """After a photo is taken: either the face needs choosing, or the probe is ready to search."""

    faces_found: int
    needs_choice: bool
    quality: dict[str, Any] | None


class CaseService:
    def __init__(self, store: CaseStore, reviews: PeerReviewStore, channel: PeerReviewChannel,
                 pipeline: FacePipeline, library: LibraryHolder, audit: AuditLog, top_k: int | Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        # ``top_k`` may be a callable: central's signed configuration can change it while the desk runs.
        self.store, self.reviews, self.channel = store, reviews, channel
        self.pipeline, self.library, self.audit, self.top_k, self._clock = pipeline, library, audit, top_k, clock
        self.access = CaseAccess(audit)

    # Reading -------------------------------------------------------------------
    def get(self, case_id: str) -> Case:
        """The case, for the desk itself (retention, peer review outcomes, tests): no person, no access check."""
        row = self.store.get(case_id)
        if row is None:
            raise CaseNotFound()
        return Case(row)

    def open_case(self, case_id: str, user: User, action: str, need: Access = Access.DETAILS) -> CaseFile:
        """The case as ``user`` may see it, when their access reaches ``need``; else ``CaseNotFound`` (audited)."""
        row = self.store.get(case_id)
        case = Case(row) if row is not None else None
        level = self.access.require(user, case_id, self._parties(case) if case else None, need, action,
                                    custody_ref=case.custody_ref if case else None)
        assert case is not None  # require() refuses a case that does not exist
        return CaseFile(self, case, user, level)

    def visible(self, user: User) -> list[Case]:
        """Every case ``user`` may open, for their home page: a list must not show what its links would refuse."""
        return [c for c in self.list() if case_access(user, self._parties(c)) is not Access.NONE]

    def _parties(self, case: Case) -> CaseParties:
        review = self.reviews.get(case.case_id)
        local = LocalPeerReviewChannel.name
        return CaseParties(
            submitted_by=case.submitted_by, approved_by=case.approved_by, advice_by=case.advice_by,
            advice_required=bool(case.advice_required), required_role=Role(case.required_role),
            adjudicated_by=case.adjudicated_by,
            peer_reviewer=review.reviewer if review is not None and review.channel == local else None,
            awaiting_approval=case.state is State.AWAITING_APPROVAL,
            awaiting_local_peer_review=(case.state is State.AWAITING_PEER_REVIEW
                                        and isinstance(self.channel, LocalPeerReviewChannel)),
            closed=not case.is_open)

    def list(self) -> list[Case]:
        return [Case(r) for r in self.store.list()]

    def probe(self, case_id: str) -> ProbeRow | None:
        return self.store.probe(case_id)

    def candidates(self, case_id: str) -> list[CandidateRow]:
        return self.store.candidates(case_id)

    def peer_review(self, case_id: str) -> PeerReviewRow | None:
        return self.reviews.get(case_id)

    def match_report(self, case_id: str) -> dict[str, Any] | None:
        return self.store.match_report(case_id)

    # Submission and approval ---------------------------------------------------
    def submit(self, user: User, sub: Submission) -> Case:
        check_can_submit(user.role)
        errors = validate_submission(sub)
        if errors:
            raise SubmissionInvalid(errors)
        req = required_approval(sub)
        under_18, under_16 = apparent_minor_flags(sub.age_band)
        case_id = secrets.token_hex(4).upper()
        self.store.insert({
            "case_id": case_id, "custody_ref": sub.custody_ref.strip(), "reason": sub.reason,
            "checks": json.dumps(list(sub.checks)), "checks_detail": sub.checks_detail.strip(),
            "age_band": sub.age_band, "disability": int(sub.disability),
            "predates_reassignment": int(sub.predates_reassignment), "submitted_by": user.username,
            "submitted_at": self._clock(), "state": State.AWAITING_APPROVAL.value,
            "required_role": req.min_role.value, "advice_required": int(req.technical_advice),
            "apparent_under_18": _flag(under_18), "apparent_under_16": _flag(under_16),
        })
        self.audit.record("submission", user.username, "awaiting_approval", case_id=case_id,
                          custody_ref=sub.custody_ref.strip(), reason=sub.reason, age_band=sub.age_band,
                          required_approval=req.min_role.value, technical_advice_required=req.technical_advice)
        return self.get(case_id)

    def record_advice(self, case_id: str, user: User, text: str) -> Case:
        self.open_case(case_id, user, "technical advice")
        case = self._open(case_id, State.AWAITING_APPROVAL)
        try:
            check_technical_adviser(user.role)
        except PolicyRefusal as e:
            self._refused("approval", user, case, "advice_refused", e)
            raise
        if len(text.strip()) < 10:
            raise CaseError("Write the technical advice in a sentence or two.")
        self.store.update(case_id, advice_by=user.username, advice_text=text.strip(), advice_at=self._clock())
        self.audit.record("approval", user.username, "technical_advice_recorded", case_id=case_id,
                          custody_ref=case.custody_ref)
        return self.get(case_id)

    def approve(self, case_id: str, user: User) -> Case:
        """Approve as ``user``, who has just re-entered their own password on this device."""
        self.open_case(case_id, user, "approval")
        case = self._open(case_id, State.AWAITING_APPROVAL)
        req = required_approval(case.submission)
        try:
            check_approval(user.username, user.role, case.submitted_by, req, advice_recorded=bool(case.advice_by))
        except PolicyRefusal as e:
            self._refused("approval", user, case, "refused", e)
            raise
        self.store.update(case_id, approved_by=user.username, approved_at=self._clock(),
                          state=State.APPROVED.value)
        self.audit.record("approval", user.username, "approved", case_id=case_id, custody_ref=case.custody_ref,
                          approver_role=user.role.value, required_approval=req.min_role.value)
        return self.get(case_id)

    # Probe capture and search ----------------------------------------------------
    def capture(self, case_id: str, user: User, data: bytes, face_index: int | None = None) -> CaptureResult:
        """Template the photo (or the chosen face of a photo already taken) and hold it for the search."""
        case = self._owned(case_id, user, "photo", State.APPROVED, State.PROBE_CAPTURED)
        self._require_approval(case, user)
        try:
            result = self.pipeline.process(data, face_index=face_index)
        except IndexError as e:
            raise CaseError("That face is not in this photo. Choose one of the faces shown.") from e
        except (ImageRejectedError, NoFaceError) as e:
            reason = "no_face" if isinstance(e, NoFaceError) else "image_rejected"
            self.audit.record("search_refused", user.username, reason, case_id=case_id,
                              custody_ref=case.custody_ref, bytes_received=len(data))
            raise
        now = self._clock()
        # Keep the pixels, never the upload: its metadata may carry where and with what it was taken.
        data = encode_pixels(result.image)
        if face_index is None and len(result.faces) > 1:
            crops = [self.pipeline.thumbnail_jpeg(result.image, f, size=112) for f in result.faces]
            self.store.put_probe(case_id, ProbeRow(data, None, None, None, None, len(result.faces)), now)
            self.store.put_crops(case_id, crops)
            self.store.update(case_id, state=State.APPROVED.value)
            return CaptureResult(len(result.faces), True, None)
        quality = result.quality.to_dict() if getattr(result, "quality", None) is not None else None
        self.store.put_probe(case_id, ProbeRow(data, result.template.astype("<f4").tobytes(), result.thumbnail,
                                               quality, result.face_index, len(result.faces)), now)
        self.store.delete_crops(case_id)  # the other faces' crops are not needed once one is chosen
        self.store.update(case_id, state=State.PROBE_CAPTURED.value)
        return CaptureResult(len(result.faces), False, quality)

    def choose_face(self, case_id: str, user: User, face_index: int) -> CaptureResult:
        self._owned(case_id, user, "choose face", State.APPROVED, State.PROBE_CAPTURED)
        probe = self.store.probe(case_id)
        if probe is None:
            raise CaseError("Take the photo first.")
        return self.capture(case_id, user, probe.image, face_index=face_index)

    def search(self, case_id: str, user: User) -> list[CandidateRow]:
        """Search the library with the held template: only for an approved case, by its owner."""
        case = self.open_case(case_id, user, "search").case
        try:
            check_case_owner(user.username, case.submitted_by, user.role)
            if case.state is State.AWAITING_APPROVAL or not case.approved_by:
                raise PolicyRefusal("This search has not been approved. No search runs until the required "
                                    "approval is recorded.")
            self._require_approval(case, user)
        except PolicyRefusal as e:
            self._refused("search_refused", user, case, "policy", e)
            raise
        if case.state is not State.PROBE_CAPTURED:
            raise CaseError("Take the photo and check its quality before searching.")
        probe = self.store.probe(case_id)
        if probe is None or probe.template is None:
            raise CaseError("Take the photo and check its quality before searching.")
        if probe.quality and probe.quality.get("verdict") == "fail":
            self.audit.record("search_refused", user.username, "probe_quality", case_id=case_id,
                              custody_ref=case.custody_ref)
            raise CaseError("This photo is not good enough to search: " + " ".join(probe.quality.get("reasons", []))
                            + " Take it again.")
        snapshot = self.library.current
        top_k = self.top_k() if callable(self.top_k) else self.top_k
        started = time.perf_counter()
        found = snapshot.search(np.frombuffer(probe.template, dtype="<f4"), top_k)
        if self.pipeline.on_stage is not None:  # the search stage's latency, beside detect and embed
            self.pipeline.on_stage("search", time.perf_counter() - started)
        rows = [CandidateRow(c.rank, int(c.record.record_id or 0), float(c.score), None) for c in found]
        self.store.put_candidates(case_id, rows)
        self.store.update(case_id, state=State.CANDIDATES_SHOWN.value, library_version=snapshot.version,
                          searched_at=self._clock())
        self.audit.record("search", user.username, "candidates_shown" if rows else "no_candidates",
                          case_id=case_id, custody_ref=case.custody_ref, library_version=snapshot.version,
                          embedder=self.pipeline.embedder_id, faces_found=probe.faces_found,
                          candidates=len(rows), top_score=round(rows[0].score, 4) if rows else None,
                          probe_quality=(probe.quality or {}).get("verdict"), age_band=case.age_band,
                          apparent_under_18=_unflag(case.apparent_under_18),
                          apparent_under_16=_unflag(case.apparent_under_16))
        return rows

    def view_candidates(self, case_id: str, user: User) -> CaseFile:
        """The candidates page: for those who may see the faces, and every viewing is recorded."""
        file = self.open_case(case_id, user, "candidates page", Access.IMAGES)
        if file.case.state is State.CANDIDATES_SHOWN:
            self.audit.record("candidate_viewed", user.username, "shown", case_id=case_id,
                              custody_ref=file.case.custody_ref, candidates=len(self.store.candidates(case_id)))
        return file

    def candidate_views(self, case_id: str) -> list[CandidateView]:
        """Every candidate with the facts the adjudicator must weigh, from the library version searched."""
        case = self.get(case_id)
        snapshot = self.library.current
        probe_date = date.fromtimestamp(case.searched_at or self._clock())
        views = []
        for c in self.store.candidates(case_id):
            try:
                if case.library_version != snapshot.version:
                    raise SnapshotError("library updated")
                record = snapshot.record(c.record_id)
            except SnapshotError:
                record = ReferenceRecord(subject_ref="Not available: the library was updated", source="")
            views.append(describe(c.rank, c.score, record, probe_date, self.pipeline.embedder_manifest, c.decision))
        return views

    def _reference(self, case: Case, rank: int) -> tuple[Any, bytes]:
        """The library record and thumbnail of one candidate, from the library version that was searched."""
        case_id = case.case_id
        snapshot = self.library.current
        if case.library_version != snapshot.version:
            raise CaseError("The reference library was updated after this search; its images are no longer "
                            "on this device.")
        row = next((c for c in self.store.candidates(case_id) if c.rank == rank), None)
        if row is None:
            raise CaseError("That candidate is not part of this case.")
        try:
            return snapshot.record(row.record_id), snapshot.thumbnail(row.record_id)
        except SnapshotError as e:
            raise CaseError(str(e)) from e

    # Adjudication ------------------------------------------------------------------
    def adjudicate(self, case_id: str, user: User, decisions: dict[int, str], doubts: str) -> Case:
        case = self._owned(case_id, user, "adjudication", State.CANDIDATES_SHOWN)
        ranks = {c.rank for c in self.store.candidates(case_id)}
        if set(decisions) != ranks or any(d not in set(Decision) for d in decisions.values()):
            raise CaseError("Mark every candidate as viable, not viable or needs peer review.")
        self.store.set_decisions(case_id, decisions)
        self.store.update(case_id, adjudicated_by=user.username, adjudicated_at=self._clock(),
                          doubts=doubts.strip() or None)
        counts = {d.value: sum(1 for v in decisions.values() if v == d) for d in Decision}
        self.audit.record("adjudication", user.username, "recorded", case_id=case_id, custody_ref=case.custody_ref,
                          doubts_recorded=bool(doubts.strip()), **counts)
        if needs_peer_review(decisions.values(), doubts):
            doubtful = sorted(r for r, d in decisions.items() if d == Decision.PEER_REVIEW)
            self.channel.send_request(PeerReviewRequest(case_id, case.custody_ref, user.username, doubtful,
                                                        doubts.strip()))
            self.store.update(case_id, state=State.AWAITING_PEER_REVIEW.value)
            self.audit.record("peer_review", user.username, "requested", case_id=case_id,
                              custody_ref=case.custody_ref, channel=self.channel.name, candidates=len(doubtful))
            return self.get(case_id)
        return self._after_decisions(case_id, user.username)

    def record_local_peer_review(self, case_id: str, user: User, decisions: dict[int, str], notes: str) -> Case:
        """Offline fallback: a technical adviser on the device records the outcome, then it is applied."""
        self.open_case(case_id, user, "peer review")
        case = self._open(case_id, State.AWAITING_PEER_REVIEW)
        if not isinstance(self.channel, LocalPeerReviewChannel):
            raise CaseError("Peer reviews for this device are done by the facial recognition team at central.")
        try:
            check_peer_reviewer(user.username, user.role, case.adjudicated_by or case.submitted_by)
        except PolicyRefusal as e:
            self._refused("peer_review", user, case, "refused", e)
            raise
        request = self.reviews.get(case_id)
        asked = set(request.ranks) if request else set()
        if set(decisions) != asked or any(d not in (Decision.VIABLE, Decision.NOT_VIABLE) for d in decisions.values()):
            raise CaseError("Decide each candidate in question: viable or not viable.")
        if len(notes.strip()) < 10:
            raise CaseError("Write the peer review's reasons in a sentence or two.")
        self.channel.record_outcome(PeerReviewOutcome(case_id, user.username, decisions, notes.strip()))
        return self.apply_peer_review(case_id)

    def apply_peer_review(self, case_id: str) -> Case:
        """Apply the outcome that came back on the channel; a no-op while it has not come back."""
        case = self._open(case_id, State.AWAITING_PEER_REVIEW)
        outcome = self.channel.outcome(case_id)
        if outcome is None:
            return case
        self.store.set_decisions(case_id, outcome.decisions)
        self.audit.record("peer_review", outcome.reviewer, "completed", case_id=case_id,
                          custody_ref=case.custody_ref, channel=self.channel.name,
                          viable=sum(1 for d in outcome.decisions.values() if d == Decision.VIABLE))
        return self._after_decisions(case_id, outcome.reviewer)

    def _after_decisions(self, case_id: str, actor: str) -> Case:
        if any(c.decision == Decision.VIABLE for c in self.store.candidates(case_id)):
            self.store.update(case_id, state=State.AWAITING_MATCH_REPORT.value)
            return self.get(case_id)
        return self._close_no_match(case_id, actor, "no viable match")

    def submit_match_report(self, case_id: str, user: User, rank: int, fields: dict[str, str]) -> Case:
        case = self._owned(case_id, user, "match report", State.AWAITING_MATCH_REPORT)
        viable = {c.rank for c in self.store.candidates(case_id) if c.decision == Decision.VIABLE}
        if rank not in viable:
            raise CaseError("Choose one of the candidates marked viable for the Match Report.")
        errors = validate_match_report(fields)
        if errors:
            raise MatchReportInvalid(errors)
        now = self._clock()
        self.store.put_match_report(case_id, rank, {k: v.strip() for k, v in fields.items()}, user.username, now)
        self.audit.record("match_report", user.username, "recorded", case_id=case_id, custody_ref=case.custody_ref,
                          candidate_rank=rank)
        destroyed = self.store.destroy_biometrics(case_id, keep_viable=True)
        self.store.update(case_id, state=State.CLOSED_VIABLE.value, outcome="viable_match", closed_at=now,
                          retention=RETENTION_VIABLE)
        self.audit.record("deletion", user.username, "partial_viable_match_retained", case_id=case_id,
                          custody_ref=case.custody_ref, destroyed=destroyed,
                          retained=["probe image", "probe face thumbnail", "candidate list", "Match Report"])
        return self.get(case_id)

    def withdraw(self, case_id: str, user: User) -> Case:
        """The owner ends an open case before adjudication (e.g. identity found another way)."""
        case = self._owned(case_id, user, "withdrawal", State.AWAITING_APPROVAL, State.APPROVED,
                           State.PROBE_CAPTURED)
        return self._close_no_match(case_id, user.username, "withdrawn", state=State.WITHDRAWN, case=case)

    def _close_no_match(self, case_id: str, actor: str, why: str, state: State = State.CLOSED_NO_MATCH,
                        case: Case | None = None) -> Case:
        case = case or self.get(case_id)
        destroyed = self.store.destroy_biometrics(case_id)
        self.store.update(case_id, state=state.value, outcome=why.replace(" ", "_"), closed_at=self._clock(),
                          retention=RETENTION_NONE)
        self.audit.record("deletion", actor, "destroyed", case_id=case_id, custody_ref=case.custody_ref,
                          why=why, destroyed=destroyed)
        return self.get(case_id)

    # Guards ------------------------------------------------------------------------------
    def _open(self, case_id: str, *states: State) -> Case:
        case = self.get(case_id)
        if case.state not in states:
            raise CaseError(f"This case is at the step '{STATE_LABELS[case.state]}': that cannot be done now.")
        return case

    def _owned(self, case_id: str, user: User, action: str, *states: State) -> Case:
        case = self.open_case(case_id, user, action).case
        try:
            check_case_owner(user.username, case.submitted_by, user.role)
        except PolicyRefusal as e:
            self._refused("search_refused", user, case, "policy", e)
            raise
        return self._open(case_id, *states)

    def _require_approval(self, case: Case, user: User) -> None:
        """Re-check the stored approval against the policy at the moment of use, not only when it was given."""
        if not case.approved_by:
            raise PolicyRefusal("This search has not been approved. No search runs until the required approval "
                                "is recorded.")
        req = required_approval(case.submission)
        if Role(case.required_role) is not req.min_role or (req.technical_advice and not case.advice_by):
            raise PolicyRefusal("The approval on this case does not meet the policy. Ask for approval again.")

    def _refused(self, event: str, user: User, case: Case, outcome: str, e: Exception) -> None:
        self.audit.record(event, user.username, outcome, case_id=case.case_id, custody_ref=case.custody_ref,
                          rule=str(e)[:180])


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _unflag(value: int | None) -> bool | None:
    return None if value is None else bool(value)
