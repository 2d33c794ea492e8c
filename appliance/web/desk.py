"""The desk's home page (what is waiting for whom) and the submission form that starts every case."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.services.cases import STATE_LABELS, CaseService, State, SubmissionInvalid
from appliance.services.policy import (
    Role,
    can_approve,
    can_run_desk,
    check_can_submit,
    validate_submission,
)
from appliance.services.search_authority import NotAuthorisedUser, Standing
from appliance.web import submission_form
from appliance.web.auth import current_user, login_required
from appliance.web.context import current_desk

bp = Blueprint("desk", __name__)


def cases() -> CaseService:
    return current_desk().cases


@bp.get("/")
@login_required
def home():  # type: ignore[no-untyped-def]
    user = current_user()
    everything = cases().visible(user)  # only what this user may open (appliance.services.access)
    sections: list[tuple[str, list]] = []  # (heading, cases)
    if can_approve(user.role):
        sections.append(("Waiting for your approval", [c for c in everything if c.state is State.AWAITING_APPROVAL
                                                       and c.submitted_by != user.username]))
    if user.role is Role.TECHNICAL_ADVISER:
        sections.append(("Waiting for technical advice", [c for c in everything if c.state is State.AWAITING_APPROVAL
                                                          and c.advice_required and not c.advice_by]))
        sections.append(("Waiting for peer review", [c for c in everything
                                                     if c.state is State.AWAITING_PEER_REVIEW]))
    if can_run_desk(user.role):
        sections.append(("Your cases", [c for c in everything if c.submitted_by == user.username]))
    if user.role is Role.AUDITOR:
        sections.append(("Closed cases on this device (read only)", everything))
    accounts = current_desk().accounts.list() if user.role is Role.DEVICE_ADMIN else None
    authority = cases().authority.assess(user)  # the officer's authorisation to search, shown on their home page
    return render_template("home.html", sections=sections, state_labels=STATE_LABELS, accounts=accounts,
                           can_submit=can_run_desk(user.role) and authority.may_search, authority=authority,
                           Standing=Standing)


_form_context = submission_form.context


@bp.get("/cases/new")
@login_required
def new_case():  # type: ignore[no-untyped-def]
    check_can_submit(current_user().role)
    refusal = cases().authority.assess(current_user()).refusal  # said before the form is filled in, not after
    if refusal:
        raise NotAuthorisedUser(refusal)
    return render_template("submit.html", **_form_context(libraries=cases().library_choices()))


@bp.post("/cases")
@login_required
def submit_case():  # type: ignore[no-untyped-def]
    sub, unanswered = submission_form.read(request.form)
    try:
        if unanswered:
            check_can_submit(current_user().role)
            cases().authority.require(current_user(), "submission")
            raise SubmissionInvalid({**validate_submission(sub), **unanswered})
        case = cases().submit(current_user(), sub, submission_form.chosen_libraries(request.form))
    except SubmissionInvalid as e:
        values = submission_form.values_from_form(sub, request.form)
        return render_template("submit.html", **_form_context(e.errors, values, cases().library_choices())), 422
    return redirect(url_for("cases.show", case_id=case.case_id))
