"""One custody case, step by step: approval, probe capture, search, candidates, adjudication, Match Report.

Each route asks ``CaseService`` to take the step; refusals (``PolicyRefusal``)
and out-of-order steps (``CaseError``) come back as the case page with the
message in an alert, so the officer sees why and what to do next.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from appliance.services.accounts import AccountService, LoginRefusedError
from appliance.services.cases import (
    RETENTION_NONE,
    STATE_LABELS,
    Case,
    CaseError,
    CaseService,
    MatchReportInvalid,
    State,
)
from appliance.services.policy import (
    AGE_BAND_LABELS,
    DECISION_LABELS,
    MATCH_REPORT_FIELDS,
    PRE_SEARCH_CHECKS,
    REASON_LABELS,
    Decision,
    PolicyRefusal,
    Role,
    can_approve,
    can_see_images,
    check_can_view_case,
    required_approval,
)
from appliance.services.retention import day
from appliance.web.auth import current_user, login_required
from appliance.web.context import current_desk
from models.errors import ImageRejectedError, NoFaceError

bp = Blueprint("cases", __name__, url_prefix="/cases")


def cases() -> CaseService:
    return current_desk().cases


def accounts() -> AccountService:
    return current_desk().accounts


def retention_notice(case: Case) -> str | None:
    """When a retained viable match's images will be destroyed, or that no retention period is set."""
    return current_desk().retention.notice(case)


def _page(case_id: str, status: int = 200, error: str | None = None, errors: dict[str, str] | None = None,
          values: dict[str, Any] | None = None) -> tuple[str, int]:
    user = current_user()
    check_can_view_case(user.role)
    case = cases().get(case_id)
    images = can_see_images(user.role)
    probe = cases().probe(case_id) if images else None
    review = cases().peer_review(case_id)
    views = cases().candidate_views(case_id) if case.state in (State.AWAITING_PEER_REVIEW,
                                                                State.AWAITING_MATCH_REPORT,
                                                                State.CLOSED_VIABLE) else []
    return render_template(
        "case.html", case=case, state_label=STATE_LABELS[case.state], req=required_approval(case.submission),
        is_owner=case.submitted_by == user.username, can_approve=can_approve(user.role),
        is_adviser=user.role is Role.TECHNICAL_ADVISER, images=images, probe=probe,
        crops=cases().store.crop_count(case_id) if images else 0, review=review, views=views,
        report=cases().match_report(case_id), error=error, errors=errors or {}, values=values or {},
        reasons=REASON_LABELS, checks=PRE_SEARCH_CHECKS, age_bands=AGE_BAND_LABELS,
        decisions=DECISION_LABELS, report_fields=MATCH_REPORT_FIELDS, State=State, Decision=Decision,
        retention_none=RETENTION_NONE, retention_notice=retention_notice(case),
    ), status


def _refusal(case_id: str, e: Exception) -> tuple[str, int]:
    status = 403 if isinstance(e, PolicyRefusal) else 409
    if request.headers.get("HX-Request"):
        return render_template("_message.html", level="error", message=str(e)), status
    return _page(case_id, status, error=str(e))


@bp.get("/<case_id>")
@login_required
def show(case_id: str):  # type: ignore[no-untyped-def]
    return _page(case_id)


@bp.post("/<case_id>/advice")
@login_required
def advice(case_id: str):  # type: ignore[no-untyped-def]
    try:
        cases().record_advice(case_id, current_user(), request.form.get("advice", ""))
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/approve")
@login_required
def approve(case_id: str):  # type: ignore[no-untyped-def]
    """The approver confirms with their own password on this device, then the policy decides."""
    user = current_user()
    try:
        accounts().authenticate(user.username, request.form.get("password", ""))
    except LoginRefusedError as e:
        return _page(case_id, 403, error=f"Approval not recorded. {e}", errors={"password": str(e)})
    try:
        cases().approve(case_id, user)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


def _probe_partial(case_id: str, status: int = 200, error: str | None = None):  # type: ignore[no-untyped-def]
    probe = cases().probe(case_id)
    case = cases().get(case_id)
    body = render_template("_probe.html", case=case, probe=probe, crops=cases().store.crop_count(case_id),
                           error=error, State=State)
    if request.headers.get("HX-Request"):
        return body, status
    return _page(case_id, status, error=error)


@bp.post("/<case_id>/probe")
@login_required
def capture(case_id: str):  # type: ignore[no-untyped-def]
    upload = request.files.get("probe")
    if upload is None or not upload.filename:
        return _probe_partial(case_id, 400, "Choose a photo of the detainee, or use the camera.")
    try:
        cases().capture(case_id, current_user(), upload.read())
    except (NoFaceError, ImageRejectedError) as e:
        return _probe_partial(case_id, getattr(e, "status", 422), str(e))
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return _probe_partial(case_id)


@bp.post("/<case_id>/face")
@login_required
def choose_face(case_id: str):  # type: ignore[no-untyped-def]
    try:
        index = int(request.form.get("face_index", ""))
    except ValueError:
        return _probe_partial(case_id, 400, "Choose one of the faces shown.")
    try:
        cases().choose_face(case_id, current_user(), index)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return _probe_partial(case_id)


