"""Authorised RFR Users in central's signed desk configuration: ``search_authorisation`` is strictly checked.

Central refuses to sign, and a desk refuses to apply, a document whose authorisation is malformed: a date
not written YYYY-MM-DD, an expiry not after the training, a typed year, an authorisation lasting over five
years, a training date after the document was issued, a business area with markup, an unknown key, or an
authorisation on a role that never searches. Each refusal names the key path.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from core.desk_config import DeskConfig, SearchAuthorisation, hash_password
from core.errors import WireFormatError

HASH = hash_password("a long passphrase here", n=2**14)
GOOD = {"trained_on": "2026-01-12", "authorised_until": "2027-01-11", "business_area": "Custody, North division"}


def document(auth: object, role: str = "custody_officer", issued: str = "2026-03-01T09:00:00+00:00") -> bytes:
    officer: dict[str, object] = {"username": "jsmith", "role": role, "password_hash": HASH}
    if auth is not None:
        officer["search_authorisation"] = auth
    return json.dumps({"version": 1, "issued_at": issued,
                       "accounts": [{"username": "admin", "role": "device_admin", "password_hash": HASH}, officer],
                       "thresholds": {"top_k": 5}, "retention": {"viable_match_days": 90}}).encode()


def test_a_valid_authorisation_parses_and_round_trips():
    config = DeskConfig.parse(document(GOOD))
    auth = config.accounts[1].search_authorisation
    assert auth == SearchAuthorisation(trained_on=date(2026, 1, 12), authorised_until=date(2027, 1, 11),
                                       business_area="Custody, North division")
    assert DeskConfig.parse(config.to_bytes()) == config
    assert DeskConfig.parse(document(None)).accounts[1].search_authorisation is None  # optional: no authorisation
    assert DeskConfig.parse(document(None).replace(b'"role": "custody_officer"',
                                                   b'"role": "custody_officer", "search_authorisation": null'))


@pytest.mark.parametrize(("auth", "phrase"), [
    ({**GOOD, "authorised_until": "2026-01-12"}, "must be after trained_on"),
    ({**GOOD, "authorised_until": "2025-12-31"}, "must be after trained_on"),
    ({**GOOD, "authorised_until": "2031-02-01"}, "more than five years after"),
    ({**GOOD, "trained_on": "1999-12-31", "authorised_until": "2000-06-01"}, "check the year"),
    ({**GOOD, "authorised_until": "2207-01-11"}, "check the year"),
    ({**GOOD, "trained_on": "12/01/2026"}, "accounts.1.search_authorisation.trained_on"),
    ({**GOOD, "trained_on": "2026-1-12"}, "trained_on"),
    ({**GOOD, "authorised_until": "2027-01-11T00:00:00"}, "authorised_until"),
    ({**GOOD, "authorised_until": 20270111}, "authorised_until"),
    ({**GOOD, "authorised_until": "2027-02-30"}, "authorised_until"),
    ({**GOOD, "business_area": ""}, "business_area"),
    ({**GOOD, "business_area": " Custody"}, "business_area"),
    ({**GOOD, "business_area": "<script>alert(1)</script>"}, "business_area"),
    ({**GOOD, "business_area": "Custody\nNorth"}, "business_area"),
    ({**GOOD, "business_area": "C" * 81}, "business_area"),
    ({**GOOD, "business_area": 7}, "business_area"),
    ({"trained_on": "2026-01-12", "authorised_until": "2027-01-11"}, "business_area"),
    ({**GOOD, "approved_by": "someone"}, "approved_by"),
    ("2027-01-11", "search_authorisation"),
])
def test_a_bad_authorisation_is_refused_with_its_key_path(auth, phrase):
    with pytest.raises(WireFormatError, match="The configuration is not valid") as refused:
        DeskConfig.parse(document(auth))
    assert phrase in str(refused.value)


@pytest.mark.parametrize("role", ["auditor", "device_admin", "technical_adviser"])
def test_roles_that_never_search_carry_no_authorisation(role):
    with pytest.raises(WireFormatError, match=f"a {role} does not search"):
        DeskConfig.parse(document(GOOD, role=role))


def test_training_after_the_document_was_issued_is_refused():
    with pytest.raises(WireFormatError, match="jsmith: trained_on 2026-01-12 is after the configuration was issued"):
        DeskConfig.parse(document(GOOD, issued="2026-01-10T09:00:00+00:00"))
    DeskConfig.parse(document(GOOD, issued="2026-01-11T23:30:00+00:00"))  # a day's grace for time zones
