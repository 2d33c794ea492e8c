"""The RFR policy's safeguards as pure rules: who may do what, and what a submission requires.

Everything here is a function of its arguments (no I/O, no clock), so every
rule is unit-tested directly and the case service and web layer only ask
these functions; a rule removed here makes a test fail. Messages are written
for custody staff and can be shown as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from core.errors import CustodyRfrError


class PolicyRefusal(CustodyRfrError):
    """An action the policy does not allow; the message says which rule and what to do."""


class Role(StrEnum):
    CUSTODY_OFFICER = "custody_officer"
    DETENTION_OFFICER = "detention_officer"
    INSPECTOR = "inspector"
    SUPERINTENDENT = "superintendent"
    TECHNICAL_ADVISER = "technical_adviser"
    DEVICE_ADMIN = "device_admin"
    AUDITOR = "auditor"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.CUSTODY_OFFICER: "Custody officer",
    Role.DETENTION_OFFICER: "Detention officer",
    Role.INSPECTOR: "Inspector",
    Role.SUPERINTENDENT: "Superintendent",
    Role.TECHNICAL_ADVISER: "Technical adviser (facial recognition team)",
    Role.DEVICE_ADMIN: "Device administrator",
    Role.AUDITOR: "Auditor (read only)",
}

# Approval authority by rank: only these roles approve, and a higher number covers a lower one.
_APPROVAL_RANK = {Role.INSPECTOR: 1, Role.SUPERINTENDENT: 2}
# Roles that run the desk workflow: submit, capture, search, adjudicate their own cases.
_DESK_ROLES = frozenset({Role.CUSTODY_OFFICER, Role.DETENTION_OFFICER, Role.INSPECTOR, Role.SUPERINTENDENT})


class Reason(StrEnum):
    """The custody use cases the policy allows; anything else is not a reason to search."""

    CONCEALING_IDENTITY = "concealing_identity"
    FALSE_DETAILS = "false_details"


REASON_LABELS = {
    Reason.CONCEALING_IDENTITY: "The detainee is suspected of concealing their identity",
    Reason.FALSE_DETAILS: "The detainee is suspected of giving false details",
}


class AgeBand(StrEnum):
    UNDER_13 = "under_13"
    AGE_13_15 = "13_15"
    AGE_16_17 = "16_17"
    ADULT = "18_plus"
    UNKNOWN = "unknown"


AGE_BAND_LABELS = {
    AgeBand.UNDER_13: "Under 13",
    AgeBand.AGE_13_15: "13 to 15",
    AgeBand.AGE_16_17: "16 or 17",
    AgeBand.ADULT: "18 or over",
    AgeBand.UNKNOWN: "Cannot tell",
}

# Pre-search checks the policy expects before a facial search is considered.
PRE_SEARCH_CHECKS = {
    "pnc_name_search": "PNC search on the names and dates of birth given",
    "fingerprints": "Fingerprints taken and checked (Livescan / IDENT1)",
    "documents": "Documents or property checked for identity",
    "local_systems": "Local custody and intelligence systems checked",
    "third_party": "Family, friends or other third parties asked",
}


@dataclass(frozen=True)
class Submission:
    """What the officer states before any search (the policy's submission form)."""

    custody_ref: str
    reason: str
    checks: tuple[str, ...]
    checks_detail: str
    age_band: str
    disability: bool
    predates_reassignment: bool


@dataclass(frozen=True)
class ApprovalRequirement:
    """The least rank that may approve, whether technical advice must be recorded first, and why."""

    min_role: Role
    technical_advice: bool
    grounds: tuple[str, ...]

    def describe(self) -> str:
        text = f"{self.min_role.label} or above"
        return text + (" and recorded technical advice" if self.technical_advice else "")


def validate_submission(sub: Submission) -> dict[str, str]:
    """Field name -> message for every problem; empty when the submission may go for approval."""
    errors: dict[str, str] = {}
    ref = sub.custody_ref.strip()
    if not ref:
        errors["custody_ref"] = "Enter the custody record reference."
    elif len(ref) > 40 or not all(c.isalnum() or c in "-/ " for c in ref):
        errors["custody_ref"] = "Enter the custody record reference as it appears on the custody record."
    if sub.reason not in set(Reason):
        errors["reason"] = ("Choose the reason for the search. A facial search is only allowed when the detainee "
                            "is suspected of concealing their identity or giving false details.")
    unknown = [c for c in sub.checks if c not in PRE_SEARCH_CHECKS]
    if unknown or not sub.checks:
        errors["checks"] = "Tick the checks already done. A facial search comes after the usual identity checks."
    if len(sub.checks_detail.strip()) < 20:
        errors["checks_detail"] = "Explain why those checks did not establish the detainee's identity."
    if sub.age_band not in set(AgeBand):
        errors["age_band"] = "Choose the detainee's apparent age."
    return errors


def required_approval(sub: Submission) -> ApprovalRequirement:
    """The approval the policy requires for this submission.

    Every search needs an Inspector or above; an apparent under-16 needs the
    same and is named as a ground; an apparent under-13 needs a Superintendent;
    a disability that may affect facial appearance, or a probe that may pre-date
    gender reassignment, needs technical advice recorded before approval.
    """
    grounds = ["Every search needs approval by an Inspector or above."]
    role = Role.INSPECTOR
    band = AgeBand(sub.age_band)
    if band in (AgeBand.UNDER_13, AgeBand.AGE_13_15):
        grounds.append("The detainee appears to be under 16: Inspector or above.")
    if band is AgeBand.UNDER_13:
        role = Role.SUPERINTENDENT
        grounds.append("The detainee appears to be under 13: Superintendent or above.")
    advice = sub.disability or sub.predates_reassignment
    if sub.disability:
        grounds.append("A disability may affect facial appearance: technical advice must be recorded.")
    if sub.predates_reassignment:
        grounds.append("The photo may pre-date gender reassignment: technical advice must be recorded.")
    return ApprovalRequirement(min_role=role, technical_advice=advice, grounds=tuple(grounds))


def apparent_minor_flags(age_band: str) -> tuple[bool | None, bool | None]:
    """(apparently under 18, apparently under 16) for oversight monitoring; None when age cannot be told."""
    band = AgeBand(age_band)
    if band is AgeBand.UNKNOWN:
        return None, None
    under_16 = band in (AgeBand.UNDER_13, AgeBand.AGE_13_15)
    return under_16 or band is AgeBand.AGE_16_17, under_16


def role_of(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as e:
        raise PolicyRefusal(f"{value!r} is not a role on this device.") from e


def can_run_desk(role: Role) -> bool:
    """Submit, capture, search and adjudicate: custody and detention officers and approving ranks."""
    return role in _DESK_ROLES


def check_can_submit(role: Role) -> None:
    if not can_run_desk(role):
        raise PolicyRefusal(f"A {role.label} cannot submit or run a facial search. "
                            "Ask a custody or detention officer.")


def check_approval(approver: str, approver_role: Role, submitted_by: str, requirement: ApprovalRequirement,
                   advice_recorded: bool) -> None:
    """Raise ``PolicyRefusal`` unless this person may approve this case now."""
    check_decider(approver, approver_role, submitted_by, requirement)
    if requirement.technical_advice and not advice_recorded:
        raise PolicyRefusal("Technical advice must be recorded before this search can be approved "
                            "(possible disability affecting appearance or gender reassignment). "
                            "Ask the facial recognition team's technical adviser.")


def check_decider(approver: str, approver_role: Role, submitted_by: str, requirement: ApprovalRequirement) -> None:
    """Raise ``PolicyRefusal`` unless this person has the rank to decide on this request at all.

    Deciding means approving, refusing or returning it for changes: the same rank and the same
    "never your own request" rule, so nobody below the required rank can end or send back a case
    they could not have approved. Technical advice is needed only to approve (``check_approval``).
    """
    if approver == submitted_by:
        raise PolicyRefusal("You cannot approve your own request. "
                            "Another officer of the required rank must approve it.")
    rank = _APPROVAL_RANK.get(approver_role, 0)
    if rank == 0:
        raise PolicyRefusal(f"A {approver_role.label} cannot approve facial searches. "
                            f"This search needs {requirement.describe()}.")
    if rank < _APPROVAL_RANK[requirement.min_role]:
        raise PolicyRefusal(f"This search needs approval by a {requirement.min_role.label} or above: "
                            + " ".join(g for g in requirement.grounds if requirement.min_role.label in g))


def check_technical_adviser(role: Role) -> None:
    if role is not Role.TECHNICAL_ADVISER:
        raise PolicyRefusal("Only a technical adviser from the facial recognition team can record technical advice.")


def check_case_owner(actor: str, submitted_by: str, role: Role) -> None:
    """Capture, search and adjudication are done by the officer who submitted the case."""
    if not can_run_desk(role):
        raise PolicyRefusal(f"A {role.label} cannot run facial searches or judge candidates.")
    if actor != submitted_by:
        raise PolicyRefusal("Only the officer who submitted this case can capture, search and judge candidates.")


def check_peer_reviewer(reviewer: str, role: Role, adjudicator: str) -> None:
    """A peer review is done by a technical adviser who is not the person who judged the candidates."""
    if role is not Role.TECHNICAL_ADVISER:
        raise PolicyRefusal("Peer review is done by a technical adviser from the facial recognition team.")
    if reviewer == adjudicator:
        raise PolicyRefusal("You cannot peer review your own adjudication.")


def check_account_admin(role: Role) -> None:
    if role is not Role.DEVICE_ADMIN:
        raise PolicyRefusal("Only the device administrator manages accounts.")


class Decision(StrEnum):
    VIABLE = "viable"
    NOT_VIABLE = "not_viable"
    PEER_REVIEW = "needs_peer_review"


DECISION_LABELS = {
    Decision.VIABLE: "Viable",
    Decision.NOT_VIABLE: "Not viable",
    Decision.PEER_REVIEW: "Needs peer review",
}


def needs_peer_review(decisions: Iterable[str], doubts: str) -> bool:
    """A case closes as 'no viable match' only after peer review if any candidate or the officer raised doubts."""
    return any(d == Decision.PEER_REVIEW for d in decisions) or bool(doubts.strip())


MATCH_REPORT_FIELDS = {
    "probe_quality": "Probe image quality",
    "reference_quality": "Reference image quality",
    "time_lapse": "Time lapse between the images",
    "lighting": "Lighting",
    "other_factors": "Other subject, system or environmental factors",
    "age_judgement": "How age-related differences were judged",
    "rationale": "Why the candidate is a viable match",
}


# What to say when a Match Report field is left empty: what to write, in the officer's words (GOV.UK style).
MATCH_REPORT_MISSING = {
    "probe_quality": "Describe the quality of the detainee's photo.",
    "reference_quality": "Describe the quality of the reference image.",
    "time_lapse": "Enter the time between the two images, or write that it is not known.",
    "lighting": "Describe the lighting in the two images.",
    "other_factors": "Enter any other factors that affect the comparison, or write 'None'.",
    "age_judgement": "Explain how you allowed for differences of age between the two images.",
    "rationale": "Explain why this candidate is a viable match.",
}


def validate_match_report(fields: dict[str, str]) -> dict[str, str]:
    """Every Match Report field must be filled in: a viable match without one is not allowed."""
    return {name: MATCH_REPORT_MISSING[name] for name in MATCH_REPORT_FIELDS
            if len(fields.get(name, "").strip()) < 3}


def can_approve(role: Role) -> bool:
    return role in _APPROVAL_RANK


def may_approve_for(role: Role, min_role: Role) -> bool:
    """Whether ``role`` has the rank to approve a search that needs ``min_role`` or above."""
    return _APPROVAL_RANK.get(role, 0) >= _APPROVAL_RANK.get(min_role, len(_APPROVAL_RANK) + 1)
