"""The restore drill through the broker: real desks' links, central's ingest process, PostgreSQL, Mosquitto.

Two stand-in desks (``tests/audit_device.py``: the desk's real audit log, outbox and MQTT link) send their
events through a persistent Mosquitto to ``python -m central ingest`` on a real PostgreSQL database. Central
is backed up with ``python -m central backup`` while it runs, then destroyed: ingest stopped, database
dropped, every folder deleted. The desks go on recording while central is gone. ``python -m central restore``
puts it into a fresh database and fresh folders, the ingest starts again under the same broker session, and
the desks record more. Then: every (device, seq) is stored exactly once with nothing missing, each desk's chain
and checkpoints verify from an export, the desks' outboxes are empty, every signed ack a desk received after
the restore continues from where the acks before it were (none goes back), and a library published from the
restored repository has a version above what any desk holds and is accepted by a python-tuf client that
trusted the pre-backup metadata (no rollback error).
"""

from __future__ import annotations

import itertools
import json
import queue
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.storage.signing_key import PUBLIC_NAME, load_or_create_signing_key
from central.__main__ import main as central_main
from central.audit.__main__ import main as audit_main
from central.audit.__main__ import verify_file
from central.audit.filter import EventFilter
from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.fleet.resend import ResendLog
from central.publish.__main__ import main as publish_main
from central.publish.repository import TufRepository
from central.publish.settings import PublishSettings
from core.audit.ack import Ack
from core.audit.checkpoint import public_key_from_bytes, public_key_hex
from core.fleet import FleetCommand
from core.keywrap import public_key_hex as wrap_hex
from core.topics import ack_topic, fleet_command_topic
from library.snapshot import new_key, read_key_file, write_key_file
from testbed.mosquitto import PersistentBroker
from testbed.postgres import PG_BIN
from testbed.processes import stop_process
from tests.audit_support import wait_for
from tests.central.test_backup import PASSPHRASE, SECRET, heartbeat
from tests.fleet_key import CENTRAL_PUBLIC, FORGER, write_command_key
from tests.fleet_tls import FleetPki
from tests.tufrepo.test_repository import BASE, FolderFetcher
from tests.updates.conftest import build_library

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count(1)
DESKS = ("desk-drill-a", "desk-drill-b")
BEFORE, DOWN, AFTER = 20, 35, 50  # each desk's chain length: at the backup, while central is gone, at the end


