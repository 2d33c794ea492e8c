"""Signed desk configuration: central publishes accounts and thresholds, the desk verifies and applies them.

A real TUF repository served by central's Flask app, and the real desk app
(models, library, encrypted database) checking it. Each test asserts what a
custody officer or auditor could see: who can sign in, how many candidates a
search shows, and the ``config_change`` audit events with their reasons.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flask import Flask
from securesystemslib.signer import CryptoSigner

from appliance.services.policy import Role
from appliance.settings import ApplianceSettings
from appliance.updates.config import ConfigResult
from appliance.web import create_app
from central.fleet.registry_store import RegistryStore
from central.publish.__main__ import main as publish_main
from central.publish.repository import TufRepository
from core.desk_config import ROLES, ConfigTargetInfo, DeskConfig, config_digest, hash_password
from core.errors import WireFormatError
from core.events import AuditEvent
from core.keywrap import SealedDocument, public_key_hex, recipients_from_hex
from core.library_announce import LibraryAnnouncement
from core.passwords import verify_password
from devicekeys.wrapping import public_path, read_public_key
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import PASSWORD, Desk, approved_case, authorisation_for
from tests.fleet_key import COMMAND_KEY
from tests.updates.conftest import Central


@functools.cache
def password_hash() -> str:
    """One hash of the shared test password, made the way central's hash-password command makes it."""
    return hash_password(PASSWORD)


def account(username: str, role: str, disabled: bool = False) -> dict[str, object]:
    """One account as central lists it; the roles that search carry a current authorisation to search."""
    listed: dict[str, object] = {"username": username, "role": role, "password_hash": password_hash(),
                                 "disabled": disabled}
    auth = authorisation_for(role)
    if auth is not None:
        listed["search_authorisation"] = auth.model_dump(mode="json")
    return listed


STAFF = [account("admin", "device_admin"), account("officer", "custody_officer"), account("inspector", "inspector")]


def document(version: int, accounts: list[dict[str, object]] = STAFF, top_k: int = 3) -> dict[str, object]:
    return {"version": version, "issued_at": datetime.now(UTC).isoformat(), "accounts": accounts,
            "thresholds": {"top_k": top_k}, "retention": {"viable_match_days": 90}}


def write(folder: Path, doc: dict[str, object]) -> Path:
    path = folder / f"config-{doc['version']}-{len(list(folder.iterdir()))}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def publish(central: Central, path: Path) -> int:
    return publish_main(["publish-config", "--repo", str(central.repo.repo_dir), "--file", str(path),
                         "--database", central.database])


def sealed(central: Central, path: Path, configs: Path) -> Path:
    """``path`` sealed to the registered desks without central's checks (a mistake or a newer central)."""
    registry = RegistryStore(central.database)
    try:
        document = SealedDocument.seal(path.read_bytes(), recipients_from_hex(registry.wrapping_keys().items()))
    finally:
        registry.close()
    out = configs / f"{path.stem}.sealed"
    out.write_bytes(document.to_bytes())
    return out


def register_other_desk(central: Central) -> None:
    registry = RegistryStore(central.database)
    registry.register_device("desk-other", "11" * 32, wrap_public_key_hex=public_key_hex(
        X25519PrivateKey.generate().public_key()))
    registry.close()


def register(central: Central, settings: ApplianceSettings) -> None:
    """Provisioning at central: the desk's audit key and key-wrapping key in the registry."""
    registry = RegistryStore(central.database)
    try:
        registry.register_device(settings.device_id, "00" * 32, wrap_public_key_hex=public_key_hex(
            read_public_key(public_path(settings.wrapping_key_path))))
    finally:
        registry.close()


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "central-configs"
    folder.mkdir()
    return folder


@pytest.fixture
def app(tmp_path: Path, central: Central, demo_library, pipeline) -> Iterator[Flask]:
    """A provisioned desk pointed at central's repository; no check has run yet (no threads started)."""
    (tmp_path / "1.root.json").write_bytes(central.repo.root_bytes)
    settings = appliance_settings(tmp_path, demo_library, updates={
        "central_url": central.url, "trusted_root": tmp_path / "1.root.json", "poll_interval_s": 0,
        **central.desk_settings})
    register(central, settings)
    application = create_app(settings, pipeline=pipeline, start_sync=False, test_config={"TESTING": True})
    yield application
    application.extensions["desk"].updater.stop()


