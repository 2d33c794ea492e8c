"""One custody case, step by step: approval, probe capture, search, candidates, adjudication, Match Report.

Each route asks ``CaseService`` to take the step; refusals (``PolicyRefusal``)
and out-of-order steps (``CaseError``) come back as the case page with the
message in an alert, so the officer sees why and what to do next. Who may open
a case at all is the service's decision (``appliance.services.access``): pages
and images are read only through the ``CaseFile`` it hands back, and a case the
user may not open is a 404 exactly like a number that names no case.

The probe is named by its version (``ProbeRow.version``) in every URL and form
that shows or uses it: a retake or a new face choice changes every image URL on
the page that htmx swaps in (no browser can show a cached older face under the
new name), an image asked for under an older name is not served, and a search
or face choice sent from a page showing an older photo is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, session, url_for

from appliance.services.access import Access
from appliance.services.accounts import AccountService, LoginRefusedError, User
from appliance.services.cases import (
    RETENTION_NONE,
    RETENTION_WITHDRAWN,
    STATE_LABELS,
    Case,
    CaseError,
    CaseFile,
    CaseService,
    ComparisonInvalid,
    ConfirmationNeeded,
    DecisionInvalid,
    MatchReportInvalid,
    State,
    SubmissionInvalid,
)
from appliance.services.match_report import CONFIRM_FIELD, PREFILLED
from appliance.services.morphology import as_morphology, form_values
from appliance.services.policy import (
    AGE_BAND_LABELS,
    DECISION_LABELS,
    MATCH_REPORT_FIELDS,
    PRE_SEARCH_CHECKS,
    REASON_LABELS,
    Decision,
    PolicyRefusal,
    required_approval,
    validate_submission,
)
from appliance.services.retention import day
from appliance.storage.cases import ProbeRow
from appliance.web import case_status, submission_form
from appliance.web.auth import current_user, login_required
from appliance.web.context import current_desk
from core.morphology import COMPONENTS, FINDINGS, MAX_NOTE
from models.errors import ImageRejectedError, NoFaceError
from websession.interface import not_activity

bp = Blueprint("cases", __name__, url_prefix="/cases")


def cases() -> CaseService:
    return current_desk().cases


def accounts() -> AccountService:
    return current_desk().accounts


def retention_notice(case: Case) -> str | None:
    """When a retained viable match's images will be destroyed, or that no retention period is set."""
    return current_desk().retention.notice(case)


def _page(case_id: str, status: int = 200, error: str | None = None, errors: dict[str, str] | None = None,
          values: dict[str, Any] | None = None, announce: str | None = None) -> tuple[str, int]:
    file = cases().open_case(case_id, current_user(), "case page")
    case = file.case
    views = file.candidate_views() if case.state in (State.AWAITING_PEER_REVIEW, State.AWAITING_MATCH_REPORT,
                                                     State.CLOSED_VIABLE) else []
    report_context = _report_context(file, views, values or {}) if case.state is State.AWAITING_MATCH_REPORT else {}
    return render_template(
        "case.html", **report_context, case=case, state_label=STATE_LABELS[case.state],
        req=required_approval(case.submission), is_owner=file.is_owner, is_adviser=file.is_adviser,
        images=file.images, probe=file.probe(), crops=file.crop_count(), review=file.review(), views=views,
        report=file.match_report(), summary=file.record, error=error, errors=errors or {}, values=values or {},
        reasons=REASON_LABELS, checks=PRE_SEARCH_CHECKS, age_bands=AGE_BAND_LABELS,
        decisions=DECISION_LABELS, report_fields=MATCH_REPORT_FIELDS, State=State, Decision=Decision,
        retention_none=RETENTION_NONE, retention_withdrawn=RETENTION_WITHDRAWN,
        retention_notice=retention_notice(case),
        approval_refusal=file.approval_refusal if case.state is State.AWAITING_APPROVAL else None,
        may_decide=case.state is State.AWAITING_APPROVAL and file.may_decide,
        polls=case_status.polls(case, file.is_owner), status_token=case_status.status_token(case),
        poll_seconds=case_status.POLL_SECONDS, announce=announce,
        candidate_ranks=file.candidate_ranks() if case.state is State.CANDIDATES_SHOWN else [],
        compared=set(file.comparisons()) if case.state is State.CANDIDATES_SHOWN else set(),
        morphology=as_morphology((file.match_report() or {}).get("morphology")),
        unsearchable=(cases().unsearchable(case_id)
                      if file.is_owner and case.state in (State.APPROVED, State.PROBE_CAPTURED) else []),
    ), status


