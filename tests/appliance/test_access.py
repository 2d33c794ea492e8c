"""The per-case access rule, directly: who may open a case at each step, and how much of it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.services.access import Access, CaseParties, case_access
from appliance.services.accounts import User
from appliance.services.policy import Role

WAITING = CaseParties(submitted_by="sam", approved_by=None, advice_by=None, advice_required=True,
                      required_role=Role.INSPECTOR, adjudicated_by=None, peer_reviewer=None,
                      awaiting_approval=True, awaiting_local_peer_review=False, closed=False)
SEARCHED = replace(WAITING, approved_by="insp", advice_by="ta", awaiting_approval=False, adjudicated_by="sam")


def user(name: str, role: Role) -> User:
    return User(name, role)


@pytest.mark.parametrize("name, role", [("sam", Role.CUSTODY_OFFICER), ("insp", Role.INSPECTOR),
                                        ("ta", Role.TECHNICAL_ADVISER)])
def test_the_people_taking_part_see_everything(name, role):
    assert case_access(user(name, role), SEARCHED) is Access.IMAGES


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.AUDITOR])
def test_another_user_of_any_role_sees_nothing_once_the_case_is_under_way(role):
    assert case_access(user("kim", role), SEARCHED) is Access.NONE


def test_approvers_of_enough_rank_and_an_adviser_asked_for_advice_see_the_submission_while_it_waits():
    assert case_access(user("kim", Role.INSPECTOR), WAITING) is Access.DETAILS
    assert case_access(user("kim", Role.TECHNICAL_ADVISER), WAITING) is Access.DETAILS
    child = replace(WAITING, required_role=Role.SUPERINTENDENT)
    assert case_access(user("kim", Role.INSPECTOR), child) is Access.NONE
    assert case_access(user("kim", Role.SUPERINTENDENT), child) is Access.DETAILS
    advised = replace(WAITING, advice_by="ta")
    assert case_access(user("kim", Role.TECHNICAL_ADVISER), advised) is Access.NONE
    assert case_access(user("kim", Role.CUSTODY_OFFICER), WAITING) is Access.NONE


def test_a_peer_review_on_the_desk_is_open_to_an_adviser_who_did_not_judge_it():
    reviewing = replace(SEARCHED, awaiting_local_peer_review=True)
    assert case_access(user("kim", Role.TECHNICAL_ADVISER), reviewing) is Access.IMAGES
    assert case_access(user("kim", Role.INSPECTOR), reviewing) is Access.NONE
    assert case_access(user("kim", Role.TECHNICAL_ADVISER), replace(SEARCHED, peer_reviewer="kim")) is Access.IMAGES


def test_the_auditor_reads_closed_cases_only_and_the_admin_nothing():
    assert case_access(user("aud", Role.AUDITOR), SEARCHED) is Access.NONE
    assert case_access(user("aud", Role.AUDITOR), replace(SEARCHED, closed=True)) is Access.RECORD
    assert case_access(user("sam", Role.DEVICE_ADMIN), SEARCHED) is Access.NONE, "a role change removes access"