@bp.post("/<case_id>/search")
@login_required
def search(case_id: str):  # type: ignore[no-untyped-def]
    try:
        cases().search(case_id, current_user())
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.candidates", case_id=case_id))


@bp.get("/<case_id>/candidates")
@login_required
def candidates(case_id: str):  # type: ignore[no-untyped-def]
    user = current_user()
    check_can_view_case(user.role)
    case = cases().get(case_id)
    if not can_see_images(user.role):
        raise PolicyRefusal("Candidates are shown only to the people taking part in the search.")
    if case.state is not State.CANDIDATES_SHOWN:
        return redirect(url_for("cases.show", case_id=case_id))
    cases().candidates_viewed(case_id, user)
    return _candidates_page(case_id)


def _candidates_page(case_id: str, status: int = 200, error: str | None = None,
                     values: dict[str, Any] | None = None) -> tuple[str, int]:
    case = cases().get(case_id)
    return render_template("candidates.html", case=case, views=cases().candidate_views(case_id),
                           probe=cases().probe(case_id), age_bands=AGE_BAND_LABELS, decisions=DECISION_LABELS,
                           is_owner=case.submitted_by == current_user().username, error=error,
                           values=values or {}), status


@bp.post("/<case_id>/adjudicate")
@login_required
def adjudicate(case_id: str):  # type: ignore[no-untyped-def]
    ranks = [c.rank for c in cases().candidates(case_id)]
    decisions = {r: request.form.get(f"decision-{r}", "") for r in ranks}
    doubts = request.form.get("doubts", "")
    try:
        cases().adjudicate(case_id, current_user(), decisions, doubts)
    except PolicyRefusal as e:
        return _refusal(case_id, e)
    except CaseError as e:
        return _candidates_page(case_id, 422, error=str(e), values={"decisions": decisions, "doubts": doubts})
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/match-report")
@login_required
def match_report(case_id: str):  # type: ignore[no-untyped-def]
    fields = {name: request.form.get(name, "") for name in MATCH_REPORT_FIELDS}
    try:
        rank = int(request.form.get("rank", "0"))
        cases().submit_match_report(case_id, current_user(), rank, fields)
    except MatchReportInvalid as e:
        return _page(case_id, 422, error=str(e), errors=e.errors, values=fields)
    except ValueError:
        return _page(case_id, 422, error="Choose the viable candidate.", values=fields)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/peer-review")
@login_required
def peer_review(case_id: str):  # type: ignore[no-untyped-def]
    review = cases().peer_review(case_id)
    ranks = review.ranks if review else []
    decisions = {r: request.form.get(f"review-{r}", "") for r in ranks}
    try:
        cases().record_local_peer_review(case_id, current_user(), decisions, request.form.get("notes", ""))
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/withdraw")
@login_required
def withdraw(case_id: str):  # type: ignore[no-untyped-def]
    try:
        cases().withdraw(case_id, current_user())
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.get("/<case_id>/summary")
@login_required
def summary(case_id: str):  # type: ignore[no-untyped-def]
    """The printable case summary (the export): every page of it says 'intelligence lead only'."""
    user = current_user()
    check_can_view_case(user.role)
    case = cases().get(case_id)
    views = cases().candidate_views(case_id) if case.state in (State.AWAITING_MATCH_REPORT,
                                                                State.CLOSED_VIABLE) else []
    return render_template("summary.html", case=case, state_label=STATE_LABELS[case.state],
                           req=required_approval(case.submission), review=cases().peer_review(case_id),
                           report=cases().match_report(case_id), views=views, reasons=REASON_LABELS,
                           checks=PRE_SEARCH_CHECKS, age_bands=AGE_BAND_LABELS, decisions=DECISION_LABELS,
                           report_fields=MATCH_REPORT_FIELDS)


def _jpeg(data: bytes | None) -> Response:
    if data is None:
        abort(404, "That image is not held on this device.")
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response


def _image_access(case_id: str) -> None:
    user = current_user()
    if not can_see_images(user.role):
        raise PolicyRefusal("Images are shown only to the people taking part in the search.")
    case = cases().get(case_id)
    if case.biometrics_destroyed_at is not None:
        abort(404, "The images of this case were destroyed at the end of the retention period, on "
                   f"{day(case.biometrics_destroyed_at)}.")


@bp.get("/<case_id>/probe.jpg")
@login_required
def probe_image(case_id: str) -> Response:
    _image_access(case_id)
    probe = cases().probe(case_id)
    return _jpeg(probe.thumbnail if probe else None)


@bp.get("/<case_id>/faces/<int:index>.jpg")
@login_required
def face_image(case_id: str, index: int) -> Response:
    _image_access(case_id)
    return _jpeg(cases().store.crop(case_id, index))


@bp.get("/<case_id>/candidates/<int:rank>.jpg")
@login_required
def reference_image(case_id: str, rank: int) -> Response:
    _image_access(case_id)
    try:
        _, jpeg = cases().reference(case_id, rank)
    except CaseError as e:
        abort(404, str(e))
    return _jpeg(jpeg)