class Desk:
    """One stand-in desk process with its own device database; restarted, it carries on its chain."""

    def __init__(self, data: Path, device_id: str, broker: PersistentBroker) -> None:
        self.data, self.device_id, self.broker = data, device_id, broker
        self.process: subprocess.Popen[bytes] | None = None
        load_or_create_signing_key(data)

    def run_until(self, total: int) -> None:
        """(Re)start the desk and return once its log holds ``total`` events; it goes on sending them."""
        self.stop()
        log = (self.data.parent / f"{self.device_id}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.audit_device", str(self.data), self.device_id, self.broker.host,
             str(self.broker.port), str(total), "0.01"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        log.close()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == b"recorded":
                return
        raise AssertionError(f"{self.device_id} exited early")

    def outbox_depth(self) -> int:
        db = DeviceDatabase(self.data)
        try:
            return Outbox(db).depth()
        finally:
            db.close()

    def stop(self) -> None:
        if self.process and self.process.stdout:
            self.process.stdout.close()
        stop_process(self.process)


class AckWatch:
    """Every signed ack central sends the desks, in the order they arrive (checked against central's key)."""

    def __init__(self, broker: PersistentBroker) -> None:
        self.acks: queue.Queue[Ack] = queue.Queue()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"ack-watch-{next(_ids)}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.acks.put(Ack.from_signed(m.payload, CENTRAL_PUBLIC))
        self.client.connect(broker.host, broker.port)
        for desk in DESKS:
            self.client.subscribe(ack_topic(desk), qos=1)
        self.client.loop_start()

    def drain(self) -> list[Ack]:
        got = []
        while not self.acks.empty():
            got.append(self.acks.get_nowait())
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def central_toml(root: Path, database: str, broker: PersistentBroker, command_key: Path,
                 ca_dir: Path | None = None) -> Path:
    """Central's settings; with ``ca_dir``, also the TUF repository and a lineage key, all under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    config = root.parent / f"{root.name}.toml"
    publish = (f'[publish]\nrepo_dir = "{root / "repo"}"\nlineage_keys = ["{root / "lineage" / "national.key"}"]\n'
               if ca_dir else "")
    config.write_text(
        f'data_dir = "{root / "data"}"\ndatabase = "{database}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "central-drill"\n'
        f'[ingest]\nack_interval_s = 0.1\n[web]\nsecret_key = "{SECRET}"\n{publish}'
        f'[fleet]\ncommand_key = "{command_key}"\n' + (f'ca_dir = "{ca_dir}"\n' if ca_dir else ""))
    return config


def start_ingest(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / f"{config.stem}-ingest.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "central", "ingest", "--config", str(config)], cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def settled(url: str, total: int, desks: tuple[str, ...] = DESKS) -> bool:
    store = AuditStore(url)
    try:
        heads = [store.head(desk) for desk in desks]
        return all(h is not None and h.contiguous_seq == total and h.checkpoint_seq == total for h in heads)
    finally:
        store.close()


def tuf_client(repo: Path, metadata: Path):
    from tuf.ngclient import Updater

    (metadata.parent / "downloads").mkdir(parents=True, exist_ok=True)
    return Updater(str(metadata), BASE + "metadata/", str(metadata.parent / "downloads"), BASE + "targets/",
                   FolderFetcher(repo), bootstrap=None)  # None: start from the root.json it trusts locally


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PersistentBroker]:
    server = PersistentBroker(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


def test_restore_drill_through_the_broker_loses_nothing_stores_nothing_twice_and_publishes_above(
        tmp_path, broker, postgres, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    old_url, new_url = postgres.create_database(), postgres.create_database()
    pki = FleetPki.create(old / "fleet")
    command_key, _ = write_command_key(old / "keys")  # the key the stand-in desks trust
    config = central_toml(old, old_url, broker, command_key, pki.ca_dir)
    assert publish_main(["init", "--repo", str(old / "repo"), "--root-keys-dir", str(tmp_path / "offline")]) == 0
    desks = [Desk(tmp_path / d, d, broker) for d in DESKS]
    registry = RegistryStore(old_url)
    for desk in desks:
        key = public_key_from_bytes((desk.data / PUBLIC_NAME).read_bytes())
        registry.register_device(desk.device_id, public_key_hex(key),
                                 wrap_public_key_hex=wrap_hex(X25519PrivateKey.generate().public_key()))
    registry.close()
    lineage = old / "lineage" / "national.key"
    lineage.parent.mkdir()
    write_key_file(lineage, library_key := new_key())
    (tmp_path / "build").mkdir()
    v1 = build_library(tmp_path / "build" / "v1.db", library_key, 1)
    assert publish_main(["--config", str(config), "publish", "--repo", str(old / "repo"), "--file", str(v1),
                         "--kind", "full", "--key-file", str(lineage)]) == 0
    desk_tuf = tmp_path / "desk-tuf" / "metadata"  # a desk's python-tuf client, trusting what was published
    desk_tuf.mkdir(parents=True)
    shutil.copyfile(old / "repo" / "metadata" / "1.root.json", desk_tuf / "root.json")
    tuf_client(old / "repo", desk_tuf).refresh()
    trusted = {role: json.loads((desk_tuf / f"{role}.json").read_text())["signed"]["version"]
               for role in ("timestamp", "snapshot", "targets")}

    acks = AckWatch(broker)
    ingest = start_ingest(config)
    try:
        for desk in desks:
            desk.run_until(BEFORE)
        assert wait_for(lambda: settled(old_url, BEFORE), 60, step=0.3), "the first events were not all stored"
        assert wait_for(lambda: all(d.outbox_depth() == 0 for d in desks), 30, step=0.3)
        health = HealthStore(old_url)
        for desk in desks:
            health.record_health(heartbeat(desk.device_id, library_version=1))
        health.close()
        (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
        backup = tmp_path / "backup"
        assert central_main(["backup", "--config", str(config), "--out", str(backup), "--passphrase-file",
                             str(tmp_path / "passphrase"), "--pg-bin", str(PG_BIN)]) == 0  # while it runs
        acked_before = {a.device_id: a.events_through for a in acks.drain()}
        assert acked_before == dict.fromkeys(DESKS, BEFORE)

        # Central is lost: the ingest stops, the database is dropped, every folder is deleted.
        stop_process(ingest)
        name = old_url.split("@/")[1].split("?")[0]
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        shutil.rmtree(old)
        for desk in desks:  # the custody suites carry on while central is down
            desk.run_until(DOWN)
        assert all(d.outbox_depth() >= DOWN - BEFORE for d in desks)

        new_config = central_toml(new, new_url, broker, new / "keys" / "fleet-command.pem", new / "fleet-ca")
        assert central_main(["restore", "--config", str(new_config), "--from", str(backup), "--passphrase-file",
                             str(tmp_path / "passphrase"), "--pg-bin", str(PG_BIN)]) == 0
        ingest = start_ingest(new_config)
        assert wait_for(lambda: settled(new_url, DOWN), 60, step=0.3), "events sent while central was down are missing"
        for desk in desks:
            desk.run_until(AFTER)
        assert wait_for(lambda: settled(new_url, AFTER), 60, step=0.3), "events sent after the restore are missing"
        assert wait_for(lambda: all(d.outbox_depth() == 0 for d in desks), 30, step=0.3), "acks did not resume"
    finally:
        stop_process(ingest)
        for desk in desks:
            desk.stop()
        acks.close()

    # Exactly once, nothing missing, counted by (device, seq); every chain and checkpoint verifies.
    with psycopg.connect(new_url) as conn:
        rows = conn.execute("SELECT device_id, seq, count(*) FROM audit_events GROUP BY device_id, seq").fetchall()
    assert sorted((d, s) for d, s, _n in rows) == [(d, s) for d in DESKS for s in range(1, AFTER + 1)]
    assert {n for _d, _s, n in rows} == {1}
    store = AuditStore(new_url)
    assert store.findings() == [] and all(store.gaps(d) == [] for d in DESKS)
    store.close()
    export = tmp_path / "restored.jsonl"
    assert audit_main(["export", "--database", new_url, "--out", str(export)]) == 0
    ok, lines = verify_file(export, {})
    assert ok, lines
    # The acks after the restore carry on from the backed-up ones: none goes back, the last covers everything.
    after = acks.drain()
    for desk in DESKS:
        through = [a.events_through for a in after if a.device_id == desk]
        assert through and min(through) >= acked_before[desk] and through == sorted(through), through
        assert through[-1] == AFTER

    # A library published from the restored repository is above what every desk holds, and a desk's TUF client
    # that trusted the pre-backup metadata accepts it.
    v2 = build_library(tmp_path / "build" / "v2.db", read_key_file(new / "lineage" / "national.key"), 2)
    capsys.readouterr()
    assert publish_main(["--config", str(new_config), "publish", "--repo", str(new / "repo"), "--file", str(v2),
                         "--kind", "full", "--key-file", str(new / "lineage" / "national.key")]) == 0
    out = capsys.readouterr()
    assert "(library version 2)" in out.out and "Note:" not in out.err  # the lineage key is where backups find it
    health = HealthStore(new_url)
    assert max(beat["library_version"] for beat in health.latest_health().values()) == 1
    health.close()
    updater = tuf_client(new / "repo", desk_tuf)
    updater.refresh()  # raises on any rollback of timestamp, snapshot or targets
    published = TufRepository(new / "repo", PublishSettings()).published()
    v2_name = next(name for name, info in published.items() if info.library_version == 2)
    assert updater.get_targetinfo(v2_name) is not None
    now = {role: json.loads((desk_tuf / f"{role}.json").read_text())["signed"]["version"]
           for role in ("timestamp", "snapshot", "targets")}
    assert all(now[role] > trusted[role] for role in trusted), (trusted, now)


class CommandWatch:
    """The fleet commands central publishes to one desk, as the broker delivers them (to replay one)."""

    def __init__(self, broker: PersistentBroker, device_id: str) -> None:
        self.payloads: queue.Queue[bytes] = queue.Queue()
        self.topic = fleet_command_topic(device_id)
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"command-watch-{next(_ids)}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.payloads.put(m.payload)
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(self.topic, qos=1)
        self.client.loop_start()

    def publish(self, payload: bytes) -> None:
        self.client.publish(self.topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def central_events(url: str, device_id: str) -> list[dict]:
    store = AuditStore(url)
    try:
        return sorted(store.query_oldest_first(EventFilter(device_id=device_id)), key=lambda r: int(r["seq"]))
    finally:
        store.close()


def max_seq(url: str, device_id: str) -> int:
    store = AuditStore(url)
    try:
        head = store.head(device_id)
        return 0 if head is None else head.max_seq
    finally:
        store.close()


def test_after_a_restore_a_signed_resend_request_brings_back_every_lost_event_once_and_forgeries_are_refused(
        tmp_path, broker):
    """A restore from a backup older than the last ack leaves a gap, shown, never silent; then the step after a
    restore (docs/operations.md): ``central devices request-resend --since <backup time>``.
    The desk queues again what it logged since then; central stores what it lost, drops what it kept as
    duplicates, and the desk's chain is whole again. A forged request and a replay of the real one are refused
    and recorded, at the desk and so at central."""
    old, new = tmp_path / "old", tmp_path / "new"
    command_key, _ = write_command_key(old / "keys")
    old_url, new_url = f"sqlite:///{old / 'data' / 'central.db'}", f"sqlite:///{new / 'data' / 'central.db'}"
    config = central_toml(old, old_url, broker, command_key)
    desk = Desk(tmp_path / "desk-resend", "desk-resend", broker)
    only = (desk.device_id,)
    registry = RegistryStore(old_url)
    registry.register_device(desk.device_id, public_key_hex(public_key_from_bytes((desk.data / PUBLIC_NAME)
                                                                                  .read_bytes())))
    registry.close()
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    ingest = start_ingest(config)
    watch = CommandWatch(broker, desk.device_id)
    try:
        desk.run_until(6)
        since = datetime.now(UTC)  # events 7.. are logged after it: 7-10 are in the backup, 11-15 are not
        desk.run_until(10)
        assert wait_for(lambda: settled(old_url, 10, only), 60, step=0.3)
        assert central_main(["backup", "--config", str(config), "--out", str(tmp_path / "backup"),
                             "--passphrase-file", str(tmp_path / "passphrase")]) == 0
        desk.run_until(15)  # acknowledged after the backup: gone from the desk's outbox, lost by the restore
        assert wait_for(lambda: settled(old_url, 15, only) and desk.outbox_depth() == 0, 60, step=0.3)
        stop_process(ingest)
        shutil.rmtree(old)
        new_config = central_toml(new, new_url, broker, new / "keys" / "fleet-command.pem")
        assert central_main(["restore", "--config", str(new_config), "--from", str(tmp_path / "backup"),
                             "--passphrase-file", str(tmp_path / "passphrase")]) == 0
        ingest = start_ingest(new_config)
        desk.run_until(20)
        assert wait_for(lambda: max_seq(new_url, desk.device_id) == 20, 60, step=0.3)
        # What a backup cannot give back: events central acknowledged after it was taken. The desk dropped them
        # from its outbox (its log keeps them), so the restored central sees a gap: it stores what comes after,
        # acknowledges nothing past the gap, and the desk keeps those queued (its outbox grows: the
        # RfrOutboxGrowing alert), so the loss is visible on /audit and in the metrics, not silent.
        store = AuditStore(new_url)
        try:
            head = store.head(desk.device_id)
            assert head is not None and head.contiguous_seq == 10  # acknowledged no further than the backup
            assert store.gaps(desk.device_id) == [(11, 15)]  # what /audit shows for the desk
            assert store.count() == 15
        finally:
            store.close()
        assert desk.outbox_depth() >= 5  # 16..20 stay queued on the desk: central cannot acknowledge past a gap

        assert central_main(["devices", "request-resend", "--config", str(new_config), "--since", since.isoformat(),
                             "--device", desk.device_id, "--by", "restore drill"]) == 0

        # Event 21 is the desk's record of the accepted request; every event arrives, each once.
        assert wait_for(lambda: settled(new_url, 21, only) and desk.outbox_depth() == 0, 60, step=0.3)
        store = AuditStore(new_url)
        try:
            head = store.head(desk.device_id)
            assert head is not None and head.contiguous_seq == 21 and store.gaps(desk.device_id) == []
            assert store.count() == 21 and head.duplicates >= 4  # 7-10 came again and were dropped
            assert store.findings(device_id=desk.device_id) == []  # the chain links, checkpoints match
        finally:
            store.close()
        resent = central_events(new_url, desk.device_id)[-1]
        assert resent["type"] == "events_resent" and resent["details"]["from_seq"] == 7
        log = ResendLog(new_url)
        assert [(r["device_id"], r["requested_by"], r["sent"]) for r in log.requests()] == [
            (desk.device_id, "restore drill", 1)]
        log.close()

        # A forgery (signed with another key) and a replay of the real request: refused and recorded.
        real = watch.payloads.get(timeout=10)
        forged = FleetCommand.sign(FORGER, desk.device_id, "resend", since=since)
        watch.publish(forged.to_bytes())
        watch.publish(real)
        assert wait_for(lambda: settled(new_url, 23, only), 60, step=0.3)
        refused = central_events(new_url, desk.device_id)[-2:]
        assert [r["type"] for r in refused] == ["request_refused", "request_refused"]
        reasons = [r["details"]["reason"] for r in refused]
        assert "not signed by central" in reasons[0] and "already used" in reasons[1]
        store = AuditStore(new_url)
        assert store.count() == 23  # the two refusals, and nothing else logged (the replay's refusal names why)
        store.close()
    finally:
        watch.close()
        stop_process(ingest)
        desk.stop()
