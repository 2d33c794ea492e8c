"""Words for auditors: event types, outcomes and the details of an event, as people read them.

The desk records details as machine values (``age_band=18_plus``, ``destroyed=['probe image', ...]``);
the auditor's pages and spreadsheet exports show them as labelled lines ("Apparent age: 18 or over",
"Destroyed:" and a list), each value whole, never cut off. The evidence export keeps the raw values
(they are what the hashes cover); only what people read goes through here. A key or value not listed
is shown as it was recorded, tidied, rather than hidden, so a new desk version never loses a detail.

Central does not import the desk, so the desk's own labels for reasons, ages and ranks are repeated
here; ``tests/central/test_audit_labels.py`` checks they match the desk's policy module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EVENT_TYPES = {
    "login": "Signed in",
    "logout": "Signed out",
    "submission": "Search requested",
    "submission_refused": "Request refused by the approver",
    "submission_returned": "Request returned for changes",
    "approval": "Approval",
    "search": "Search",
    "search_refused": "Search refused",
    "candidate_viewed": "Candidates viewed",
    "access_refused": "Case not opened",
    "adjudication": "Candidates judged",
    "match_report": "Match Report",
    "peer_review": "Peer review",
    "deletion": "Deletion",
    "library_loaded": "Library loaded",
    "library_update": "Library updated",
    "library_update_refused": "Library update refused",
    "config_change": "Configuration changed",
    "request_refused": "Request refused",
    "device_wiped": "Desk wiped",
    "device_fault": "Desk fault (clock or storage)",
    "events_resent": "Events sent again at central's request",
    "command_key_rotated": "Central's command key rotated",
    "authorisation_applied": "Library authorisation applied",
    "authorisation_refused": "Library authorisation refused",
    "library_destroyed": "Library copy destroyed",
}

#: Plural names for one kind of row per spreadsheet file.
EVENT_KINDS = {
    "login": "sign-ins", "logout": "sign-outs", "submission": "requests",
    "submission_refused": "refused-requests-by-approver", "submission_returned": "returned-requests",
    "approval": "approvals",
    "search": "searches", "search_refused": "refused-searches", "candidate_viewed": "candidate-views",
    "access_refused": "refused-case-access", "adjudication": "adjudications", "match_report": "match-reports",
    "peer_review": "peer-reviews", "deletion": "deletions", "library_loaded": "library-loads",
    "library_update": "library-updates", "library_update_refused": "refused-library-updates",
    "config_change": "configuration-changes", "request_refused": "refused-requests", "device_wiped": "wipes",
    "device_fault": "desk-faults", "events_resent": "resent-events", "command_key_rotated": "command-key-rotations",
    "authorisation_applied": "library-authorisations", "authorisation_refused": "refused-library-authorisations",
    "library_destroyed": "library-destructions",
}

OUTCOMES = {
    "ok": "Done",
    "clock_doubtful": "Desk clock doubtful: times nearby may be wrong",
    "clock_trusted": "Desk clock agrees with central again",
    "database_damaged": "Desk database failed its integrity check",
    "library_damaged": "Desk library copy failed its integrity check",
    "library_repair_started": "Damaged library refused; a fresh copy is being fetched from central",
    "library_repair_retrying": "Damaged library still refused; fetching a fresh copy is tried again",
    "library_repaired": "Damaged library replaced by a fresh copy from central",
    "requeued": "Queued again for central",
    "awaiting_approval": "Waiting for approval",
    "approved": "Approved",
    "technical_advice_recorded": "Technical advice recorded",
    "candidates_shown": "Candidates shown",
    "no_candidates": "No candidates above the threshold",
    "shown": "Shown",
    "recorded": "Recorded",
    "requested": "Requested",
    "completed": "Completed",
    "destroyed": "Destroyed",
    "partial_viable_match_retained": "Viable match: some data kept, the rest destroyed",
    "probe_quality": "Photo not good enough",
    "policy": "Not allowed by the policy",
    "not_a_party": "Not taking part in the case",
    "no_such_case": "No such case",
    "refused": "Refused",
    "fleet_command_refused": "Command from central refused",
    "fleet_command_held": "Command from central held: the desk's clock was doubtful",
    "wipe_accepted": "Wipe accepted",
    "held": "Held: the desk's clock was doubtful",
    "session_ended": "Signed out by the desk (timed out, or its clock doubtful)",
    "success": "Succeeded",
    "failure": "Failed",
    "decided": "Decided",
    "outcome_sent": "Outcome sent to the desk",
    "request_conflict": "Conflicting request refused",
    "confirmed_not_viable": "No candidate viable (confirmed by the reviewer)",
    "viable_after_review": "A candidate viable after review",
    "returned": "Returned for changes",
    "resubmitted": "Sent again after changes",
    "probe_replaced": "Photo replaced since the page was shown",
    "compared": "Compared side by side",
    "features_compared": "Features compared",
    "refused_contradictory": "Contradictory judgement refused",
    "not_authorised_user": "Not an Authorised RFR User (authorisation to search lapsed or not recorded)",
    "account_created": "Account created at the desk",
    "search_authorisation_recorded": "Authorisation to search recorded at the desk",
    "search_authorisation_removed": "Authorisation to search removed at the desk",
    "library_not_authorised": "A chosen library may not be searched (suspended, expired, review overdue or not listed)",
    "libraries_narrowed": "Search narrowed to fewer libraries",
    "rollback": "Older than the one applied (refused)",
    "not_for_this_desk": "Issued for another desk (refused)",
}

#: A reviewer's or officer's decision on one candidate.
DECISIONS = {"viable": "Viable", "not_viable": "Not viable", "needs_peer_review": "Sent for peer review"}

DETAIL_KEYS = {
    "case_id": "Case",
    "custody_ref": "Custody record",
    "reason": "Reason for the search",
    "age_band": "Apparent age",
    "required_approval": "Approval required from",
    "technical_advice_required": "Technical advice required",
    "approver_role": "Approver's rank",
    "library_version": "Library version",
    "previous_version": "Previous version",
    "config_version": "Configuration version",
    "embedder": "Face model",
    "faces_found": "Faces found in the photo",
    "candidates": "Candidates",
    "top_score": "Highest score",
    "probe_quality": "Photo quality",
    "apparent_under_18": "Appeared to be under 18",
    "apparent_under_16": "Appeared to be under 16",
    "destroyed": "Destroyed",
    "retained": "Kept",
    "why": "Why",
    "held_because": "Held because",
    "clock": "Desk clock",
    "rule": "Rule applied",
    "bytes_received": "Size of the file received (bytes)",
    "doubts_recorded": "Doubts recorded",
    "channel": "Sent by",
    "viable": "Viable",
    "not_viable": "Not viable",
    "needs_peer_review": "Sent for peer review",
    "candidate_rank": "Candidate rank",
    "records": "Records",
    "message": "Message",
    "nonce": "Command reference",
    "request_id": "Request",
    "reviewer": "Reviewer",
}

_ROLES = {
    "custody_officer": "Custody officer",
    "detention_officer": "Detention officer",
    "inspector": "Inspector",
    "superintendent": "Superintendent",
    "technical_adviser": "Technical adviser",
    "device_admin": "Device administrator",
    "auditor": "Auditor",
}

#: Values by the key they belong to.
VALUES: dict[str, dict[str, str]] = {
    "age_band": {"under_13": "Under 13", "13_15": "13 to 15", "16_17": "16 or 17", "18_plus": "18 or over",
                 "unknown": "Cannot tell"},
    "reason": {"concealing_identity": "Suspected of concealing their identity",
               "false_details": "Suspected of giving false details"},
    "required_approval": _ROLES,
    "approver_role": _ROLES,
    "probe_quality": {"pass": "Good enough", "warn": "Usable, with warnings", "fail": "Not good enough"},
}

NOT_RECORDED = "Not recorded"


@dataclass(frozen=True)
class DetailLine:
    """One labelled detail: ``items`` holds a list's entries (shown as a list), otherwise ``text``."""

    key: str
    label: str
    text: str
    items: tuple[str, ...] = ()

    @property
    def plain(self) -> str:
        """One-cell form for a spreadsheet: a list's entries separated by semicolons."""
        return "; ".join(self.items) if self.items else self.text


