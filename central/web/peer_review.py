"""The reviewers' pages: desks' peer review requests waiting, and the form that records the outcome.

The reviewer sees the officer's reasoning and each candidate by reference
(subject ref, rank, score band, the officer's decision) and consults the
reference library at central by subject ref; no probe or candidate image is
sent to central (docs/desk-workflow.md, "Peer review by central"). Recording a
decision stores it and its log entry; the MQTT worker then sends the outcome
to the desk. Only a signed-in ``peer_reviewer`` reaches these pages (the guard
is set in ``create_app``), and the outcome records that account's username as
the reviewer, so nobody can decide in someone else's name; the form is
CSRF-protected like every central form.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from central.peer_review.store import PeerReviewError, PeerReviewRecord, PeerReviewStore
from central.web.auth import signed_in_user
from core.peer_review import MAX_TEXT, REVIEW_DECISIONS

bp = Blueprint("peer_review", __name__, url_prefix="/peer-review")

_MIN_NOTES = 10
DECISION_LABELS = {"viable": "Viable", "not_viable": "Not viable", "needs_peer_review": "Needs peer review"}


def reviews() -> PeerReviewStore:
    store: PeerReviewStore = current_app.extensions["central.peer_reviews"]
    return store


def _record(request_id: str) -> PeerReviewRecord:
    record = reviews().get(request_id) if len(request_id) <= 64 else None
    if record is None:
        abort(404, f"There is no peer review request {request_id[:64]!r}.")
    return record


@bp.get("")
def index() -> str:
    return render_template("peer_review/index.html", pending=reviews().pending(), decided=reviews().decided(20),
                           messages=get_flashed_messages(), labels=DECISION_LABELS)


def _page(record: PeerReviewRecord, status: int = 200, errors: dict[str, str] | None = None,
          values: dict[str, Any] | None = None) -> tuple[str, int]:
    return render_template("peer_review/review.html", r=record, log=reviews().log(record.request_id),
                           errors=errors or {}, values=values or {}, labels=DECISION_LABELS,
                           messages=get_flashed_messages()), status


@bp.get("/<request_id>")
def review(request_id: str) -> tuple[str, int]:
    return _page(_record(request_id))


@bp.post("/<request_id>")
def decide(request_id: str) -> Response | tuple[str, int]:
    record = _record(request_id)
    if record.status != "pending":
        return _page(record, 409, errors={"form": f"This request was already decided by {record.reviewer}."})
    reviewer = signed_in_user().username
    notes = request.form.get("notes", "").strip()
    decisions = {rank: request.form.get(f"decision-{rank}", "") for rank in record.ranks}
    errors: dict[str, str] = {}
    for rank, decision in decisions.items():
        if decision not in REVIEW_DECISIONS:
            errors[f"decision-{rank}"] = f"Decide candidate {rank}: viable or not viable."
    if len(notes) < _MIN_NOTES or len(notes) > MAX_TEXT:
        errors["notes"] = f"Write the reasons for the outcome in a sentence or two (at most {MAX_TEXT} characters)."
    if errors:
        return _page(record, 422, errors=errors, values={"notes": notes, **decisions})
    try:
        outcome = reviews().record_outcome(request_id, reviewer, decisions, notes)
    except PeerReviewError as e:
        return _page(record, 409, errors={"form": str(e)}, values={"notes": notes})
    flash(f"Outcome recorded for case {record.case_id} on {record.device_id}: "
          f"{outcome.outcome.replace('_', ' ')}. It is sent to the desk now, or when it next connects.")
    return redirect(url_for("peer_review.index"))
