"""The desk's own keys (SQLCipher database key, audit signing key) sealed to a (software) TPM."""

from __future__ import annotations

import pytest

from appliance.runtime import open_desk
from appliance.storage.device_db import DeviceDatabase
from devicekeys.errors import KeyProtectionError
from devicekeys.keys import tpm_for_policy
from devicekeys.tpm import DEVICE
from tests.appliance.conftest import appliance_settings


def test_a_desk_with_a_tpm_seals_its_keys_and_still_opens_its_database(
        swtpm, tmp_path, demo_library, pipeline, monkeypatch):
    monkeypatch.setenv("TPM2TOOLS_TCTI", swtpm.tcti)  # how the desk finds its TPM
    settings = appliance_settings(tmp_path, demo_library, keys={"protection": "tpm"})
    desk = open_desk(settings, pipeline=pipeline)
    data = settings.data_dir
    for name in ("device.key", "audit-signing.key"):
        assert not (data / name).exists(), f"{name} is on disk in plaintext"
        assert (data / f"{name}.tpm-pub").exists() and (data / f"{name}.tpm-priv").exists()
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
