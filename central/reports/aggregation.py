"""Audit events -> the oversight figures: counts only, over closed vocabularies.

Pure (no I/O, no clock): the same list of stored events always gives the same
figures, so the board's report can be recomputed from an audit export.

Where each figure comes from (event ``type`` / ``outcome`` / ``details`` key,
as written by the appliance's case service):

- ``searches``: ``search`` events (outcome ``candidates_shown`` or ``no_candidates``).
  One search per case (the case state machine allows only one).
- ``search_outcomes``: each searched case's state at the end of the events given:
  ``viable_match`` if a ``match_report``/``recorded`` or a ``deletion``/
  ``partial_viable_match_retained`` follows; ``no_viable_match`` if a
  ``deletion``/``destroyed`` with ``why = "no viable match"`` follows;
  otherwise ``awaiting_peer_review`` if a ``peer_review``/``requested`` has no
  ``completed`` after it, else ``open`` (awaiting adjudication or a Match Report).
  ``searches_peer_reviewed`` counts searched cases that had a ``peer_review``/``requested``.
- ``searches_by_age_band``, ``apparent_under_18``, ``apparent_under_16``: the ``search``
  event's ``age_band`` and ``apparent_under_18``/``apparent_under_16`` (``true``/``false``;
  ``null`` when the age could not be told -> ``unknown``).
- ``searches_by_reason`` and ``approvals_by_reason``: ``reason`` of the case's
  ``submission`` event; ``not_in_period`` when that submission is not among the events.
- ``submissions``: ``submission``/``awaiting_approval`` (a request sent again after a return,
  ``submission``/``resubmitted``, is the same request: it updates the case's reason, not the count).
- ``submissions_refused`` / ``submissions_returned``: the approver's other two answers,
  ``submission_refused``/``refused`` (the case ends, no search) and ``submission_returned``/``returned``
  (sent back to the officer to change; one request may be returned more than once).
- ``approvals``: ``approval``/``approved``; ``approvals_by_rank`` from ``approver_role``,
  ``approvals_by_required_rank`` from ``required_approval``; ``technical_advice``:
  ``approval``/``technical_advice_recorded``.
- ``peer_reviews_requested`` / ``peer_reviews_completed``: ``peer_review``/``requested`` and
  ``completed``; ``peer_review_results``: a completed review with ``viable > 0`` is
  ``viable_confirmed``, otherwise ``no_viable``.
- ``match_reports``: ``match_report``/``recorded``.
- ``deletions``: ``deletion``/``destroyed`` by ``why`` (``no viable match``, ``withdrawn``, ``refused``,
  ``retention period ended``: a viable match's images destroyed when its retention period ended)
  and ``deletion``/``partial_viable_match_retained`` (template and crops destroyed, probe kept).
- ``refusals``: ``approval``/``refused`` and ``advice_refused``, ``peer_review``/``refused``,
  ``search_refused`` by outcome (``policy``, ``probe_quality``, ``no_face``, ``image_rejected``,
  ``library_not_authorised``: a chosen library refused; ``not_authorised_user``: no current search
  authorisation), ``request_refused``, ``library_update_refused``, ``authorisation_refused`` (a desk refused
  a library authorisation manifest), ``access_refused`` (a case opened by someone not
  taking part in it, or a case number that names none).
- ``library_versions``: per ``library_version`` of ``search`` events, the searches and the
  number of devices that searched it; ``library_updates``: ``library_update``/``ok``.

A value outside a figure's vocabulary is counted as ``other`` (or ``not_recorded``), never
copied: so no string from an event (username, custody reference, case id, free text) can
reach a report. ``Figures`` checks this on construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

OUTCOMES = ("viable_match", "no_viable_match", "awaiting_peer_review", "open")
RANKS = ("inspector", "superintendent", "other")
REASONS = ("concealing_identity", "false_details", "not_in_period")
AGE_BANDS = ("under_13", "13_15", "16_17", "18_plus", "unknown", "not_recorded")
FLAGS = ("yes", "no", "unknown")
PEER_RESULTS = ("viable_confirmed", "no_viable")
DELETIONS = ("no_viable_match", "withdrawn", "refused", "viable_match_partial", "retention_expired", "other")
REFUSALS = ("approval_refused", "technical_advice_refused", "peer_review_refused", "search_refused_policy",
            "search_refused_probe_quality", "search_refused_no_face", "search_refused_image_rejected",
            "search_refused_probe_replaced", "search_refused_library_not_authorised",
            "search_refused_not_authorised_user", "request_refused", "library_update_refused",
            "authorisation_refused", "access_refused", "other")

#: Every count-table field of ``Figures`` and the only keys it may hold, in display order.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "search_outcomes": OUTCOMES,
    "searches_by_reason": REASONS,
    "searches_by_age_band": AGE_BANDS,
    "apparent_under_18": FLAGS,
    "apparent_under_16": FLAGS,
    "approvals_by_rank": RANKS,
    "approvals_by_required_rank": RANKS,
    "approvals_by_reason": REASONS,
    "peer_review_results": PEER_RESULTS,
    "deletions": DELETIONS,
    "refusals": REFUSALS,
}
_MAX_VERSION = 10**9
_SEARCH_REFUSALS = {"policy": "search_refused_policy", "probe_quality": "search_refused_probe_quality",
                    "no_face": "search_refused_no_face", "image_rejected": "search_refused_image_rejected",
                    "probe_replaced": "search_refused_probe_replaced",
                    "library_not_authorised": "search_refused_library_not_authorised",
                    "not_authorised_user": "search_refused_not_authorised_user"}


@dataclass(frozen=True)
class LibraryUse:
    """How much one library version was searched, and on how many devices."""

    version: int
    searches: int
    devices: int


@dataclass(frozen=True)
class Figures:
    """The oversight figures: integers, and count tables keyed only by ``VOCABULARIES``.

    There is deliberately no string field: the schema itself cannot carry a name,
    a reference or free text.
    """

    devices: int
    searches: int
    search_outcomes: dict[str, int]
    searches_peer_reviewed: int
    searches_by_reason: dict[str, int]
    searches_by_age_band: dict[str, int]
    apparent_under_18: dict[str, int]
    apparent_under_16: dict[str, int]
    submissions: int
    submissions_refused: int
    submissions_returned: int
    approvals: int
    approvals_by_rank: dict[str, int]
    approvals_by_required_rank: dict[str, int]
    approvals_by_reason: dict[str, int]
    technical_advice: int
    peer_reviews_requested: int
    peer_reviews_completed: int
    peer_review_results: dict[str, int]
    match_reports: int
    deletions: dict[str, int]
    refusals: dict[str, int]
    library_versions: tuple[LibraryUse, ...]
    library_updates: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in VOCABULARIES:
                if not isinstance(value, dict) or tuple(value) != VOCABULARIES[f.name]:
                    raise ValueError(f"{f.name} must hold exactly the keys {VOCABULARIES[f.name]}")
                _check_counts(f.name, value.values())
            elif f.name == "library_versions":
                for use in value:
                    if not isinstance(use, LibraryUse):
                        raise ValueError("library_versions must hold LibraryUse entries")
                    _check_counts(f.name, (use.version, use.searches, use.devices))
            else:
                _check_counts(f.name, (value,))


def _check_counts(name: str, values: Iterable[object]) -> None:
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must hold non-negative integers, not {v!r}")


def _table(counter: Counter[str], vocabulary: tuple[str, ...]) -> dict[str, int]:
    return {key: counter.get(key, 0) for key in vocabulary}


def _pick(value: object, vocabulary: tuple[str, ...], fallback: str) -> str:
    """``value`` if it is one of the vocabulary's words, else ``fallback``: event text never passes through."""
    return value if isinstance(value, str) and value in vocabulary else fallback


