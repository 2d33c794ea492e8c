"""Plain-English names for every figure and category, shared by the pages, the charts and the PDF.

Kept apart from the aggregation so wording can change without touching the
counting, and so one word list serves the board's report and the public one.
"""

from __future__ import annotations

FIGURES = {
    "devices": "Custody desks reporting",
    "searches": "Searches",
    "search_outcomes": "Searches by outcome (status at the end of the period)",
    "searches_peer_reviewed": "Searches that went to peer review",
    "searches_by_reason": "Searches by reason for the search",
    "searches_by_age_band": "Searches by the detainee's apparent age",
    "apparent_under_18": "Probes of people who appeared to be under 18",
    "apparent_under_16": "Probes of people who appeared to be under 16",
    "submissions": "Requests submitted",
    "submissions_refused": "Requests refused by the approver (case closed, no search)",
    "submissions_returned": "Requests returned to the officer for changes",
    "approvals": "Approvals",
    "approvals_by_rank": "Approvals by the approver's rank",
    "approvals_by_required_rank": "Approvals by the rank the policy required",
    "approvals_by_reason": "Approvals by reason for the search",
    "technical_advice": "Technical advice recorded before approval",
    "peer_reviews_requested": "Peer reviews requested",
    "peer_reviews_completed": "Peer reviews completed",
    "peer_review_results": "Peer review results",
    "match_reports": "Match Reports written",
    "deletions": "Deletions of probe images and templates",
    "refusals": "Refusals (actions the system or the policy did not allow)",
    "library_version_searches": "Searches per reference library version",
    "library_version_devices": "Desks that searched each library version",
    "library_updates": "Library updates installed on desks",
}

CATEGORIES = {
    "total": "Total",
    "viable_match": "Viable match (a lead for investigation)",
    "no_viable_match": "No viable match",
    "awaiting_peer_review": "Waiting for peer review",
    "open": "Still open",
    "concealing_identity": "Suspected of concealing identity",
    "false_details": "Suspected of giving false details",
    "not_in_period": "Request made before the period",
    "under_13": "Under 13",
    "13_15": "13 to 15",
    "16_17": "16 or 17",
    "18_plus": "18 or over",
    "unknown": "Could not tell",
    "not_recorded": "Not recorded",
    "yes": "Yes",
    "no": "No",
    "inspector": "Inspector",
    "superintendent": "Superintendent",
    "other": "Other",
    "viable_confirmed": "A candidate confirmed as viable",
    "no_viable": "No candidate viable",
    "withdrawn": "Request withdrawn",
    "refused": "Request refused by the approver",
    "viable_match_partial": "Viable match: template and crops destroyed, probe kept with the Match Report",
    "retention_expired": "Viable match: probe image and candidate list destroyed at the end of the retention period",
    "approval_refused": "Approval refused (rank or own request)",
    "technical_advice_refused": "Technical advice refused (not a technical adviser)",
    "peer_review_refused": "Peer review refused (not allowed to review)",
    "search_refused_policy": "Search refused by the policy (no valid approval, not the case owner)",
    "search_refused_probe_quality": "Search refused: photo not good enough",
    "search_refused_no_face": "Search refused: no face found",
    "search_refused_image_rejected": "Search refused: file not a usable photo",
    "search_refused_probe_replaced": "Search refused: the photo had been replaced since the page was shown",
    "search_refused_library_not_authorised": "Search refused: a chosen library was not authorised (missing, "
                                             "suspended, expired or past its review)",
    "search_refused_not_authorised_user": "Search refused: the officer's authorisation to search had lapsed",
    "authorisation_refused": "Library authorisation refused by a desk (failed verification, another desk's, "
                             "or older)",
    "request_refused": "Request refused by a desk",
    "library_update_refused": "Library update refused by a desk (failed verification)",
    "access_refused": "Case not opened: the person was not taking part in it, or no such case",
}


def figure(name: str) -> str:
    return FIGURES.get(name, name.replace("_", " ").capitalize())


def category(name: str) -> str:
    return CATEGORIES.get(name, name)