def check(app: Flask) -> ConfigResult:
    updater = app.extensions["desk"].updater
    updater.check_now()
    result = updater.config.last_result
    assert result is not None
    return result


def events(app: Flask, type_: str) -> list[AuditEvent]:
    found = [AuditEvent.from_bytes(p.payload) for p in app.extensions["desk"].outbox.pending(limit=1000)]
    return [e for e in found if e.type == type_]


def can_sign_in(app: Flask, username: str) -> bool:
    return Desk(app).login(username).status_code == 302


def assert_refused(app: Flask, result: ConfigResult, reason: str, phrase: str, version: int) -> None:
    assert (result.outcome, result.reason, result.version) == ("refused", reason, version), result
    assert phrase in result.message
    refused = [e for e in events(app, "config_change") if e.outcome == "refused"]
    assert refused and refused[-1].details["reason"] == reason
    assert refused[-1].details["message"] == result.message


def candidates_shown(app: Flask, face_photo) -> int:
    desk, case_id = approved_case(app, "officer", "inspector")
    assert desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200
    assert desk.post(f"/cases/{case_id}/search").status_code == 302
    html = desk.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    # Candidates are shown by person: count the images each person's group holds.
    return sum(len(ranks.split()) for ranks in re.findall(r'data-ranks="([\d ]+)"', html))


# --- applied --------------------------------------------------------------------------------------


def test_central_issues_accounts_and_top_k_and_the_desk_applies_them(app, central, configs, face_photo):
    assert not can_sign_in(app, "officer")
    assert publish(central, write(configs, document(1, top_k=3))) == 0
    served = TufRepository(central.repo.repo_dir).target_path("config-v000001.json").read_bytes()
    for secret in (b"scrypt$", password_hash().encode()[-64:], b"officer", b"inspector", b"password_hash"):
        assert secret not in served, f"{secret!r} is readable in the published configuration"
    assert TufRepository(central.repo.repo_dir).published() == {}  # library logic never sees a configuration

    result = check(app)
    assert (result.outcome, result.version, result.target) == ("applied", 1, "config-v000001.json")
    assert can_sign_in(app, "officer") and can_sign_in(app, "admin")
    assert candidates_shown(app, face_photo) == 3  # the settings file says 10
    event = events(app, "config_change")[-1]
    assert (event.outcome, event.details["config_version"], event.details["top_k"]) == ("ok", 1, 3)
    assert event.details["accounts_created"] == ["admin", "officer", "inspector"]
    assert check(app).outcome == "up_to_date"
    assert [e.outcome for e in events(app, "config_change")] == ["ok"]


def test_a_newer_config_announced_disables_an_account_and_ends_its_session(app, central, configs):
    publish(central, write(configs, document(1)))
    check(app)
    officer = Desk(app, "officer")
    assert officer.get("/").status_code == 200

    staff = [STAFF[0], account("officer", "custody_officer", disabled=True), STAFF[2]]
    publish(central, write(configs, document(2, staff, top_k=5)))
    announcement = json.loads((central.repo.repo_dir / "announcement.json").read_bytes())
    assert (announcement["kind"], announcement["library_version"]) == ("config", 2)
    signed = LibraryAnnouncement.seal((central.repo.repo_dir / "announcement.json").read_bytes(), COMMAND_KEY)
    app.extensions["desk"].updater.on_announcement(signed)

    assert app.extensions["desk"].desk_config.top_k(10) == 5
    assert officer.get("/").status_code == 302  # signed out
    response = Desk(app).login("officer")
    assert response.status_code == 401 and "The username or password is wrong" in response.get_data(as_text=True)
    assert can_sign_in(app, "inspector")
    event = events(app, "config_change")[-1]
    assert (event.details["config_version"], event.details["previous_version"]) == (2, 1)
    assert event.details["accounts_disabled"] == ["officer"]


def test_an_announcement_of_an_applied_config_does_not_check_again(app, central, configs):
    publish(central, write(configs, document(1)))
    check(app)
    repeat = LibraryAnnouncement.seal(
        LibraryAnnouncement.now(1, "config-v000001.json", "config", "sha256:" + "0" * 64).to_bytes(), COMMAND_KEY)
    assert app.extensions["desk"].updater.on_announcement(repeat) is None