def _features_form() -> dict[str, str]:
    """The feature-comparison answers as posted (``feature-<component>`` and ``feature-<component>-note``)."""
    return {k: v for k, v in request.form.items() if k.startswith("feature-")}


def _report_context(file: CaseFile, views: list[Any], values: dict[str, Any]) -> dict[str, Any]:
    """The Match Report form for one viable candidate: chosen by ``?rank=`` (or the posted one), pre-filled
    with what the desk measured unless the officer's own answers are being shown again."""
    viable = [v for v in views if v.decision == Decision.VIABLE]
    ranks = [v.rank for v in viable]
    try:
        rank = int(values.get("rank") or request.args.get("rank") or (ranks[0] if ranks else 0))
    except ValueError:
        rank = 0
    rank = rank if rank in ranks else (ranks[0] if ranks else 0)
    measured = file.report_prefill(rank) if rank else {}
    if values:
        answers, features = values, values.get("features", {})
    else:
        answers, features = measured, form_values(file.comparisons().get(rank))
    return {"viable": viable, "report_rank": rank, "chosen": next((v for v in viable if v.rank == rank), None),
            "answers": answers, "measured": measured, "prefilled": PREFILLED, "features": features,
            "components": COMPONENTS, "findings": FINDINGS, "max_note": MAX_NOTE, "confirm_field": CONFIRM_FIELD}


def _confirmed() -> bool:
    """The person said yes on the confirmation page (``confirm.html``) to a step that destroys data."""
    return request.form.get("confirm") == "yes"


@bp.app_errorhandler(ConfirmationNeeded)
def confirm_destruction(e: ConfirmationNeeded):  # type: ignore[no-untyped-def]
    """Nothing was done: ask again on a page that says what would be destroyed, re-sending the same answers.

    Generic over the step: the answers are posted back as they came (whatever the form's field names), with
    ``confirm=yes``, to the same address; the service decides again from them. Registered for the whole app,
    so a step on any page that the service finds destructive is asked about the same way.
    """
    carried = [(k, v) for k, vs in request.form.lists() for v in vs if k not in ("csrf_token", "confirm")]
    case_id = (request.view_args or {}).get("case_id", "")
    body = render_template("confirm.html" if not request.headers.get("HX-Request") else "_confirm.html",
                           question=e.title, destroys=e.destroys, button=e.button, consequence=e.consequence,
                           carried=carried, action=request.path,
                           back=url_for("cases.show", case_id=case_id))
    headers = {"HX-Retarget": "#main", "HX-Reswap": "innerHTML"} if request.headers.get("HX-Request") else {}
    return body, 200, headers


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
    # A case this user may not open is not there, and one they may not decide on is refused as such:
    # either way no password is checked against it.
    try:
        cases().check_may_decide(case_id, user, "approval", approving=True)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    try:
        accounts().authenticate(user.username, request.form.get("password", ""))
    except LoginRefusedError as e:
        return _page(case_id, 403, error=f"Approval not recorded. {e}", errors={"password": str(e)})
    try:
        cases().approve(case_id, user)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


def _approver_decides(case_id: str, field: str,  # type: ignore[no-untyped-def]
                      decide: Callable[[str, User, str], object]):
    """Refuse or return: the approver's words in ``field`` go to the service, which checks rank and wording."""
    words = request.form.get(field, "")
    try:
        decide(case_id, current_user(), words)
    except DecisionInvalid as e:
        return _page(case_id, 422, errors=e.errors, values={field: words})
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/refuse")
@login_required
def refuse(case_id: str):  # type: ignore[no-untyped-def]
    """The approver refuses the search, with the reason the officer will read: the case closes."""
    return _approver_decides(case_id, "refusal_reason", cases().refuse)


