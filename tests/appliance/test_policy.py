"""Every policy rule, directly: approval rank, technical advice, who may do what, submission checks."""

from __future__ import annotations

import pytest

from appliance.services.policy import (
    AgeBand,
    PolicyRefusal,
    Role,
    Submission,
    apparent_minor_flags,
    check_approval,
    check_can_submit,
    check_case_owner,
    check_peer_reviewer,
    check_technical_adviser,
    may_approve_for,
    needs_peer_review,
    required_approval,
    validate_match_report,
    validate_submission,
)


def submission(**over) -> Submission:
    base = dict(custody_ref="CR-1/25", reason="concealing_identity", checks=("fingerprints",),
                checks_detail="Fingerprints returned no trace on IDENT1 at all.", age_band="18_plus",
                disability=False, predates_reassignment=False)
    return Submission(**{**base, **over})


@pytest.mark.parametrize(("band", "role"), [
    ("18_plus", Role.INSPECTOR), ("16_17", Role.INSPECTOR), ("13_15", Role.INSPECTOR),
    ("unknown", Role.INSPECTOR), ("under_13", Role.SUPERINTENDENT),
])
def test_required_rank_follows_apparent_age(band, role):
    assert required_approval(submission(age_band=band)).min_role is role


def test_under_16_is_named_as_a_ground():
    grounds = " ".join(required_approval(submission(age_band="13_15")).grounds)
    assert "under 16" in grounds


@pytest.mark.parametrize(("disability", "reassignment", "advice"), [
    (False, False, False), (True, False, True), (False, True, True), (True, True, True)])
def test_technical_advice_required_for_disability_or_reassignment(disability, reassignment, advice):
    req = required_approval(submission(disability=disability, predates_reassignment=reassignment))
    assert req.technical_advice is advice
    assert req.min_role is Role.INSPECTOR


def test_nobody_approves_their_own_request():
    req = required_approval(submission())
    with pytest.raises(PolicyRefusal, match="your own request"):
        check_approval("sam", Role.SUPERINTENDENT, "sam", req, advice_recorded=True)


@pytest.mark.parametrize("role", [Role.CUSTODY_OFFICER, Role.DETENTION_OFFICER, Role.TECHNICAL_ADVISER,
                                  Role.DEVICE_ADMIN, Role.AUDITOR])
def test_only_inspectors_and_superintendents_approve(role):
    with pytest.raises(PolicyRefusal, match="cannot approve"):
        check_approval("a", role, "b", required_approval(submission()), advice_recorded=True)


def test_superintendent_covers_inspector_but_not_the_reverse():
    adult, child = required_approval(submission()), required_approval(submission(age_band="under_13"))
    check_approval("a", Role.INSPECTOR, "b", adult, advice_recorded=False)
    check_approval("a", Role.SUPERINTENDENT, "b", adult, advice_recorded=False)
    check_approval("a", Role.SUPERINTENDENT, "b", child, advice_recorded=False)
    with pytest.raises(PolicyRefusal, match="Superintendent or above"):
        check_approval("a", Role.INSPECTOR, "b", child, advice_recorded=False)


def test_advice_must_be_recorded_before_approval():
    req = required_approval(submission(disability=True))
    with pytest.raises(PolicyRefusal, match="Technical advice must be recorded"):
        check_approval("a", Role.SUPERINTENDENT, "b", req, advice_recorded=False)
    check_approval("a", Role.INSPECTOR, "b", req, advice_recorded=True)


def test_only_technical_advisers_record_advice():
    check_technical_adviser(Role.TECHNICAL_ADVISER)
    for role in set(Role) - {Role.TECHNICAL_ADVISER}:
        with pytest.raises(PolicyRefusal):
            check_technical_adviser(role)


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.DEVICE_ADMIN, Role.TECHNICAL_ADVISER])
def test_non_desk_roles_cannot_submit_or_search(role):
    with pytest.raises(PolicyRefusal, match="cannot"):
        check_can_submit(role)
    with pytest.raises(PolicyRefusal):
        check_case_owner("x", "x", role)


def test_only_the_case_owner_runs_its_search():
    check_case_owner("sam", "sam", Role.CUSTODY_OFFICER)
    with pytest.raises(PolicyRefusal, match="submitted this case"):
        check_case_owner("kim", "sam", Role.DETENTION_OFFICER)


def test_approval_rank_covers_the_ranks_below_it():
    assert may_approve_for(Role.INSPECTOR, Role.INSPECTOR) and may_approve_for(Role.SUPERINTENDENT, Role.INSPECTOR)
    assert may_approve_for(Role.SUPERINTENDENT, Role.SUPERINTENDENT)
    assert not may_approve_for(Role.INSPECTOR, Role.SUPERINTENDENT)
    assert not any(may_approve_for(r, Role.INSPECTOR) for r in Role if r not in (Role.INSPECTOR, Role.SUPERINTENDENT))


def test_peer_review_needs_another_technical_adviser():
    check_peer_reviewer("ta", Role.TECHNICAL_ADVISER, "sam")
    with pytest.raises(PolicyRefusal, match="technical adviser"):
        check_peer_reviewer("insp", Role.INSPECTOR, "sam")
    with pytest.raises(PolicyRefusal, match="your own"):
        check_peer_reviewer("ta", Role.TECHNICAL_ADVISER, "ta")


def test_doubts_or_a_review_mark_require_peer_review():
    assert not needs_peer_review(["not_viable", "not_viable"], "")
    assert needs_peer_review(["not_viable", "needs_peer_review"], "")
    assert needs_peer_review(["not_viable"], "Candidate 2 has a similar scar")


def test_monitoring_flags():
    assert apparent_minor_flags("under_13") == (True, True)
    assert apparent_minor_flags("13_15") == (True, True)
    assert apparent_minor_flags("16_17") == (True, False)
    assert apparent_minor_flags("18_plus") == (False, False)
    assert apparent_minor_flags("unknown") == (None, None)
    assert {b.value for b in AgeBand} == {"under_13", "13_15", "16_17", "18_plus", "unknown"}


def test_submission_must_state_reason_checks_and_age():
    assert validate_submission(submission()) == {}
    errors = validate_submission(submission(custody_ref="", reason="curiosity", checks=(), checks_detail="no",
                                            age_band="adult"))
    assert set(errors) == {"custody_ref", "reason", "checks", "checks_detail", "age_band"}
    assert "concealing their identity or giving false details" in errors["reason"]


def test_match_report_needs_every_factor():
    full = {k: "Recorded in full." for k in ("probe_quality", "reference_quality", "time_lapse", "lighting",
                                              "other_factors", "age_judgement", "rationale")}
    assert validate_match_report(full) == {}
    assert set(validate_match_report({**full, "lighting": "", "age_judgement": " "})) == {"lighting", "age_judgement"}