# --- refused: nothing applied, the reason audited -------------------------------------------------


def test_central_refuses_to_publish_an_older_equal_or_invalid_config(central, configs, capsys):
    assert publish(central, write(configs, document(2))) == 1
    assert "no registered, unrevoked desk has a key-wrapping key" in capsys.readouterr().err
    register_other_desk(central)
    assert publish(central, write(configs, document(2))) == 0
    capsys.readouterr()
    assert publish(central, write(configs, document(2))) == 1
    assert "version 2 is already published; desks apply only newer versions" in capsys.readouterr().err
    assert publish(central, write(configs, document(3, [account("x", "chief_constable")]))) == 1
    assert "unknown role 'chief_constable'" in capsys.readouterr().err
    assert publish(central, write(configs, document(3, [account("officer", "custody_officer")]))) == 1
    assert "no enabled device_admin account" in capsys.readouterr().err
    doc = document(3)
    doc["accounts"] = [{**STAFF[0], "password_hash": "scrypt$1024$8$1$" + "a" * 32 + "$" + "b" * 64}]
    assert publish(central, write(configs, doc)) == 1
    assert "outside what desks accept" in capsys.readouterr().err
    lapsed_before_trained = {**STAFF[1], "search_authorisation": {
        "trained_on": "2026-01-12", "authorised_until": "2025-01-11", "business_area": "Custody"}}
    assert publish(central, write(configs, document(3, [STAFF[0], lapsed_before_trained]))) == 1
    assert "authorised_until 2025-01-11 must be after trained_on 2026-01-12" in capsys.readouterr().err
    assert list(TufRepository(central.repo.repo_dir).published_configs()) == ["config-v000002.json"]


def test_a_withdrawn_newer_config_is_a_rollback_and_refused(app, central, configs):
    publish(central, write(configs, document(1)))
    publish(central, write(configs, document(2, top_k=7)))
    assert check(app).version == 2
    TufRepository(central.repo.repo_dir).withdraw("config-v000002.json")  # validly re-signed, offers v1 only
    assert_refused(app, check(app), "rollback", "Central offers configuration version 1 at most", version=2)
    assert app.extensions["desk"].desk_config.top_k(10) == 7


def test_an_old_config_replayed_under_a_new_signed_name_is_refused(app, central, configs):
    first = write(configs, document(1, top_k=4))
    publish(central, first)
    publish(central, write(configs, document(2, top_k=6)))
    assert check(app).version == 2
    repo = TufRepository(central.repo.repo_dir)  # a mistake at central: v1's file signed as version 3
    repo.publish(sealed(central, first, configs), ConfigTargetInfo(3, config_digest(first.read_bytes())))
    assert_refused(app, check(app), "result_mismatch", "holds configuration version 1, not the version 3",
                   version=2)
    assert app.extensions["desk"].desk_config.top_k(10) == 6


def test_a_tampered_config_target_is_refused_by_tuf(app, central, configs):
    publish(central, write(configs, document(1, top_k=3)))
    served = TufRepository(central.repo.repo_dir).target_path("config-v000001.json")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 1  # same length
    served.write_bytes(bytes(data))
    assert_refused(app, check(app), "altered_download", "The signed configuration failed verification", 0)
    assert not can_sign_in(app, "admin")
    assert app.extensions["desk"].desk_config.applied() is None


def test_a_config_signed_by_the_wrong_key_is_refused(app, central, configs):
    repo = TufRepository(central.repo.repo_dir)
    repo._signers["targets"] = CryptoSigner.generate_ed25519()  # an attacker's key
    path = write(configs, document(1))
    repo.publish(sealed(central, path, configs), ConfigTargetInfo.of(path.read_bytes()))
    updater = app.extensions["desk"].updater
    library = updater.check_now()
    assert (library.outcome, library.reason) == ("refused", "bad_signature")  # the whole target list is refused
    assert updater.config.last_result is None  # nothing unverified reaches the configuration step
    assert not can_sign_in(app, "officer")
    assert app.extensions["desk"].desk_config.applied() is None