@bp.post("/<case_id>/return")
@login_required
def return_for_changes(case_id: str):  # type: ignore[no-untyped-def]
    """The approver sends the request back to its officer, saying what to change."""
    return _approver_decides(case_id, "return_note", cases().return_for_changes)


def _edit_page(file: CaseFile, status: int = 200, errors: dict[str, str] | None = None,
               values: dict[str, Any] | None = None) -> tuple[str, int]:
    """The submission form again, for a returned request: its answers, and what the approver asked to change."""
    case = file.case
    context = submission_form.context(errors, values or submission_form.values_from_case(case),
                                      cases().library_choices())
    return render_template("submit.html", **context, returned=case,
                           form_action=url_for("cases.resubmit", case_id=case.case_id)), status


@bp.get("/<case_id>/edit")
@login_required
def edit(case_id: str):  # type: ignore[no-untyped-def]
    try:
        file = cases().editable(case_id, current_user())
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return _edit_page(file)


@bp.post("/<case_id>/resubmit")
@login_required
def resubmit(case_id: str):  # type: ignore[no-untyped-def]
    sub, unanswered = submission_form.read(request.form)
    try:
        file = cases().editable(case_id, current_user())
        if unanswered:
            raise SubmissionInvalid({**validate_submission(sub), **unanswered})
        cases().resubmit(case_id, current_user(), sub, submission_form.chosen_libraries(request.form))
    except SubmissionInvalid as e:
        return _edit_page(file, 422, e.errors, submission_form.values_from_form(sub, request.form))
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.get("/<case_id>/status")
@login_required
def status(case_id: str):  # type: ignore[no-untyped-def]
    """The officer's page asks whether the case has moved on: 204 while not, else the page to swap in.

    ``seen`` is the status the page was drawn at (``case_status.status_token``). Without it this is
    simply the case page, so the address works in a browser too. A poll is not the officer using the
    desk: it leaves the session's idle clock alone, so a page left open still signs out on time.
    """
    not_activity(session)
    seen = request.args.get("seen")
    case = cases().open_case(case_id, current_user(), "case status").case
    if seen is not None and seen == case_status.status_token(case):
        return Response(status=204, headers={"Cache-Control": "no-store"})
    return _page(case_id, announce=case_status.announcement(case) if seen is not None else None)


