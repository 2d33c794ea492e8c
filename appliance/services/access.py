"""Who may open which case, and how much of it: the desk's one per-case access rule.

A custody case holds a detainee's face and the faces of the people it was compared with, so a
role alone opens nothing: each case is open only to the people taking part in it, and the
auditor reads it only once it has closed. Everyone else is told that no such case exists, in
the same words as for a number nobody ever used, so a refusal gives away neither the case nor
who it belongs to; the refusal itself is audited (``access_refused``).

``case_access`` is pure (no I/O, no clock), like ``policy``; ``CaseAccess`` applies it and records
the refusals. The case service asks it before every read and every step, and the web layer only
shows what the service hands it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from appliance.services.accounts import User
from appliance.services.audit import AuditLog
from appliance.services.policy import Role, may_approve_for
from core.errors import CustodyRfrError

NO_SUCH_CASE = "There is no case with that number on this device."


class CaseNotFound(CustodyRfrError):
    """No such case, or not one this person may open: the two are told apart only in the audit log."""

    def __init__(self) -> None:
        super().__init__(NO_SUCH_CASE)


class Access(IntEnum):
    """How much of one case one person may see; a higher level includes the lower ones."""

    NONE = 0
    # The submission and its approval record: what a would-be approver or technical adviser needs to act on.
    DETAILS = 1
    # The whole written record (candidate list, peer review, Match Report, summary), read only, no images.
    RECORD = 2
    # The record and its images (probe, face crops, reference thumbnails): the people taking part.
    IMAGES = 3


@dataclass(frozen=True)
class CaseParties:
    """The facts about a case that decide who may open it (built by the case service from its row)."""

    submitted_by: str
    approved_by: str | None
    advice_by: str | None
    advice_required: bool
    required_role: Role
    adjudicated_by: str | None
    peer_reviewer: str | None  # who recorded a peer review on this desk (the local channel)
    awaiting_approval: bool
    awaiting_local_peer_review: bool  # a review a technical adviser on this desk records
    closed: bool
    decided_by: str | None = None  # the approver who refused it or returned it for changes


def case_access(user: User, case: CaseParties) -> Access:
    """The access ``user`` has to ``case``.

    - its officer, the approver who approved it, the adviser who recorded its technical advice and the
      adviser who recorded its peer review on this desk: everything, images included;
    - an Inspector or Superintendent whose rank is enough for it, while it waits for approval, and a
      technical adviser, while it waits for technical advice nobody has given yet: the submission
      details they decide on, no images (there are none before approval);
    - a technical adviser (not the one who judged the candidates), while it waits for a peer review
      recorded on this desk: everything, since the review compares the faces;
    - the approver who refused it or returned it for changes: the submission details they decided on;
    - the auditor, once it has closed: the written record, read only, no images;
    - nobody else, and never the device administrator.
    """
    name, role = user.username, user.role
    if role is Role.DEVICE_ADMIN:
        return Access.NONE
    if role is Role.AUDITOR:
        return Access.RECORD if case.closed else Access.NONE
    if name in (case.submitted_by, case.approved_by, case.advice_by, case.peer_reviewer):
        return Access.IMAGES
    if (case.awaiting_local_peer_review and role is Role.TECHNICAL_ADVISER
            and name != (case.adjudicated_by or case.submitted_by)):
        return Access.IMAGES
    if name == case.decided_by:
        return Access.DETAILS  # the approver who refused or returned it: what they decided on, no images
    if case.awaiting_approval:
        if may_approve_for(role, case.required_role):
            return Access.DETAILS
        if role is Role.TECHNICAL_ADVISER and case.advice_required and not case.advice_by:
            return Access.DETAILS
    return Access.NONE


class CaseAccess:
    """Applies ``case_access`` for the case service and audits every refusal."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def require(self, user: User, case_id: str, case: CaseParties | None, need: Access, action: str,
                custody_ref: str | None = None) -> Access:
        """The user's access, when it reaches ``need``; otherwise ``CaseNotFound``, recorded as ``access_refused``.

        ``case`` is None for a number that names no case: asking for one is recorded too, since
        trying numbers is how someone would look for cases that are not theirs.
        """
        level = case_access(user, case) if case is not None else Access.NONE
        if level >= need and level is not Access.NONE:
            return level
        details: dict[str, object] = {"case_id": case_id[:40], "action": action, "role": user.role.value}
        if custody_ref is not None:
            details["custody_ref"] = custody_ref
        self._audit.record("access_refused", user.username, "not_a_party" if case is not None else "no_such_case",
                           **details)
        raise CaseNotFound()
