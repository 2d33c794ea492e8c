"""The desk's own keys (SQLCipher database key, audit signing key) sealed to a (software) TPM."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.runtime import open_desk
from appliance.settings import ApplianceSettings, LibrarySettings
from appliance.storage.device_db import DeviceDatabase
from devicekeys.errors import KeyProtectionError
from devicekeys.keys import sealed_policy, tpm_for_policy
from devicekeys.tpm import DEVICE, SealPolicy
from tests.appliance.conftest import appliance_settings


def test_a_desk_with_a_tpm_seals_its_keys_and_still_opens_its_database(
        swtpm, tmp_path, demo_library, pipeline, monkeypatch):
    monkeypatch.setenv("TPM2TOOLS_TCTI", swtpm.tcti)  # how the desk finds its TPM
    settings = appliance_settings(tmp_path, demo_library, keys={"protection": "tpm"})
    desk = open_desk(settings, pipeline=pipeline)
    data = settings.data_dir
    for name in ("device.key", "audit-signing.key", "pki/library-wrap.key"):
        assert not (data / name).exists(), f"{name} is on disk in plaintext"
        assert (data / f"{name}.tpm-pub").exists() and (data / f"{name}.tpm-priv").exists()
        # Sealed under measured boot (PCR 7) AND the desk's authorisation value, not to the bare TPM.
        assert sealed_policy(data / name) == SealPolicy("sha256:7", (data / "tpm-auth.secret").resolve())
    assert desk.health.build().key_protection == "tpm"
    events = desk.outbox.depth()
    key = desk.outbox.public_key
    desk.close()
    again = open_desk(settings, pipeline=pipeline)  # unseals both keys again
    assert again.outbox.depth() == events + 1  # the old rows are readable, one more event
    assert again.outbox.public_key == key
    again.close()


def test_a_file_key_moves_into_the_tpm_and_policy_tpm_refuses_to_start_without_one(swtpm, tmp_path, monkeypatch):
    db = DeviceDatabase(tmp_path)
    with db.lock:
        db.conn.execute("CREATE TABLE t (x)")
        db.conn.execute("INSERT INTO t VALUES (42)")
        db.conn.commit()
    db.close()
    assert (tmp_path / "device.key").stat().st_mode & 0o777 == 0o600
    moved = DeviceDatabase(tmp_path, swtpm)
    assert not (tmp_path / "device.key").exists() and (tmp_path / "device.key.tpm-priv").exists()
    assert moved.conn.execute("SELECT x FROM t").fetchone()[0] == 42
    moved.close()
    monkeypatch.delenv("TPM2TOOLS_TCTI", raising=False)
    assert tpm_for_policy("file") is None
    if DEVICE.exists():
        return  # this machine has a real TPM: "auto" and "tpm" both find it
    assert tpm_for_policy("auto") is None
    with pytest.raises(KeyProtectionError, match="protection is 'tpm' but no TPM"):
        tpm_for_policy("tpm")


def test_the_heartbeat_counts_every_key_the_library_key_included(swtpm, tmp_path, demo_library, pipeline,
                                                                 monkeypatch):
    """The old heartbeat said "tpm" while the library key sat in a plain, fleet-wide file beside the desk."""
    monkeypatch.setenv("TPM2TOOLS_TCTI", swtpm.tcti)
    plain = appliance_settings(tmp_path / "plain", demo_library, keys={"protection": "tpm"}).model_copy(update={
        "library": LibrarySettings(path=demo_library[0], insecure_plain_key_file=demo_library[1])})
    desk = open_desk(plain, pipeline=pipeline)
    try:
        assert desk.health.build().key_protection == "insecure"  # every other key is sealed: still reported
    finally:
        desk.close()
    files = appliance_settings(tmp_path / "files", demo_library, keys={"protection": "file"})
    desk = open_desk(files, pipeline=pipeline)
    try:
        wrap_key = files.data_dir / "pki" / "library-wrap.key"
        assert wrap_key.stat().st_mode & 0o777 == 0o600
        assert desk.health.build().key_protection == "file"
    finally:
        desk.close()


def test_a_settings_file_with_the_old_shared_key_file_is_refused_with_advice(tmp_path, demo_library):
    with pytest.raises(ValidationError, match="key_file is no longer read"):
        ApplianceSettings.model_validate({"device_id": "desk-old-01", "data_dir": tmp_path, "web": {
            "secret_key": "x" * 20}, "library": {"path": demo_library[0], "key_file": demo_library[1]}})
    with pytest.raises(ValidationError, match="set exactly one of wrapped_key"):
        ApplianceSettings.model_validate({"device_id": "desk-old-01", "data_dir": tmp_path, "web": {
            "secret_key": "x" * 20}, "library": {"path": demo_library[0]}})