def _probe_partial(case_id: str, status: int = 200, error: str | None = None):  # type: ignore[no-untyped-def]
    file = cases().open_case(case_id, current_user(), "photo")
    body = render_template("_probe.html", case=file.case, probe=file.probe(), crops=file.crop_count(),
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
        cases().choose_face(case_id, current_user(), index, request.form.get("probe_version") or None)
    except PolicyRefusal as e:
        return _refusal(case_id, e)
    except CaseError as e:
        return _probe_partial(case_id, 409, str(e))
    return _probe_partial(case_id)


@bp.post("/<case_id>/face/again")
@login_required
def choose_face_again(case_id: str):  # type: ignore[no-untyped-def]
    """Show the group photo's faces again, so another one can be chosen (the chosen one is no longer searched)."""
    try:
        cases().choose_face_again(case_id, current_user())
    except PolicyRefusal as e:
        return _refusal(case_id, e)
    except CaseError as e:
        return _probe_partial(case_id, 409, str(e))
    return _probe_partial(case_id)


@bp.post("/<case_id>/search")
@login_required
def search(case_id: str):  # type: ignore[no-untyped-def]
    try:
        cases().search(case_id, current_user(), request.form.get("probe_version") or None)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.candidates", case_id=case_id))


@bp.post("/<case_id>/libraries")
@login_required
def narrow_libraries(case_id: str):  # type: ignore[no-untyped-def]
    """Search fewer of the libraries chosen on the request (after one can no longer be searched)."""
    try:
        cases().narrow_libraries(case_id, current_user(), submission_form.chosen_libraries(request.form))
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.get("/<case_id>/candidates")
@login_required
def candidates(case_id: str):  # type: ignore[no-untyped-def]
    file = cases().view_candidates(case_id, current_user())
    if file.case.state is not State.CANDIDATES_SHOWN:
        return redirect(url_for("cases.show", case_id=case_id))
    return _candidates_page(file)


def _candidates_page(file: CaseFile, status: int = 200, error: str | None = None,
                     values: dict[str, Any] | None = None) -> tuple[str, int]:
    people = file.people()
    return render_template("candidates.html", case=file.case, people=[p for p in people if not p.below_threshold],
                           below=[p for p in people if p.below_threshold], probe=file.probe(),
                           images_count=sum(len(p.images) for p in people), age_bands=AGE_BAND_LABELS,
                           decisions=DECISION_LABELS, is_owner=file.is_owner, error=error,
                           values=values or {}, scale=file.search_scale()), status


def _posted_decisions() -> dict[int, str]:
    """Every ``decision-<rank>`` field sent: the page sends one per person, under their best image's rank;
    anything else sent is passed on too, so the service can refuse a contradiction rather than miss it."""
    posted: dict[int, str] = {}
    for name, value in request.form.items(multi=True):
        prefix, _, rank = name.partition("-")
        if prefix == "decision" and rank.isdigit():
            if int(rank) in posted and posted[int(rank)] != value:
                value = f"{posted[int(rank)]},{value}"  # one rank sent twice: never a valid decision
            posted[int(rank)] = value
    return posted


@bp.post("/<case_id>/adjudicate")
@login_required
def adjudicate(case_id: str):  # type: ignore[no-untyped-def]
    file = cases().open_case(case_id, current_user(), "adjudication")
    decisions = _posted_decisions()
    doubts = request.form.get("doubts", "")
    try:
        cases().adjudicate(case_id, current_user(), decisions, doubts, confirmed=_confirmed())
    except PolicyRefusal as e:
        return _refusal(case_id, e)
    except CaseError as e:
        return _candidates_page(file, 422, error=str(e), values={"decisions": decisions, "doubts": doubts})
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/match-report")
@login_required
def match_report(case_id: str):  # type: ignore[no-untyped-def]
    fields = {name: request.form.get(name, "") for name in MATCH_REPORT_FIELDS}
    features = _features_form()
    posted = {**fields, "rank": request.form.get("rank", ""), "features": features,
              CONFIRM_FIELD: request.form.get(CONFIRM_FIELD, "")}
    try:
        rank = int(request.form.get("rank", "0"))
        cases().submit_match_report(case_id, current_user(), rank, fields, features,
                                    checked_prefill=request.form.get(CONFIRM_FIELD) == "yes")
    except MatchReportInvalid as e:
        return _page(case_id, 422, errors=e.errors, values=posted)
    except ValueError:
        return _page(case_id, 422, error="Choose the viable candidate.", values=posted)
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/peer-review")
@login_required
def peer_review(case_id: str):  # type: ignore[no-untyped-def]
    review = cases().open_case(case_id, current_user(), "peer review").review()
    ranks = review.ranks if review else []
    decisions = {r: request.form.get(f"review-{r}", "") for r in ranks}
    try:
        cases().record_local_peer_review(case_id, current_user(), decisions, request.form.get("notes", ""),
                                         confirmed=_confirmed())
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.post("/<case_id>/withdraw")
@login_required
def withdraw(case_id: str):  # type: ignore[no-untyped-def]
    try:
        cases().withdraw(case_id, current_user(), confirmed=_confirmed())
    except (PolicyRefusal, CaseError) as e:
        return _refusal(case_id, e)
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/<case_id>/candidates/<int:rank>/features", methods=["GET", "POST"])
@login_required
def features(case_id: str, rank: int):  # type: ignore[no-untyped-def]
    """Compare the probe with one candidate feature by feature, before judging (sent with a peer review)."""
    file = cases().view_features(case_id, current_user(), rank)
    view = next((v for v in file.candidate_views() if v.rank == rank), None)
    if view is None:
        abort(404, "That candidate is not part of this case.")
    status, errors, values = 200, {}, form_values(file.comparisons().get(rank))
    if request.method == "POST":
        values = _features_form()
        try:
            cases().record_comparison(case_id, current_user(), rank, values)
        except ComparisonInvalid as e:
            status, errors = 422, e.errors
        except (PolicyRefusal, CaseError) as e:
            return _refusal(case_id, e)
        else:
            return redirect(url_for("cases.candidates", case_id=case_id) + f"#candidate-{rank}")
    return render_template("features.html", case=file.case, v=view, features=values, errors=errors, error=None,
                           components=COMPONENTS, findings=FINDINGS, max_note=MAX_NOTE,
                           editable=file.is_owner and file.case.state is State.CANDIDATES_SHOWN,
                           recorded=as_morphology(file.comparisons().get(rank)),
                           probe=file.probe(), age_bands=AGE_BAND_LABELS), status


@bp.get("/<case_id>/summary")
@login_required
def summary(case_id: str):  # type: ignore[no-untyped-def]
    """The printable case summary (the export): every page of it says 'intelligence lead only'."""
    file = cases().open_case(case_id, current_user(), "summary", Access.RECORD)
    case = file.case
    views = file.candidate_views() if case.state in (State.AWAITING_MATCH_REPORT, State.CLOSED_VIABLE) else []
    return render_template("summary.html", case=case, state_label=STATE_LABELS[case.state],
                           req=required_approval(case.submission), review=file.review(),
                           report=file.match_report(), views=views, reasons=REASON_LABELS,
                           checks=PRE_SEARCH_CHECKS, age_bands=AGE_BAND_LABELS, decisions=DECISION_LABELS,
                           report_fields=MATCH_REPORT_FIELDS, State=State, retention_withdrawn=RETENTION_WITHDRAWN,
                           morphology=as_morphology((file.match_report() or {}).get("morphology")),
                           comparisons={r: as_morphology(m) for r, m in file.comparisons().items()})


def _jpeg(data: bytes | None) -> Response:
    if data is None:
        abort(404, "That image is not held on this device.")
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response


def _images(case_id: str, action: str) -> CaseFile:
    """The case, for someone who may see its images, while they are still held on this device."""
    file = cases().open_case(case_id, current_user(), action, Access.IMAGES)
    if file.case.biometrics_destroyed_at is not None:
        abort(404, "The images of this case were destroyed at the end of the retention period, on "
                   f"{day(file.case.biometrics_destroyed_at)}.")
    return file


@bp.get("/<case_id>/candidates/<int:rank>/compare")
@login_required
def compare(case_id: str, rank: int):  # type: ignore[no-untyped-def]
    """The probe and one reference side by side, with the facts that bear on comparing them."""
    try:
        file = cases().view_comparison(case_id, current_user(), rank)
    except CaseError as e:
        abort(404, str(e))
    probe = file.probe()
    if probe is None:
        abort(404, "The images of this case are no longer held on this device.")
    people = file.people()
    person = next((p for p in people if rank in p.ranks), None)
    if person is None:
        abort(404, "That candidate is not part of this case.")
    view = next(v for v in person.images if v.rank == rank)
    taken = day(probe.captured_at) if probe.captured_at else None
    return render_template("compare.html", case=file.case, probe=probe, probe_taken=taken, person=person, v=view,
                           people=people, age_bands=AGE_BAND_LABELS, State=State)


def _current_probe(file: CaseFile) -> ProbeRow | None:
    """The probe held now; when the URL names an older one (``?v=``), nothing: that face is no longer searched."""
    probe = file.probe()
    wanted = request.args.get("v")
    if probe is not None and wanted and wanted != probe.version:
        abort(404, "That photo has been replaced. Reload the page to see the photo held now.")
    return probe


@bp.get("/<case_id>/probe.jpg")
@login_required
def probe_image(case_id: str) -> Response:
    probe = _current_probe(_images(case_id, "probe image"))
    return _jpeg(probe.thumbnail if probe else None)


@bp.get("/<case_id>/faces/<int:index>.jpg")
@login_required
def face_image(case_id: str, index: int) -> Response:
    file = _images(case_id, "face image")
    _current_probe(file)
    return _jpeg(file.crop(index))


@bp.get("/<case_id>/candidates/<int:rank>.jpg")
@login_required
def reference_image(case_id: str, rank: int) -> Response:
    file = _images(case_id, "reference image")
    try:
        jpeg = file.reference_thumbnail(rank)
    except CaseError as e:
        abort(404, str(e))
    return _jpeg(jpeg)
