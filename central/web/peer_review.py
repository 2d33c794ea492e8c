"""The reviewers' pages: desks' peer review requests waiting, the images side by side, the outcome form.

The reviewer sees the officer's reasoning, each candidate (rank, subject ref, score band, the officer's
decision) and, side by side, the probe's face thumbnail the desk sealed to central's review key and the
candidate's reference image from central's own copy of the library (``central.peer_review.references``),
with the dates, quality and ages beside them and a zoom that works by keyboard without script. Images
are served only while the request is pending, only to a ``peer_reviewer`` who did not ask for the review,
with ``Cache-Control: no-store``; every view is logged in ``peer_review_log``. Recording a decision
stores it and its log entry and destroys the held probe at once (``ReviewProbes``); the MQTT worker then
sends the outcome to the desk. The outcome records the signed-in account's username as the reviewer, so
nobody can decide in someone else's name; the form is CSRF-protected like every central form.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from central.peer_review.probe_vault import ProbeVault, ProbeVaultError
from central.peer_review.probes import ANSWERED, ReviewProbes
from central.peer_review.references import LibraryFile, Reference, ReferenceLibraries, age_on
from central.peer_review.store import PeerReviewError, PeerReviewRecord, PeerReviewStore
from central.web.auth import signed_in_user
from central.web.guards import extension, found, optional_extension
from central.web.stores import peer_reviews as reviews
from core.peer_review import MAX_TEXT, REVIEW_DECISIONS

logger = logging.getLogger(__name__)

bp = Blueprint("peer_review", __name__, url_prefix="/peer-review")

_MIN_NOTES = 10
DECISION_LABELS = {"viable": "Viable", "not_viable": "Not viable", "needs_peer_review": "Needs peer review"}
ZOOMS = (("1", "Standard (320 pixels)"), ("2", "Larger (480 pixels)"), ("3", "Largest (640 pixels)"))
_NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}


def init_app(app: Flask) -> None:
    """The probe vault (``REVIEW_PROBE_DIR``) and central's library copies (``REVIEW_LIBRARIES``: pairs of
    snapshot and key file) for the reviewers' pages."""
    folder = app.config.get("REVIEW_PROBE_DIR")
    store: PeerReviewStore = app.extensions["central.peer_reviews"]
    app.extensions["central.review_probes"] = ReviewProbes(store, ProbeVault(Path(folder))) if folder else None
    app.extensions["central.review_libraries"] = ReferenceLibraries(
        [LibraryFile(Path(entry[0]), Path(entry[1]), *entry[2:3]) for entry in app.config.get("REVIEW_LIBRARIES")
         or []])
    app.register_blueprint(bp)


def probes() -> ReviewProbes | None:
    return optional_extension("central.review_probes", ReviewProbes)


def libraries() -> ReferenceLibraries:
    return extension("central.review_libraries", ReferenceLibraries)


def _record(request_id: str) -> PeerReviewRecord:
    return found(reviews().get(request_id) if len(request_id) <= 64 else None,
                 f"There is no peer review request {request_id[:64]!r}.")


def _allowed(record: PeerReviewRecord) -> str:
    """The reviewer's username, if they may review this request: nobody reviews a request they made."""
    user = signed_in_user()
    if user.username.strip().lower() == record.requested_by.strip().lower():
        reviews().record(record.request_id, record.device_id, "access_refused", user.username,
                         "the reviewer asked for this review at the desk")
        abort(403, f"You ({user.username}) asked for this review at the desk, so another member of the team must "
                   "review it.")
    return user.username


@bp.get("")
def index() -> str:
    return render_template("peer_review/index.html", pending=reviews().pending(), decided=reviews().decided(20),
                           messages=get_flashed_messages(), labels=DECISION_LABELS)


@dataclass(frozen=True)
class Comparison:
    """One candidate beside the probe, with the facts a reviewer weighs."""

    candidate: dict[str, Any]
    reference: Reference
    facts: list[tuple[str, str]]


def _quality(raw: str | None) -> str:
    if not raw:
        return "Not assessed"
    try:
        report = json.loads(raw)
        words = [str(report["verdict"]).capitalize(), *map(str, report.get("reasons", []))]
    except (ValueError, TypeError, KeyError):
        return "Not readable"
    return "; ".join(w for w in words if w)


def _lapse(earlier: date | None, later: date | None) -> str:
    if earlier is None or later is None:
        return "Not known"
    months = (later.year - earlier.year) * 12 + later.month - earlier.month - (later.day < earlier.day)
    if months < 0:
        return "The reference is newer than the probe"
    years, months = divmod(months, 12)
    return f"{years} years {months} months" if years else f"{months} months"


