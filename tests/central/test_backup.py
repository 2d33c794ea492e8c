"""The restore drill: back central up, destroy it, restore into a fresh directory and database, carry on.

On SQLite and on PostgreSQL (``pg_dump``/``pg_restore`` of a real cluster): two desks' chains are stored
with a signed checkpoint, the TUF repository is made by ``central.publish init``, the fleet CA by the
provisioning code and the fleet-command key by its command. After ``python -m central backup``, the
originals are deleted; ``python -m central restore`` puts everything into new places. Then every desk's
chain verifies offline from an export of the restored database, the ingest stores what the desks send
next (what it already had counts as duplicates, nothing is lost or stored twice), the repository goes on
signing with versions above the backed-up ones and publishes a library above what every desk holds, and the
keys are back, still 0600.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.__main__ import main as central_main
from central.audit.__main__ import main as audit_main
from central.audit.__main__ import verify_file
from central.audit.store import AuditStore
from central.backup import BackupError, back_up, restore, unseal
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.publish.__main__ import main as publish_main
from central.settings import CentralSettings
from core.keywrap import public_key_hex
from library.snapshot import new_key, write_key_file
from testbed.chain_writer import ChainWriter
from testbed.postgres import PG_BIN, start_postgres
from tests.fleet_tls import FleetPki
from tests.updates.conftest import EMBEDDER, build_library

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"
PASSPHRASE = "correct horse battery staple for backups"


def settings_toml(root: Path, database: str, ca_dir: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root.parent / f"{root.name}.toml"
    config.write_text(f'data_dir = "{root / "data"}"\ndatabase = "{database}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = 18830\n[web]\nsecret_key = "{SECRET}"\n'
                      f'[publish]\nrepo_dir = "{root / "repo"}"\n'
                      f'[fleet]\ncommand_key = "{root / "keys" / "fleet-command.pem"}"\nca_dir = "{ca_dir}"\n')
    return config


def heartbeat(device: str, **over: object) -> dict[str, object]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    row: dict[str, object] = dict(
        device_id=device, received_at=now, sent_at=now, interval_s=60.0, software_version="0.1.0",
        library_version=1, embedder_id=EMBEDDER, disk_free_bytes=50, disk_total_bytes=100,
        memory_available_bytes=1, memory_total_bytes=2, outbox_depth=0, since_last_sync_s=1.0,
        clock_offset_s=0.0, key_protection="file")
    row.update(over)
    return row


def timestamp_version(repo: Path) -> int:
    return int(json.loads((repo / "metadata" / "timestamp.json").read_text())["signed"]["version"])


@pytest.fixture
def databases(request, tmp_path):
    """(the original's database, an empty one to restore into, how to lose the original's server), as SQLite
    files or PostgreSQL databases. On PostgreSQL each is a cluster of its own (``initdb``): the restore goes into
    a fresh cluster after the original's is stopped and its data directory deleted."""
    if request.param == "sqlite":
        yield (f"sqlite:///{tmp_path / 'old' / 'data' / 'central.db'}", f"sqlite:///{tmp_path / 'new' / 'central.db'}",
               lambda: None)
        return
    lost, fresh = start_postgres(), start_postgres()
    try:
        yield lost.create_database(), fresh.create_database(), lost.stop
    finally:
        lost.stop()
        fresh.stop()