def test_a_config_with_an_unknown_role_is_refused_whole(app, central, configs):
    publish(central, write(configs, document(1)))
    check(app)
    bad = write(configs, document(2, [*STAFF, account("newcomer", "custody_officer"),
                                      account("chief", "chief_constable")], top_k=9))
    repo = TufRepository(central.repo.repo_dir)  # bypasses central's own check, as a newer central might
    repo.publish(sealed(central, bad, configs), ConfigTargetInfo(2, config_digest(bad.read_bytes())))
    assert_refused(app, check(app), "invalid_config", "unknown role 'chief_constable'", version=1)
    assert not can_sign_in(app, "newcomer")
    assert app.extensions["desk"].desk_config.top_k(10) == 3
    assert check(app).outcome == "refused"
    assert len([e for e in events(app, "config_change") if e.outcome == "refused"]) == 1  # audited once


def test_a_desk_central_does_not_trust_cannot_open_the_configuration(app, central, configs):
    registry = RegistryStore(central.database)
    registry.revoke_device(app.extensions["desk"].settings.device_id, "test", "stolen")
    registry.close()
    register_other_desk(central)
    assert publish(central, write(configs, document(1))) == 0  # sealed to desk-other only
    assert_refused(app, check(app), "not_for_this_desk", "was not sealed for desk-test-01", version=0)
    assert not can_sign_in(app, "officer")


# --- the shared definitions -----------------------------------------------------------------------


def test_hash_password_command_writes_what_the_desk_verifies(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert publish_main(["hash-password"]) == 0
    stored = capsys.readouterr().out.strip()
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "x", stored)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert publish_main(["hash-password"]) == 1
    assert "at least 12 characters" in capsys.readouterr().err


def test_the_schema_knows_exactly_the_desk_roles_and_is_strict():
    assert {r.value for r in Role} == ROLES
    doc = document(1)
    DeskConfig.parse(json.dumps(doc).encode())
    for broken, phrase in (({**doc, "extra": 1}, "extra"), ({**doc, "version": "1"}, "version"),
                           ({**doc, "accounts": [*STAFF, STAFF[1]]}, "listed twice"),
                           ({**doc, "issued_at": "2025-01-01T00:00:00"}, "issued_at")):
        with pytest.raises(WireFormatError, match=phrase):
            DeskConfig.parse(json.dumps(broken).encode())


# --- Authorised RFR Users -----------------------------------------------------------------------------------


def test_an_authorisation_to_search_arriving_in_a_new_configuration_takes_effect(app, central, configs, face_photo):
    """Central issues an officer without an authorisation to search: they sign in but are refused; the next
    signed configuration carries one and the same session submits and searches, no new sign-in; a later
    configuration without it stops them again."""
    unauthorised = {k: v for k, v in account("officer", "custody_officer").items() if k != "search_authorisation"}
    publish(central, write(configs, document(1, [STAFF[0], unauthorised, STAFF[2]])))
    assert check(app).outcome == "applied"
    officer = Desk(app, "officer")  # signs in
    refused = officer.submit()
    assert refused.status_code == 403
    assert "no authorisation to search is recorded for your account" in refused.get_data(as_text=True)
    assert events(app, "request_refused")[-1].outcome == "not_authorised_user"

    publish(central, write(configs, document(2)))  # STAFF: the officer now carries a current authorisation
    result = check(app)
    assert (result.outcome, result.version) == ("applied", 2)
    event = events(app, "config_change")[-1]
    assert event.details["search_authorisations_changed"] == ["officer"]
    assert event.details["accounts_updated"] == []  # nothing else changed, so the officer's session goes on
    auth = app.extensions["desk"].accounts.authorisation("officer")
    assert auth is not None and auth.business_area == "Custody, test division"
    response = officer.submit()
    assert response.status_code == 302, response.get_data(as_text=True)
    case_id = response.headers["Location"].rsplit("/", 1)[1]
    assert Desk(app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert officer.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200

    publish(central, write(configs, document(3, [STAFF[0], unauthorised, STAFF[2]])))  # withdrawn by central
    assert check(app).version == 3
    assert app.extensions["desk"].accounts.authorisation("officer") is None
    searched = officer.post(f"/cases/{case_id}/search")
    assert searched.status_code == 403 and "no authorisation to search is recorded" in searched.get_data(as_text=True)
    assert events(app, "search_refused")[-1].outcome == "not_authorised_user"