def _flag(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "unknown"


def _version(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _MAX_VERSION:
        return value
    return None


def _refusal(event: Mapping[str, Any]) -> str | None:
    kind, outcome = event["type"], event["outcome"]
    if kind == "approval" and outcome == "refused":
        return "approval_refused"
    if kind == "approval" and outcome == "advice_refused":
        return "technical_advice_refused"
    if kind == "peer_review" and outcome == "refused":
        return "peer_review_refused"
    if kind == "search_refused":
        return _SEARCH_REFUSALS.get(outcome, "other")
    if kind in ("request_refused", "library_update_refused", "authorisation_refused", "access_refused"):
        return str(kind)
    return None


def _deletion(event: Mapping[str, Any]) -> str:
    if event["outcome"] == "partial_viable_match_retained":
        return "viable_match_partial"
    if event["outcome"] == "destroyed":
        why = event["details"].get("why")
        return {"no viable match": "no_viable_match", "withdrawn": "withdrawn", "refused": "refused",
                "retention period ended": "retention_expired"}.get(why, "other")
    return "other"


def _chain_order(event: Mapping[str, Any]) -> tuple[str, int]:
    """Per device, the chain order (seq) is the truth (clocks drift); across devices only counts matter."""
    return (str(event["device_id"]), int(event.get("seq") or 0))


def aggregate(events: Iterable[Mapping[str, Any]]) -> Figures:
    """The figures for ``events`` (stored audit event dicts: type, outcome, details, device_id, seq)."""
    ordered = sorted(events, key=_chain_order)
    reasons: dict[tuple[str, object], str] = {}
    searched: dict[tuple[str, object], str] = {}  # case -> state at the end of the events
    peer_reviewed: set[tuple[str, object]] = set()
    tallies: dict[str, Counter[str]] = {name: Counter() for name in VOCABULARIES}
    versions: dict[int, tuple[int, set[str]]] = {}
    scalars: Counter[str] = Counter()
    devices: set[str] = set()

    for event in ordered:
        kind, outcome = event["type"], event["outcome"]
        details = event["details"] if isinstance(event.get("details"), dict) else {}
        device = str(event["device_id"])
        devices.add(device)
        case = (device, details.get("case_id"))
        refusal = _refusal(event)
        if refusal is not None:
            tallies["refusals"][_pick(refusal, REFUSALS, "other")] += 1
        if kind == "submission":
            if outcome != "resubmitted":
                scalars["submissions"] += 1
            reasons[case] = _pick(details.get("reason"), REASONS[:2], "not_in_period")
        elif kind == "search":
            scalars["searches"] += 1
            searched[case] = "open"
            tallies["searches_by_reason"][reasons.get(case, "not_in_period")] += 1
            tallies["searches_by_age_band"][_pick(details.get("age_band"), AGE_BANDS[:5], "not_recorded")] += 1
            tallies["apparent_under_18"][_flag(details.get("apparent_under_18"))] += 1
            tallies["apparent_under_16"][_flag(details.get("apparent_under_16"))] += 1
            version = _version(details.get("library_version"))
            if version is not None:
                count, on = versions.get(version, (0, set()))
                versions[version] = (count + 1, on | {device})
        elif kind == "approval" and outcome == "approved":
            scalars["approvals"] += 1
            tallies["approvals_by_rank"][_pick(details.get("approver_role"), RANKS[:2], "other")] += 1
            tallies["approvals_by_required_rank"][_pick(details.get("required_approval"), RANKS[:2], "other")] += 1
            tallies["approvals_by_reason"][reasons.get(case, "not_in_period")] += 1
        elif kind == "submission_refused" and outcome == "refused":
            scalars["submissions_refused"] += 1
        elif kind == "submission_returned" and outcome == "returned":
            scalars["submissions_returned"] += 1
        elif kind == "approval" and outcome == "technical_advice_recorded":
            scalars["technical_advice"] += 1
        elif kind == "peer_review" and outcome == "requested":
            scalars["peer_reviews_requested"] += 1
            peer_reviewed.add(case)
            if case in searched and searched[case] == "open":
                searched[case] = "awaiting_peer_review"
        elif kind == "peer_review" and outcome == "completed":
            scalars["peer_reviews_completed"] += 1
            viable = details.get("viable")
            confirmed = isinstance(viable, int) and not isinstance(viable, bool) and viable > 0
            tallies["peer_review_results"]["viable_confirmed" if confirmed else "no_viable"] += 1
            if searched.get(case) == "awaiting_peer_review":
                searched[case] = "open"
        elif kind == "match_report" and outcome == "recorded":
            scalars["match_reports"] += 1
            if case in searched:
                searched[case] = "viable_match"
        elif kind == "deletion":
            what = _deletion(event)
            tallies["deletions"][what] += 1
            if case in searched and what in ("viable_match_partial", "no_viable_match"):
                searched[case] = "viable_match" if what == "viable_match_partial" else "no_viable_match"
        elif kind == "library_update" and outcome == "ok":
            scalars["library_updates"] += 1

    tallies["search_outcomes"].update(searched.values())
    return Figures(
        devices=len(devices),
        searches=scalars["searches"],
        search_outcomes=_table(tallies["search_outcomes"], OUTCOMES),
        searches_peer_reviewed=sum(1 for case in searched if case in peer_reviewed),
        searches_by_reason=_table(tallies["searches_by_reason"], REASONS),
        searches_by_age_band=_table(tallies["searches_by_age_band"], AGE_BANDS),
        apparent_under_18=_table(tallies["apparent_under_18"], FLAGS),
        apparent_under_16=_table(tallies["apparent_under_16"], FLAGS),
        submissions=scalars["submissions"],
        submissions_refused=scalars["submissions_refused"],
        submissions_returned=scalars["submissions_returned"],
        approvals=scalars["approvals"],
        approvals_by_rank=_table(tallies["approvals_by_rank"], RANKS),
        approvals_by_required_rank=_table(tallies["approvals_by_required_rank"], RANKS),
        approvals_by_reason=_table(tallies["approvals_by_reason"], REASONS),
        technical_advice=scalars["technical_advice"],
        peer_reviews_requested=scalars["peer_reviews_requested"],
        peer_reviews_completed=scalars["peer_reviews_completed"],
        peer_review_results=_table(tallies["peer_review_results"], PEER_RESULTS),
        match_reports=scalars["match_reports"],
        deletions=_table(tallies["deletions"], DELETIONS),
        refusals=_table(tallies["refusals"], REFUSALS),
        library_versions=tuple(LibraryUse(v, n, len(on)) for v, (n, on) in sorted(versions.items())),
        library_updates=scalars["library_updates"],
    )


def rows(figures: Figures) -> list[tuple[str, str, int]]:
    """``(figure, category, count)`` for every figure, in schema order: the CSV and the tables."""
    out: list[tuple[str, str, int]] = []
    for f in fields(figures):
        value = getattr(figures, f.name)
        if f.name in VOCABULARIES:
            out.extend((f.name, key, count) for key, count in value.items())
        elif f.name == "library_versions":
            for use in value:
                out.append(("library_version_searches", f"v{use.version}", use.searches))
                out.append(("library_version_devices", f"v{use.version}", use.devices))
        else:
            out.append((f.name, "total", value))
    return out