def event_type(name: str) -> str:
    return EVENT_TYPES.get(name, _tidy(name))


def outcome(name: str) -> str:
    return OUTCOMES.get(name, _tidy(name))


def detail_key(key: str) -> str:
    return DETAIL_KEYS.get(key, _tidy(key))


def _tidy(raw: str) -> str:
    text = raw.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else raw


def value(key: str, raw: Any) -> str:
    """One value as a person reads it (whole: never shortened)."""
    if raw is None or raw == "":
        return NOT_RECORDED
    if isinstance(raw, bool):
        return "Yes" if raw else "No"
    if key.startswith("apparent_under_") and raw in (0, 1):
        return "Yes" if raw else "No"
    if isinstance(raw, str):
        return VALUES.get(key, {}).get(raw, raw)
    if isinstance(raw, Mapping):
        return "; ".join(f"{detail_key(str(k))}: {value(str(k), v)}" for k, v in raw.items())
    if isinstance(raw, list | tuple):
        return "; ".join(value(key, v) for v in raw)
    return str(raw)


def details(raw: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> list[DetailLine]:
    """Every detail of an event as labelled lines, in a stable order (the known keys first)."""
    order = {k: n for n, k in enumerate(DETAIL_KEYS)}
    lines = []
    for key in sorted(raw, key=lambda k: (order.get(k, len(order)), k)):
        if key in skip:
            continue
        item = raw[key]
        if isinstance(item, list | tuple):
            entries = tuple(value(key, v) for v in item)
            lines.append(DetailLine(key, detail_key(key), "None" if not entries else "; ".join(entries), entries))
        else:
            lines.append(DetailLine(key, detail_key(key), value(key, item)))
    return lines
