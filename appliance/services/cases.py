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
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from appliance.services.access import Access, CaseAccess, CaseNotFound, CaseParties, case_access
from appliance.services.accounts import User
from appliance.services.adjudication import (
    ContradictoryJudgement,
    JudgementInvalid,
    decisions_by_rank,
    spread_to_people,
)
from appliance.services.audit import AuditLog
from appliance.services.candidate_view import (
    CandidateView,
    PersonView,
    SearchScale,
    describe,
    group_by_subject,
    search_scale,
)
from appliance.services.library_choice import (
    CHOOSE_ONE,
    NOT_OFFERED,
    WHAT_TO_DO,
    Libraries,
    default_choice,
    normalise,
    searched_record,
    unoffered,
)
from appliance.services.match_report import CONFIRM_ERROR, ReportFacts, prefill, reference_quality_of
from appliance.services.morphology import read_morphology
from appliance.services.peer_review import (
    LocalPeerReviewChannel,
    PeerReviewChannel,
    PeerReviewOutcome,
    PeerReviewRequest,
)
from appliance.services.policy import (
    AGE_BAND_LABELS,
    Decision,
    PolicyRefusal,
    Role,
    Submission,
    apparent_minor_flags,
    check_approval,
    check_can_submit,
    check_case_owner,
    check_decider,
    check_peer_reviewer,
    check_technical_adviser,
    needs_peer_review,
    required_approval,
    validate_match_report,
    validate_submission,
)
from appliance.services.search_authority import SearchAuthority
from appliance.storage.cases import LEGACY_LIBRARY_ID, CandidateRow, CaseStore, ProbeRow
from appliance.storage.peer_reviews import PeerReviewRow, PeerReviewStore
from appliance.storage.storage_faults import is_library_damage
from core.errors import CustodyRfrError
from core.morphology import Morphology
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
    RETURNED = "returned"  # sent back to the officer by the approver, to change and send again
    REFUSED = "refused"  # refused by the approver: closed, no search


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
    State.RETURNED: "Returned for changes: change the request and send it again",
    State.REFUSED: "Refused by the approver: closed, no search",
}
OPEN_STATES = frozenset({State.AWAITING_APPROVAL, State.APPROVED, State.PROBE_CAPTURED, State.CANDIDATES_SHOWN,
                         State.AWAITING_PEER_REVIEW, State.AWAITING_MATCH_REPORT, State.RETURNED})

RETENTION_VIABLE = ("Viable match: the probe image and face thumbnail are kept with the Match Report and the "
                    "candidate list as the basis of the intelligence lead, until the retention period the force "
                    "sets for viable matches ends; then they are destroyed. The probe template and any other "
                    "face crops were destroyed.")
RETENTION_REFUSED = ("Refused: no photo was taken and no search ran. Only this record of the request, who "
                     "refused it, when and why remains.")
RETENTION_NONE = ("No viable match: the probe image, its template, face crops and the candidate list were "
                  "destroyed. Only this record of who searched, when, why and with what outcome remains.")
RETENTION_WITHDRAWN = ("Withdrawn: the request was ended before any judgement. Any photo taken, its template and "
                       "face crops were destroyed. Only this record of who asked, when and why remains.")


class CaseError(CustodyRfrError):
    """A step cannot be taken now (wrong state, missing or invalid input); the message says what to do."""