@pytest.mark.parametrize("databases", ["sqlite", "postgres"], indirect=True)
def test_restore_drill_chains_verify_ingest_resumes_and_publication_continues(tmp_path, databases, capsys):
    old_url, new_url, lose_old_server = databases
    old, new = tmp_path / "old", tmp_path / "new"
    pki = FleetPki.create(old / "fleet")
    config = settings_toml(old, old_url, pki.ca_dir)
    assert central_main(["devices", "command-key", "--out", str(old / "keys" / "fleet-command.pem")]) == 0
    assert publish_main(["init", "--repo", str(old / "repo"), "--root-keys-dir", str(tmp_path / "offline-root")]) == 0
    store, registry, health = AuditStore(old_url), RegistryStore(old_url), HealthStore(old_url)
    desks = [ChainWriter("desk-a"), ChainWriter("desk-b")]
    events = {}
    for desk in desks:
        registry.register_device(desk.device_id, desk.public_hex,
                                 wrap_public_key_hex=public_key_hex(X25519PrivateKey.generate().public_key()))
        events[desk.device_id] = [desk.event() for _ in range(10)]
        store.add_batch(events[desk.device_id], [desk.checkpoint()], datetime.now(UTC))
    for desk in desks:
        health.record_health(heartbeat(desk.device_id, library_version=1))
    for closing in (store, registry, health):
        closing.close()
    # Library version 1 is published and held by both desks (their heartbeats say so). The lineage key is
    # the enrolment team's, kept apart from central's server (central.enrolment), so outside the backup.
    lineage_key = tmp_path / "enrolment" / "lineage.key"
    lineage_key.parent.mkdir()
    write_key_file(lineage_key, library_key := new_key())
    library_args = ["--kind", "full", "--key-file", str(lineage_key), "--database", old_url]
    v1 = build_library(tmp_path / "enrolment" / "v1.db", library_key, 1)
    assert publish_main(["publish", "--repo", str(old / "repo"), "--file", str(v1), *library_args]) == 0
    version_before = timestamp_version(old / "repo")  # after publishing version 1
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    backup = tmp_path / "backup-1"
    assert central_main(["backup", "--config", str(config), "--out", str(backup), "--passphrase-file",
                         str(tmp_path / "passphrase"), "--pg-bin", str(PG_BIN)]) == 0
    assert "keys (fleet.ca_dir, fleet.command_key, publish.repo_dir/keys) sealed" in capsys.readouterr().out
    # The keys are nowhere in the clear in the backup.
    key_bytes = (old / "keys" / "fleet-command.pem").read_bytes()
    assert all(key_bytes not in p.read_bytes() for p in backup.rglob("*") if p.is_file())
    assert not (backup / "tuf-repo" / "keys").exists()

    shutil.rmtree(old)  # the server is lost (the SQLite file with it)
    lose_old_server()  # and the PostgreSQL cluster: stopped, its data directory deleted

    new_config = settings_toml(new, new_url, new / "fleet-ca")
    assert central_main(["restore", "--config", str(new_config), "--from", str(backup), "--passphrase-file",
                         str(tmp_path / "passphrase"), "--pg-bin", str(PG_BIN)]) == 0
    settings = CentralSettings.model_validate({"data_dir": new / "data", "database": new_url,
                                               "mqtt": {"host": "127.0.0.1", "port": 18830},
                                               "web": {"secret_key": SECRET}})
    # Every desk's chain verifies offline from an export of the restored database.
    export = tmp_path / "restored.jsonl"
    assert audit_main(["export", "--database", settings.database_url, "--out", str(export)]) == 0
    ok, lines = verify_file(export, {})
    assert ok, lines
    assert "20 events" in lines[-1] and "2 signed checkpoints from 2 device(s)" in lines[-1]
    # The ingest carries on from where it was: a resend of the last three and five new events per desk.
    store = AuditStore(new_url)
    try:
        for desk in desks:
            more = [desk.event() for _ in range(5)]
            outcome = store.add_batch(events[desk.device_id][7:] + more, [desk.checkpoint()], datetime.now(UTC))
            assert (outcome.stored, outcome.duplicates, outcome.conflicts) == (5, 3, 0)
            head = store.head(desk.device_id)
            assert head is not None and (head.contiguous_seq, head.checkpoint_seq) == (15, 15)
        assert store.count() == 30 and store.findings() == []
    finally:
        store.close()
    registry = RegistryStore(new_url)
    assert sorted(registry.registered_devices()) == ["desk-a", "desk-b"]
    registry.close()
    # Publication continues from the restored repository and its restored online keys.
    assert timestamp_version(new / "repo") == version_before
    assert publish_main(["refresh-timestamp", "--repo", str(new / "repo")]) == 0
    assert timestamp_version(new / "repo") > version_before
    v2 = build_library(tmp_path / "enrolment" / "v2.db", library_key, 2)
    capsys.readouterr()
    assert publish_main(["publish", "--repo", str(new / "repo"), "--file", str(v2),
                         *library_args[:-1], new_url]) == 0
    assert "(library version 2)" in capsys.readouterr().out
    health = HealthStore(new_url)
    held = max(beat["library_version"] for beat in health.latest_health().values())
    health.close()
    assert held == 1  # the new publication is above what any desk holds
    # The keys are back where the new settings say, private ones 0600.
    for key in [new / "keys" / "fleet-command.pem", *sorted((new / "repo" / "keys").iterdir())]:
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0, key
    assert (new / "keys" / "fleet-command.pem.pub").is_file()
    assert sorted(p.name for p in (new / "fleet-ca").iterdir()) == sorted(p.name for p in backup_ca_names(backup))


def backup_ca_names(backup: Path) -> list[Path]:
    """The CA folder's entries as sealed in the backup (read back through a restore into a scratch place)."""


    with tarfile.open(fileobj=io.BytesIO(unseal((backup / "secrets.enc").read_bytes(), PASSPHRASE.encode()))) as tar:
        return sorted({Path(m.name.split("/")[1]) for m in tar.getmembers() if m.name.startswith("fleet.ca_dir/")})


def test_a_restore_refuses_a_wrong_passphrase_a_damaged_backup_and_an_occupied_place(tmp_path):
    root = tmp_path / "src"
    settings = CentralSettings.model_validate({
        "data_dir": root, "mqtt": {"host": "127.0.0.1", "port": 18830}, "web": {"secret_key": SECRET},
        "fleet": {"command_key": root / "keys" / "command.pem"}})
    assert central_main(["devices", "command-key", "--out", str(root / "keys" / "command.pem")]) == 0
    AuditStore(settings.database_url).close()
    back_up(settings, tmp_path / "b", PASSPHRASE.encode())
    with pytest.raises(BackupError, match="already exists"):
        back_up(settings, tmp_path / "b", PASSPHRASE.encode())
    target = settings.model_copy(update={"data_dir": tmp_path / "dst", "fleet": settings.fleet.model_copy(
        update={"command_key": tmp_path / "dst" / "command.pem"})})
    with pytest.raises(BackupError, match="does not open with this passphrase"):
        restore(target, tmp_path / "b", b"a different passphrase entirely")
    assert not (tmp_path / "dst").exists()  # nothing was written
    with pytest.raises(BackupError, match="already exists"):
        restore(settings, tmp_path / "b", PASSPHRASE.encode())  # onto the live server's own files
    damaged = tmp_path / "b" / "database.sqlite"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    with pytest.raises(BackupError, match="missing or damaged"):
        restore(target, tmp_path / "b", PASSPHRASE.encode())
    assert not (tmp_path / "dst").exists()