def _probe_date(record: PeerReviewRecord) -> date | None:
    try:
        return date.fromisoformat(record.probe_taken_on) if record.probe_taken_on else None
    except ValueError:
        return None


def _comparisons(record: PeerReviewRecord) -> list[Comparison]:
    chosen = record.in_question or record.candidates
    probe_on = _probe_date(record)
    out = []
    for c in chosen:
        ref = libraries().find(c["rank"], c.get("source"), c["subject_ref"], c.get("library_id"))
        facts: list[tuple[str, str]] = []
        if ref.record is not None:
            r = ref.record
            age = age_on(r.date_of_birth, r.image_date)
            facts = [("Image date", r.image_date.isoformat() if r.image_date else "Not recorded"),
                     ("Age in this image", f"{age} years" if age is not None else (r.age_band or "Not recorded")),
                     ("Age now, from date of birth",
                      f"{age_on(r.date_of_birth, probe_on or date.today())} years" if r.date_of_birth
                      else "Date of birth not recorded"),
                     ("Time between this image and the probe", _lapse(r.image_date, probe_on)),
                     ("Image quality", _quality(r.quality)),
                     ("Library", c.get("library_id") or "national"),
                     ("Library version", str(ref.library_version))]
        out.append(Comparison(c, ref, facts))
    return out


def _page(record: PeerReviewRecord, status: int = 200, errors: dict[str, str] | None = None,
          values: dict[str, Any] | None = None) -> tuple[str, int]:
    pending = record.status == "pending"
    return render_template("peer_review/review.html", r=record, log=reviews().log(record.request_id),
                           errors=errors or {}, values=values or {}, labels=DECISION_LABELS,
                           messages=get_flashed_messages(), zooms=ZOOMS,
                           comparisons=_comparisons(record) if pending else [],
                           probe_held=pending and record.probe_state == "held"), status


@bp.get("/<request_id>")
def review(request_id: str) -> tuple[str, int]:
    record = _record(request_id)
    _allowed(record)
    return _page(record)


def _jpeg(data: bytes) -> Response:
    return Response(data, mimetype="image/jpeg", headers=_NO_STORE)


@bp.get("/<request_id>/probe.jpg")
def probe_image(request_id: str) -> Response:
    record = _record(request_id)
    reviewer = _allowed(record)
    held = probes()
    if record.status != "pending" or record.probe_state != "held" or held is None:
        abort(404, "No probe image is held for this request: none was sent, or it was destroyed when the review "
                   "was answered or the case closed.")
    try:
        image = held.vault.get(record.request_id)
    except ProbeVaultError as e:
        logger.error("%s", e)
        abort(404, "The probe image held for this request cannot be read. Ask the desk to send the request again.")
    if image is None:
        abort(404, "No probe image is held for this request.")
    reviews().record(record.request_id, record.device_id, "probe_viewed", reviewer, "")
    return _jpeg(image)


@bp.get("/<request_id>/reference/<int:rank>.jpg")
def reference_image(request_id: str, rank: int) -> Response:
    record = _record(request_id)
    reviewer = _allowed(record)
    candidate = next((c for c in record.candidates if c["rank"] == rank), None)
    if record.status != "pending" or candidate is None:
        abort(404, "This reference image is not shown for this request.")
    ref = libraries().find(rank, candidate.get("source"), candidate["subject_ref"], candidate.get("library_id"))
    if ref.jpeg is None:
        abort(404, ref.missing or "Reference not found.")
    reviews().record(record.request_id, record.device_id, "reference_viewed", reviewer,
                     f"candidate {rank}, {candidate['subject_ref']}, image {candidate.get('source')}")
    return _jpeg(ref.jpeg)


@bp.post("/<request_id>")
def decide(request_id: str) -> Response | tuple[str, int]:
    record = _record(request_id)
    reviewer = _allowed(record)
    if record.status != "pending":
        return _page(record, 409, errors={"form": f"This request was already decided by {record.reviewer}."})
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
    destroyed = ""
    held = probes()
    if held is not None and record.probe_state == "held":
        try:
            held.destroy(request_id, ANSWERED, reviewer)
            destroyed = " The probe image held for this review was destroyed."
        except (ProbeVaultError, OSError, PeerReviewError):  # the ingest's sweep destroys it within seconds
            logger.exception("the probe of request %s could not be destroyed at once", request_id)
    flash(f"Outcome recorded for case {record.case_id} on {record.device_id}: "
          f"{outcome.outcome.replace('_', ' ')}. It is sent to the desk now, or when it next connects.{destroyed}")
    return redirect(url_for("peer_review.index"))