class SubmissionInvalid(CaseError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The submission has problems: " + " ".join(errors.values()))
        self.errors = errors


class LibrariesRefused(CaseError):
    """A library the officer chose can no longer be searched: nothing was searched (``library_choice``)."""

    def __init__(self, refused: list[tuple[str, str, str]]) -> None:
        super().__init__(" ".join(words for _, _, words in refused) + " " + WHAT_TO_DO)
        self.refused = refused  # (library id, refusal code, the library set's words for it)


class DecisionInvalid(CaseError):
    """A refusal or return sent without what the officer needs to read (field name -> message)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


class MatchReportInvalid(CaseError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The Match Report is incomplete: " + " ".join(errors.values()))
        self.errors = errors


class ComparisonInvalid(CaseError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The feature comparison is incomplete: " + " ".join(errors.values()))
        self.errors = errors


class ConfirmationNeeded(CustodyRfrError):
    """The step would destroy data and was not confirmed: nothing was changed.

    Not a ``CaseError``: a page that shows case errors inline must not swallow it; it reaches the desk's
    confirmation page (``appliance.web``), which names what would be destroyed and asks again.
    """

    def __init__(self, title: str, destroys: list[str], button: str, consequence: str) -> None:
        super().__init__(f"{title} Nothing has been destroyed: confirm to go ahead.")
        self.title, self.destroys, self.button, self.consequence = title, destroys, button, consequence


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
    def chosen(self) -> list[dict[str, str]]:
        """The libraries the officer chose on the form: {library_id, name, kind} (before the choice existed:
        the desk's one library)."""
        raw = self.row.get("libraries")
        if not raw:
            return [{"library_id": LEGACY_LIBRARY_ID, "name": "The reference library", "kind": "substantive"}]
        return [lib if isinstance(lib, dict) else {"library_id": str(lib), "name": str(lib), "kind": ""}
                for lib in json.loads(raw)]

    @property
    def chosen_libraries(self) -> list[str]:
        """The library ids the officer chose on the form."""
        return [lib["library_id"] for lib in self.chosen]

    @property
    def libraries_searched(self) -> list[dict[str, Any]]:
        """Each library the search ran on: {library_id, name, kind, version} (empty before the search)."""
        raw = self.row.get("libraries_searched")
        if raw:
            return list(json.loads(raw))
        if self.row.get("library_version") is not None:  # searched before desks held several libraries
            return [{"library_id": LEGACY_LIBRARY_ID, "name": "The reference library", "kind": "substantive",
                     "version": self.row["library_version"]}]
        return []

    def searched_version(self, library_id: str) -> int | None:
        return next((lib["version"] for lib in self.libraries_searched if lib["library_id"] == library_id), None)

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
    def approval_refusal(self) -> str | None:
        """Why this person may not approve now, said before any password is asked; None when they may.

        The same rule the service applies when the approval is sent (``check_approval``), so the page
        never offers a form the server would refuse.
        """
        try:
            check_approval(self.user.username, self.user.role, self.case.submitted_by,
                           required_approval(self.case.submission), advice_recorded=bool(self.case.advice_by))
        except PolicyRefusal as e:
            return str(e)
        return None

    @property
    def may_decide(self) -> bool:
        """Whether to offer Refuse and Return for changes (rank and not their own request; no advice needed)."""
        try:
            check_decider(self.user.username, self.user.role, self.case.submitted_by,
                          required_approval(self.case.submission))
        except PolicyRefusal:
            return False
        return True

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

    def search_scale(self) -> SearchScale | None:
        return self._service.search_scale(self.case.case_id) if self.record else None
    def people(self) -> list[PersonView]:
        """The candidates grouped by person, best score first (see ``candidate_view.group_by_subject``)."""
        return group_by_subject(self.candidate_views())

    def review(self) -> PeerReviewRow | None:
        return self._service.reviews.get(self.case.case_id) if self.record else None

    def match_report(self) -> dict[str, Any] | None:
        return self._service.store.match_report(self.case.case_id) if self.record else None

    def comparisons(self) -> dict[int, dict[str, Any]]:
        """The officer's feature comparisons by candidate rank (while the candidate list is held)."""
        return self._service.store.comparisons(self.case.case_id) if self.record else {}

    def report_prefill(self, rank: int) -> dict[str, str]:
        """The Match Report's answers as the desk measured them, for the officer to confirm or correct."""
        return self._service.report_prefill(self.case.case_id, rank) if self.record else {}


@dataclass(frozen=True)
class CaptureResult:
    """After a photo is taken: either the face needs choosing, or the probe is ready to search."""

    faces_found: int
    needs_choice: bool
    quality: dict[str, Any] | None


class CaseService:
    def __init__(self, store: CaseStore, reviews: PeerReviewStore, channel: PeerReviewChannel,
                 pipeline: FacePipeline, libraries: Libraries, audit: AuditLog, top_k: int | Callable[[], int],
                 clock: Callable[[], float] = time.time, *, authority: SearchAuthority) -> None:
        # ``top_k`` may be a callable: central's signed configuration can change it while the desk runs.
        # ``libraries``: every library the desk holds, under its authorisation (``LibrarySet``).
        self.store, self.reviews, self.channel = store, reviews, channel
        self.pipeline, self.libraries, self.audit, self.top_k, self._clock = pipeline, libraries, audit, top_k, clock
        self.authority = authority  # Authorised RFR Users: asked before a submission, a photo and a search
        self.access = CaseAccess(audit)
        #: Told when a library page read here failed its HMAC (``integrity.LibraryIntegrity.check_soon``: the
        #: damaged library is checked, refused and re-fetched). Set by ``appliance.runtime``.
        self.on_library_damage: Callable[[], object] | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # The libraries a search runs on -----------------------------------------------
    def library_choices(self) -> list[dict[str, Any]]:
        """The libraries the form offers now, for custody, the manifest's default set marked."""
        from appliance.services.library_choice import offered

        return offered(self.libraries, self._now())

    def _chosen_json(self, chosen: list[str]) -> str:
        """The choice as the case keeps it: each library's id, with its name and kind as the form showed them."""
        names = {lib.library_id: lib for lib in self.libraries.choices(self._now())}
        return json.dumps([{"library_id": c, "name": names[c].name if c in names else c,
                            "kind": names[c].kind if c in names else ""} for c in chosen])

    def _check_choice(self, user: User, custody_ref: str, chosen: list[str] | None,
                      case_id: str | None = None) -> tuple[list[str], dict[str, str]]:
        """The officer's choice of libraries and its error, if any. ``None`` (a caller other than the form)
        means the manifest's default set. A library the desk does not offer is refused and audited: the form
        only shows offered ones, so it came from a stale page or a hand-made request."""
        now = self._now()
        picked = default_choice(self.libraries, now) if chosen is None else normalise(chosen)
        if not picked:
            return picked, {"libraries": CHOOSE_ONE}
        bad = unoffered(picked, self.libraries, now)
        for library_id in bad:
            self.audit.record("search_refused", user.username, "library_not_authorised", case_id=case_id,
                              custody_ref=custody_ref, library_id=library_id[:64], stage="submission",
                              refusal=self.libraries.refusal_code(library_id, now) or "not_offered")
        if bad:  # the library set's own words when it knows why (suspended, expired...), else "not offered"
            words = [self.libraries.refusal(library_id, now) or NOT_OFFERED.format(name=f"“{library_id[:64]}”")
                     for library_id in bad]
            return picked, {"libraries": " ".join(dict.fromkeys(words))}
        return picked, {}

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
            awaiting_approval=case.state is State.AWAITING_APPROVAL, decided_by=case.refused_by or case.returned_by,
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
    def submit(self, user: User, sub: Submission, libraries: list[str] | None = None) -> Case:
        """A new request: ``libraries`` are the ids ticked on the form (None: the manifest's default set)."""
        check_can_submit(user.role)
        self.authority.require(user, "submission")
        chosen, library_errors = self._check_choice(user, sub.custody_ref.strip(), libraries)
        errors = {**validate_submission(sub), **library_errors}
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
            "libraries": self._chosen_json(chosen),
        })
        self.audit.record("submission", user.username, "awaiting_approval", case_id=case_id,
                          custody_ref=sub.custody_ref.strip(), reason=sub.reason, age_band=sub.age_band,
                          required_approval=req.min_role.value, technical_advice_required=req.technical_advice,
                          libraries_chosen=chosen)
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

    def check_may_decide(self, case_id: str, user: User, action: str, approving: bool = False) -> Case:
        """The case, when ``user`` may decide on it now (asked before their password is checked); else refused,
        audited. Approving needs recorded technical advice where the policy asks for it; refusing and
        returning do not."""
        self.open_case(case_id, user, action)
        case = self._open(case_id, State.AWAITING_APPROVAL)
        req = required_approval(case.submission)
        try:
            if approving:
                check_approval(user.username, user.role, case.submitted_by, req, advice_recorded=bool(case.advice_by))
            else:
                check_decider(user.username, user.role, case.submitted_by, req)
        except PolicyRefusal as e:
            self._refused("approval", user, case, "refused", e)
            raise
        return case

    def refuse(self, case_id: str, user: User, reason: str) -> Case:
        """The approver refuses the search: the case ends here, and what it held is destroyed as on withdrawal."""
        case = self.check_may_decide(case_id, user, "refusal")
        if len(reason.strip()) < 10:
            raise DecisionInvalid({"refusal_reason": "Say why the search is refused, for the officer and the "
                                                     "audit (a sentence or two)."})
        req = required_approval(case.submission)
        self.store.update(case_id, refused_by=user.username, refused_at=self._clock(), refusal_reason=reason.strip())
        # The reason itself stays on the desk with the case: audit events carry no free text (core.events).
        self.audit.record("submission_refused", user.username, "refused", case_id=case_id,
                          custody_ref=case.custody_ref, approver_role=user.role.value,
                          required_approval=req.min_role.value)
        self._close_no_match(case_id, user.username, "refused", state=State.REFUSED, case=case)
        self.store.update(case_id, retention=RETENTION_REFUSED)
        return self.get(case_id)

    def return_for_changes(self, case_id: str, user: User, note: str) -> Case:
        """The approver sends the request back to its officer, saying what to change; nothing is approved."""
        case = self.check_may_decide(case_id, user, "return for changes")
        if len(note.strip()) < 10:
            raise DecisionInvalid({"return_note": "Say what the officer needs to change (a sentence or two)."})
        self.store.update(case_id, returned_by=user.username, returned_at=self._clock(), return_note=note.strip(),
                          state=State.RETURNED.value)
        self.audit.record("submission_returned", user.username, "returned", case_id=case_id,
                          custody_ref=case.custody_ref, approver_role=user.role.value,
                          required_approval=required_approval(case.submission).min_role.value)
        return self.get(case_id)

    def editable(self, case_id: str, user: User) -> CaseFile:
        """A returned request, for its officer to change (the form is offered to nobody else)."""
        self._owned(case_id, user, "change request", State.RETURNED)
        return self.open_case(case_id, user, "change request")

    def resubmit(self, case_id: str, user: User, sub: Submission, libraries: list[str] | None = None) -> Case:
        """The officer sends a returned request again, changed: it waits for approval afresh.

        The approval it needs is worked out again from the new answers. Technical advice already
        recorded stays only while the answers that called for it are unchanged: advice given on
        other facts would not be advice on this request.
        """
        case = self._owned(case_id, user, "resubmission", State.RETURNED)
        self.authority.require(user, "submission", case_id, case.custody_ref)
        chosen, library_errors = self._check_choice(user, sub.custody_ref.strip(),
                                                    case.chosen_libraries if libraries is None else libraries,
                                                    case_id)
        errors = {**validate_submission(sub), **library_errors}
        if errors:
            raise SubmissionInvalid(errors)
        req = required_approval(sub)
        under_18, under_16 = apparent_minor_flags(sub.age_band)
        same_grounds = (bool(case.disability), bool(case.predates_reassignment)) == (sub.disability,
                                                                                     sub.predates_reassignment)
        keep_advice = req.technical_advice and same_grounds and case.advice_by is not None
        self.store.update(
            case_id, custody_ref=sub.custody_ref.strip(), reason=sub.reason, checks=json.dumps(list(sub.checks)),
            checks_detail=sub.checks_detail.strip(), age_band=sub.age_band, disability=int(sub.disability),
            predates_reassignment=int(sub.predates_reassignment), state=State.AWAITING_APPROVAL.value,
            required_role=req.min_role.value, advice_required=int(req.technical_advice),
            advice_by=case.advice_by if keep_advice else None, advice_text=case.advice_text if keep_advice else None,
            advice_at=case.advice_at if keep_advice else None,
            apparent_under_18=_flag(under_18), apparent_under_16=_flag(under_16), libraries=self._chosen_json(chosen))
        self.audit.record("submission", user.username, "resubmitted", case_id=case_id,
                          custody_ref=sub.custody_ref.strip(), reason=sub.reason, age_band=sub.age_band,
                          required_approval=req.min_role.value, technical_advice_required=req.technical_advice,
                          technical_advice_kept=keep_advice, libraries_chosen=chosen)
        return self.get(case_id)

    # Probe capture and search ----------------------------------------------------
    def capture(self, case_id: str, user: User, data: bytes, face_index: int | None = None) -> CaptureResult:
        """Template the photo (or the chosen face of a photo already taken) and hold it for the search."""
        case = self._owned(case_id, user, "photo", State.APPROVED, State.PROBE_CAPTURED)
        self._require_approval(case, user)
        self.authority.require(user, "photo", case_id, case.custody_ref)
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

    def choose_face(self, case_id: str, user: User, face_index: int, probe_version: str | None = None) -> CaptureResult:
        """Use one face of the group photo held; ``probe_version`` is the photo whose faces the page showed."""
        self._owned(case_id, user, "choose face", State.APPROVED, State.PROBE_CAPTURED)
        probe = self.store.probe(case_id)
        if probe is None:
            raise CaseError("Take the photo first.")
        if probe_version is not None and probe_version != probe.version:
            raise CaseError("The photo was replaced after those faces were shown. Choose from the faces shown now.")
        return self.capture(case_id, user, probe.image, face_index=face_index)

    def choose_face_again(self, case_id: str, user: User) -> CaptureResult:
        """Offer the faces of the photo held again, so the officer can change which one is searched."""
        self._owned(case_id, user, "choose face", State.APPROVED, State.PROBE_CAPTURED)
        probe = self.store.probe(case_id)
        if probe is None or probe.faces_found < 2:
            raise CaseError("This photo has only one face. To search another, take or choose another photo.")
        return self.capture(case_id, user, probe.image)

    def search(self, case_id: str, user: User, probe_version: str | None = None) -> list[CandidateRow]:
        """Search the library with the held template: only for an approved case, by its owner.

        ``probe_version`` names the photo and face the officer was shown (``ProbeRow.version``): if it has been
        replaced since, nothing is searched, so the face searched is always the face the page showed.
        """
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
        self.authority.require(user, "search", case_id, case.custody_ref)
        if case.state is not State.PROBE_CAPTURED:
            raise CaseError("Take the photo and check its quality before searching.")
        probe = self.store.probe(case_id)
        if probe is None or probe.template is None:
            raise CaseError("Take the photo and check its quality before searching.")
        if probe_version is not None and probe_version != probe.version:
            self.audit.record("search_refused", user.username, "probe_replaced", case_id=case_id,
                              custody_ref=case.custody_ref)
            raise CaseError("The photo was replaced after the page you searched from was shown, so nothing was "
                            "searched. Check the photo shown now, then search.")
        if probe.quality and probe.quality.get("verdict") == "fail":
            self.audit.record("search_refused", user.username, "probe_quality", case_id=case_id,
                              custody_ref=case.custody_ref)
            raise CaseError("This photo is not good enough to search: " + " ".join(probe.quality.get("reasons", []))
                            + " Take it again.")
        searched = self._searchable(case, user)
        top_k = self.top_k() if callable(self.top_k) else self.top_k
        started = time.perf_counter()
        template = np.frombuffer(probe.template, dtype="<f4")
        # Each library searched for the top k, then one list by score: the k best across every library.
        # Ties keep the order the libraries were chosen in, then each library's own rank.
        merged = sorted(((float(c.score), order, c.rank, library_id, c) for order, (library_id, _, snapshot)
                         in enumerate(searched) for c in snapshot.search(template, top_k)),
                        key=lambda t: (-t[0], t[1], t[2]))[:top_k]
        if self.pipeline.on_stage is not None:  # the search stage's latency, beside detect and embed
            self.pipeline.on_stage("search", time.perf_counter() - started)
        rows = [CandidateRow(rank, int(c.record.record_id or 0), score, None, c.record.subject_ref, library_id)
                for rank, (score, _, _, library_id, c) in enumerate(merged, start=1)]
        libraries = [record for _, record, _ in searched]
        single = searched[0][2].version if len(searched) == 1 else None
        self.store.put_candidates(case_id, rows)
        self.store.update(case_id, state=State.CANDIDATES_SHOWN.value, library_version=single,
                          libraries_searched=json.dumps(libraries), searched_at=self._clock())
        self.audit.record("search", user.username, "candidates_shown" if rows else "no_candidates",
                          case_id=case_id, custody_ref=case.custody_ref, library_version=single,
                          libraries=libraries,
                          candidates_by_library={lib["library_id"]: sum(1 for r in rows
                                                                        if r.library_id == lib["library_id"])
                                                 for lib in libraries},
                          embedder=self.pipeline.embedder_id, faces_found=probe.faces_found,
                          candidates=len(rows), top_score=round(rows[0].score, 4) if rows else None,
                          probe_quality=(probe.quality or {}).get("verdict"), age_band=case.age_band,
                          apparent_under_18=_unflag(case.apparent_under_18),
                          apparent_under_16=_unflag(case.apparent_under_16))
        return rows

    def _searchable(self, case: Case, user: User) -> list[tuple[str, dict[str, Any], Any]]:
        """Each chosen library's id, record and snapshot, when every one may be searched now; otherwise
        each refused one is audited and ``LibrariesRefused`` says which and why: nothing is searched
        (``appliance.services.library_choice`` says why it stops rather than searching the rest)."""
        now = self._now()
        offered = {lib.library_id: lib for lib in self.libraries.choices(now)}
        refused: list[tuple[str, str, str]] = []
        out = []
        for library_id in case.chosen_libraries:
            code = self.libraries.refusal_code(library_id, now)
            entry = offered.get(library_id)
            if code is None and entry is not None:
                try:
                    snapshot = self.libraries.current(library_id, now)
                    out.append((library_id, searched_record(entry, snapshot), snapshot))
                    continue
                except CustodyRfrError:  # refused or removed since the question was asked
                    code = self.libraries.refusal_code(library_id, now) or "not_held"
            code = code or "not_listed"
            refused.append((library_id, code, self.libraries.refusal(library_id, now)
                            or f"The library {library_id!r} cannot be searched now."))
        if refused:
            for library_id, code, _ in refused:
                self.audit.record("search_refused", user.username, "library_not_authorised", case_id=case.case_id,
                                  custody_ref=case.custody_ref, library_id=library_id, refusal=code)
            raise LibrariesRefused(refused)
        return out

    def unsearchable(self, case_id: str) -> list[tuple[str, str, str]]:
        """The chosen libraries that could not be searched now: (id, refusal code, words), for the case page
        to say before the officer presses Search (the search itself checks again)."""
        case = self.get(case_id)
        now = self._now()
        out = []
        for library_id in case.chosen_libraries:
            code = self.libraries.refusal_code(library_id, now)
            if code is not None:
                out.append((library_id, code, self.libraries.refusal(library_id, now) or code))
        return out

    def narrow_libraries(self, case_id: str, user: User, keep: list[str]) -> Case:
        """The officer searches fewer of the libraries they chose (after one was refused): only ever a part of
        the approved choice, so the approval still covers it; adding a library needs a new request."""
        case = self._owned(case_id, user, "choose libraries", State.APPROVED, State.PROBE_CAPTURED)
        chosen = case.chosen_libraries
        kept = [library_id for library_id in normalise(keep) if library_id in chosen]
        if not kept:
            raise CaseError(CHOOSE_ONE + " Only libraries chosen on the request can be searched; to search "
                            "another, withdraw this request and make a new one.")
        if len(kept) != len(normalise(keep)):
            raise CaseError("Only libraries chosen on the request can be searched; to search another, withdraw "
                            "this request and make a new one.")
        self.store.update(case_id, libraries=json.dumps([lib for lib in case.chosen if lib["library_id"] in kept]))
        self.audit.record("submission", user.username, "libraries_narrowed", case_id=case_id,
                          custody_ref=case.custody_ref, libraries_chosen=kept,
                          libraries_removed=[c for c in chosen if c not in kept])
        return self.get(case_id)

    def view_candidates(self, case_id: str, user: User) -> CaseFile:
        """The candidates page: for those who may see the faces, and every viewing is recorded."""
        file = self.open_case(case_id, user, "candidates page", Access.IMAGES)
        if file.case.state is State.CANDIDATES_SHOWN:
            self.audit.record("candidate_viewed", user.username, "shown", case_id=case_id,
                              custody_ref=file.case.custody_ref, candidates=len(self.store.candidates(case_id)))
        return file

    def view_features(self, case_id: str, user: User, rank: int) -> CaseFile:
        """The feature-comparison page of one candidate: it shows the faces, so its viewing is recorded too."""
        file = self.open_case(case_id, user, "feature comparison", Access.IMAGES)
        if file.case.state is State.CANDIDATES_SHOWN:
            self.audit.record("candidate_viewed", user.username, "features_compared_page", case_id=case_id,
                              custody_ref=file.case.custody_ref, candidate_rank=rank)
        return file

    def candidate_views(self, case_id: str) -> list[CandidateView]:
        """Every candidate with the facts the adjudicator must weigh, from the library version searched."""
        case = self.get(case_id)
        names = {lib["library_id"]: lib for lib in case.libraries_searched}
        probe_date = date.fromtimestamp(case.searched_at or self._clock())
        views = []
        for c in self.store.candidates(case_id):
            try:
                record = self._snapshot_searched(case, c.library_id).record(c.record_id)
            except SnapshotError as e:
                self._library_damage(e)
                record = ReferenceRecord(subject_ref=c.subject_ref or "Not available: the library was updated",
                                         source="")
            # Grouped by the subject recorded at the search, within its library (subject references are the
            # library's own: the same words in two libraries are not known to be one person, and strangers
            # are never merged); a row from before that was kept groups by the library's record, or stands
            # alone when the library no longer has it.
            subject = c.subject_ref or (record.subject_ref if record.source else f"record:{c.record_id}")
            library = names.get(c.library_id, {})
            views.append(describe(c.rank, c.score, record, probe_date, self.pipeline.embedder_manifest, c.decision,
                                  subject_key=f"{c.library_id}|{subject}", library_id=c.library_id,
                                  library_name=str(library.get("name") or c.library_id),
                                  library_kind=str(library.get("kind") or "")))
        return views

    def _snapshot_searched(self, case: Case, library_id: str) -> Any:
        """The snapshot of ``library_id`` the search used; ``SnapshotError`` once it is no longer on the desk."""
        version = case.searched_version(library_id)
        snapshot = self.libraries.snapshot(library_id)
        if snapshot is None:
            raise SnapshotError("library no longer held")
        if version is None or snapshot.version != version:
            raise SnapshotError("library updated")
        return snapshot

    def search_scale(self, case_id: str) -> SearchScale:
        """Records searched (from the library version the search used) and each band stated at that size."""
        case = self.get(case_id)
        try:
            records: int | None = sum(self._snapshot_searched(case, lib["library_id"]).count
                                      for lib in case.libraries_searched) if case.libraries_searched else None
        except SnapshotError:
            records = None
        return search_scale(records, self.pipeline.embedder_manifest)
    def people(self, case_id: str) -> list[PersonView]:
        return group_by_subject(self.candidate_views(case_id))

    def view_comparison(self, case_id: str, user: User, rank: int) -> CaseFile:
        """The side-by-side comparison of the probe and one reference: for those who may see the faces, recorded."""
        file = self.open_case(case_id, user, "comparison", Access.IMAGES)
        if not any(c.rank == rank for c in self.store.candidates(case_id)):
            raise CaseError("That candidate is not part of this case.")
        self.audit.record("candidate_viewed", user.username, "compared", case_id=case_id,
                          custody_ref=file.case.custody_ref, candidate_rank=rank)
        return file

    def _reference(self, case: Case, rank: int) -> tuple[Any, bytes]:
        """The library record and thumbnail of one candidate, from the library version that was searched."""
        row = next((c for c in self.store.candidates(case.case_id) if c.rank == rank), None)
        if row is None:
            raise CaseError("That candidate is not part of this case.")
        try:
            snapshot = self._snapshot_searched(case, row.library_id)
        except SnapshotError as e:
            raise CaseError("The reference library this candidate came from was updated or removed after this "
                            "search; its images are no longer on this device.") from e
        try:
            return snapshot.record(row.record_id), snapshot.thumbnail(row.record_id)
        except SnapshotError as e:
            self._library_damage(e)
            raise CaseError(str(e)) from e

    def _library_damage(self, error: SnapshotError) -> None:
        """A library read failed: if a damaged page is why, have every library checked now (and so repaired)."""
        if self.on_library_damage is not None and is_library_damage(error):
            logger.error("a damaged library page was read (%s); checking every library now", error)
            self.on_library_damage()

    # The Match Report's facts and the feature comparison -----------------------------------
    def report_prefill(self, case_id: str, rank: int) -> dict[str, str]:
        """What the desk measured about the probe and candidate ``rank``, as Match Report answers."""
        case = self.get(case_id)
        view = next((v for v in self.candidate_views(case_id) if v.rank == rank), None)
        if view is None:
            return {}
        try:
            reference = reference_quality_of(getattr(self._reference(case, rank)[0], "quality", None))
        except CaseError:
            reference = None
        probe = self.store.probe(case_id)
        taken = date.fromtimestamp(case.searched_at or self._clock())
        return prefill(ReportFacts(
            probe_quality=probe.quality if probe else None, probe_taken=f"{taken.day} {taken:%B %Y}",
            apparent_age=AGE_BAND_LABELS.get(case.age_band, case.age_band),
            faces_found=probe.faces_found if probe else 1, disability=bool(case.disability),
            predates_reassignment=bool(case.predates_reassignment), view=view, reference_quality=reference))

    def record_comparison(self, case_id: str, user: User, rank: int, form: dict[str, str]) -> Morphology:
        """The officer's feature-by-feature comparison of the probe with one candidate, before judging it
        (it travels with a peer review request, and starts the Match Report for that candidate)."""
        case = self._owned(case_id, user, "feature comparison", State.CANDIDATES_SHOWN)
        if rank not in {c.rank for c in self.store.candidates(case_id)}:
            raise CaseError("That candidate is not part of this case.")
        morphology, errors = read_morphology(form, need_one_compared=False)
        if morphology is None:
            raise ComparisonInvalid(errors)
        self.store.put_comparison(case_id, rank, morphology.to_dict(), user.username, self._clock())
        self.audit.record("adjudication", user.username, "features_compared", case_id=case_id,
                          custody_ref=case.custody_ref, candidate_rank=rank, **morphology.counts())
        return morphology

    # Adjudication ------------------------------------------------------------------
    def adjudicate(self, case_id: str, user: User, decisions: dict[int, str], doubts: str,
                   confirmed: bool = False) -> Case:
        """Record the officer's judgement: one decision per person (``appliance.services.adjudication``). When
        it closes the case with no viable match (which destroys the photo at once), only if ``confirmed``:
        otherwise ``ConfirmationNeeded`` and nothing is recorded."""
        case = self._owned(case_id, user, "adjudication", State.CANDIDATES_SHOWN)
        people = self.people(case_id)
        try:
            decisions, undecided_below = decisions_by_rank(people, decisions)
        except JudgementInvalid as e:
            if isinstance(e, ContradictoryJudgement):
                self.audit.record("adjudication", user.username, "refused_contradictory", case_id=case_id,
                                  custody_ref=case.custody_ref)
            raise CaseError(str(e)) from e
        closes = not needs_peer_review(decisions.values(), doubts) and Decision.VIABLE not in decisions.values()
        if closes and not confirmed:
            raise self._destruction_needs_confirming(
                case_id, "Close the case with no viable match?",
                "Yes, close the case and destroy the photo",
                "The case will close as 'no viable match' and the search cannot be looked at again.")
        self.store.set_decisions(case_id, decisions)
        self.store.update(case_id, adjudicated_by=user.username, adjudicated_at=self._clock(),
                          doubts=doubts.strip() or None)
        counts = {d.value: sum(1 for v in decisions.values() if v == d) for d in Decision}
        self.audit.record("adjudication", user.username, "recorded", case_id=case_id, custody_ref=case.custody_ref,
                          doubts_recorded=bool(doubts.strip()), people=len(people),
                          below_threshold_not_judged=undecided_below, **counts)
        if needs_peer_review(decisions.values(), doubts):
            # One rank per person (their best image) goes to the reviewer; the outcome applies to the person.
            doubtful = sorted(p.lead_rank for p in people if decisions[p.lead_rank] == Decision.PEER_REVIEW)
            sent = self.channel.send_request(PeerReviewRequest(case_id, case.custody_ref, user.username, doubtful,
                                                               doubts.strip()))
            self.store.update(case_id, state=State.AWAITING_PEER_REVIEW.value)
            self.audit.record("peer_review", user.username, "requested", case_id=case_id,
                              custody_ref=case.custody_ref, channel=self.channel.name, candidates=len(doubtful),
                              **(sent or {}))
            return self.get(case_id)
        return self._after_decisions(case_id, user.username)

    def record_local_peer_review(self, case_id: str, user: User, decisions: dict[int, str], notes: str,
                                 confirmed: bool = False) -> Case:
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
        if Decision.VIABLE not in decisions.values() and not confirmed:
            raise self._destruction_needs_confirming(
                case_id, "Record the review and close the case with no viable match?",
                "Yes, record the review and destroy the photo",
                "The case will close as 'no viable match' and the search cannot be looked at again.")
        self.channel.record_outcome(PeerReviewOutcome(case_id, user.username, decisions, notes.strip()))
        return self.apply_peer_review(case_id)

    def apply_peer_review(self, case_id: str) -> Case:
        """Apply the outcome that came back on the channel; a no-op while it has not come back."""
        case = self._open(case_id, State.AWAITING_PEER_REVIEW)
        outcome = self.channel.outcome(case_id)
        if outcome is None:
            return case
        self.store.set_decisions(case_id, spread_to_people(self.people(case_id), outcome.decisions))
        self.audit.record("peer_review", outcome.reviewer, "completed", case_id=case_id,
                          custody_ref=case.custody_ref, channel=self.channel.name,
                          viable=sum(1 for d in outcome.decisions.values() if d == Decision.VIABLE))
        return self._after_decisions(case_id, outcome.reviewer)

    def _after_decisions(self, case_id: str, actor: str) -> Case:
        if any(c.decision == Decision.VIABLE for c in self.store.candidates(case_id)):
            self.store.update(case_id, state=State.AWAITING_MATCH_REPORT.value)
            return self.get(case_id)
        return self._close_no_match(case_id, actor, "no viable match")

    def submit_match_report(self, case_id: str, user: User, rank: int, fields: dict[str, str],
                            features: dict[str, str] | None = None, checked_prefill: bool = False) -> Case:
        """Close a viable match with its Match Report: the five factors and the rationale (``fields``), the
        feature-by-feature comparison (``features``, form values) and the officer's confirmation that the
        answers the desk filled in were checked against the images."""
        case = self._owned(case_id, user, "match report", State.AWAITING_MATCH_REPORT)
        viable = {c.rank for c in self.store.candidates(case_id) if c.decision == Decision.VIABLE}
        if rank not in viable:
            raise CaseError("Choose one of the candidates marked viable for the Match Report.")
        errors = validate_match_report(fields)
        morphology, feature_errors = read_morphology(features or {}, need_one_compared=True)
        errors.update(feature_errors)
        if not checked_prefill:
            errors["checked_prefill"] = CONFIRM_ERROR
        if errors or morphology is None:
            raise MatchReportInvalid(errors)
        lead = next((v.subject_ref for v in self.candidate_views(case_id) if v.rank == rank), None)
        now = self._clock()
        self.store.put_match_report(case_id, rank, {k: v.strip() for k, v in fields.items()}, user.username, now,
                                    morphology=morphology.to_dict())
        self.audit.record("match_report", user.username, "recorded", case_id=case_id, custody_ref=case.custody_ref,
                          candidate_rank=rank, **morphology.counts())
        destroyed = self.store.destroy_biometrics(case_id, keep_viable=True)
        self.store.update(case_id, state=State.CLOSED_VIABLE.value, outcome="viable_match", closed_at=now,
                          retention=RETENTION_VIABLE, lead_subject=lead)
        self.audit.record("deletion", user.username, "partial_viable_match_retained", case_id=case_id,
                          custody_ref=case.custody_ref, destroyed=destroyed,
                          retained=["probe image", "probe face thumbnail", "candidate list", "Match Report"])
        return self.get(case_id)

    def withdraw(self, case_id: str, user: User, confirmed: bool = False) -> Case:
        """The owner ends an open case before adjudication (e.g. identity found another way); it destroys any
        photo taken, so only if ``confirmed``: otherwise ``ConfirmationNeeded`` and nothing changes."""
        case = self._owned(case_id, user, "withdrawal", State.AWAITING_APPROVAL, State.APPROVED,
                           State.PROBE_CAPTURED, State.RETURNED)
        if not confirmed:
            raise self._destruction_needs_confirming(
                case_id, "Withdraw this request?", "Yes, withdraw the request",
                "The case will show as 'Withdrawn'. It cannot be reopened: a new request would need approval "
                "again.")
        return self._close_no_match(case_id, user.username, "withdrawn", state=State.WITHDRAWN, case=case)

    def _destruction_needs_confirming(self, case_id: str, title: str, button: str,
                                      consequence: str) -> ConfirmationNeeded:
        """What this case holds that the step would destroy, in words, for the confirmation page."""
        probe = self.store.probe(case_id)
        held = []
        if probe is not None:
            held.append("the photo of the detainee")
            if probe.template is not None:
                held.append("the face template made from it")
            if probe.thumbnail is not None:
                held.append("the face thumbnail")
        crops = self.store.crop_count(case_id)
        if crops:
            held.append(f"the {crops} face crops cut from the photo")
        candidates = len(self.store.candidates(case_id))
        if candidates:
            held.append(f"the list of {candidates} candidates")
        if self.store.comparisons(case_id):
            held.append("your feature comparisons")
        return ConfirmationNeeded(title, held, button, consequence)

    def _close_no_match(self, case_id: str, actor: str, why: str, state: State = State.CLOSED_NO_MATCH,
                        case: Case | None = None) -> Case:
        case = case or self.get(case_id)
        destroyed = self.store.destroy_biometrics(case_id)
        self.store.update(case_id, state=state.value, outcome=why.replace(" ", "_"), closed_at=self._clock(),
                          retention=RETENTION_WITHDRAWN if state is State.WITHDRAWN else RETENTION_NONE)
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
