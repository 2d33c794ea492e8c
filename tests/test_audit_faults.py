"""Faults survived with real processes: every event reaches central exactly once, in order, verified.

Each test runs a stand-in appliance process (``tests/audit_device.py``: the real audit log,
outbox and MQTT sender), central's real ingest process (``python -m central ingest``) and a
real Mosquitto with persistence, then breaks one of them mid-flow: the broker killed with
``kill -9`` and restarted; the network between device and broker cut through a TCP proxy
for ``RFR_FAULT_CUT_S`` seconds (default 30: the stand-in device's keepalive is 5 s, so its client
declares the link dead after about 10 s without a ping answer and the broker after 7.5 s; the test checks
the device did, while events keep being recorded); the appliance killed with ``kill -9``
mid-publish and restarted; central killed mid-ingest and restarted. Afterwards central holds
events 1..N exactly once, the gap-free head is N, the device's signed checkpoint at N matches,
there are no findings, a full export verifies offline, and the device's outbox is empty.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.storage.signing_key import PUBLIC_NAME, load_or_create_signing_key
from central.audit.__main__ import verify_file
from central.audit.export import to_jsonl
from central.audit.filter import EventFilter
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from testbed.mosquitto import PersistentBroker
from tests.audit_support import TcpProxy, wait_for
from tests.fleet_key import write_command_key

ROOT = Path(__file__).resolve().parents[1]
CUT_S = float(os.environ.get("RFR_FAULT_CUT_S", "30"))
_ids = itertools.count(1)


@dataclass
class Rig:
    tmp: Path
    broker: PersistentBroker
    device_id: str = field(default_factory=lambda: f"desk-fault-{next(_ids)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    central: subprocess.Popen[bytes] | None = None
    device: subprocess.Popen[bytes] | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.tmp / 'central' / 'central.db'}"

    def start_central(self) -> None:
        config = self.tmp / "central.toml"
        command_key, _public = write_command_key(self.tmp / "central-key")
        config.write_text(
            f'data_dir = "{self.tmp / "central"}"\n'
            f'[mqtt]\nhost = "{self.broker.host}"\nport = {self.broker.port}\nclient_id = "central-{self.device_id}"\n'
            '[ingest]\nack_interval_s = 0.1\n[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n'
            f'[fleet]\ncommand_key = "{command_key}"\n')
        log = (self.tmp / "central.log").open("ab")
        self.central = subprocess.Popen([sys.executable, "-m", "central", "ingest", "--config", str(config)],
                                        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(self.central)

    def register(self) -> None:
        """Provisioning: make the device key, register it with central's command."""
        data = self.tmp / "device"
        load_or_create_signing_key(data)
        result = subprocess.run([sys.executable, "-m", "central", "devices", "register", "--id", self.device_id,
                                 "--public-key", str(data / PUBLIC_NAME), "--database", self.db_url],
                                cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr

    def start_device(self, total: int, interval: float, port: int | None = None) -> None:
        log = (self.tmp / "device.log").open("ab")
        self.device = subprocess.Popen(
            [sys.executable, "-m", "tests.audit_device", str(self.tmp / "device"), self.device_id, self.broker.host,
             str(port or self.broker.port), str(total), str(interval)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        log.close()
        self.procs.append(self.device)

    def recorded_at_least(self, n: int) -> None:
        """Block until the device process has committed ``n`` events (it prints each seq)."""
        assert self.device and self.device.stdout
        for line in self.device.stdout:
            if line.strip() == b"recorded" or (line.strip().isdigit() and int(line) >= n):
                return
        raise AssertionError(f"device exited early: {(self.tmp / 'device.log').read_text()[-2000:]}")

    def kill9(self, proc: subprocess.Popen[bytes] | None) -> None:
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def assert_everything_arrived_once(self, total: int, timeout: float = 60) -> None:
        store = AuditStore(self.db_url)
        registry = RegistryStore(self.db_url)
        try:
            def settled() -> bool:
                head = store.head(self.device_id)
                return head is not None and head.contiguous_seq == total and head.checkpoint_seq == total
            assert wait_for(settled, timeout, step=0.2), (store.head(self.device_id), self.logs())
            assert store.count() == total
            rows = store.query(EventFilter(device_id=self.device_id), limit=total + 10)
            assert sorted(r["seq"] for r in rows) == list(range(1, total + 1))  # each exactly once
            assert store.findings() == [] and store.gaps(self.device_id) == []
            export = self.tmp / "export.jsonl"
            export.write_text("".join(to_jsonl(store.export_records(EventFilter(), registry.registered_devices()), {})))
            ok, lines = verify_file(export, {})
            assert ok, lines
        finally:
            registry.close()
            store.close()
        # The device keeps nothing central has not confirmed, and keeps everything else.
        assert self.device is not None
        assert wait_for(lambda: self._outbox_depth() == 0, 20, step=0.3)

    def _outbox_depth(self) -> int:
        db = DeviceDatabase(self.tmp / "device")
        try:
            return Outbox(db).depth()
        finally:
            db.close()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in (self.tmp / "central.log", self.tmp / "device.log")
                         if p.exists())

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    broker = PersistentBroker(tmp_path / "broker")
    broker.start()
    r = Rig(tmp=tmp_path, broker=broker)
    r.register()
    yield r
    r.close()
    broker.stop()


def test_broker_killed_and_restarted(rig: Rig) -> None:
    rig.start_central()
    rig.start_device(total=200, interval=0.01)
    rig.recorded_at_least(60)
    rig.broker.kill()
    time.sleep(2.0)  # searches go on while the broker is gone
    rig.broker.start()
    rig.recorded_at_least(200)
    rig.assert_everything_arrived_once(200)


def test_network_cut_between_device_and_broker(rig: Rig) -> None:
    proxy = TcpProxy((rig.broker.host, rig.broker.port))
    try:
        rig.start_central()
        total = 100 + int(CUT_S * 10)
        rig.start_device(total=total, interval=0.1, port=proxy.port)
        rig.recorded_at_least(50)
        proxy.cut()
        time.sleep(CUT_S)  # about 10 searches a second go on during the cut
        # The cut outlasted the keepalive: the device gave the link up, so it resumes a session, not a socket.
        assert "disconnected from broker" in (rig.tmp / "device.log").read_text(), rig.logs()
        proxy.restore()
        rig.recorded_at_least(total)
        rig.assert_everything_arrived_once(total)
    finally:
        proxy.close()


def test_appliance_killed_mid_publish_and_restarted(rig: Rig) -> None:
    rig.start_central()
    rig.start_device(total=400, interval=0.002)
    rig.recorded_at_least(150)
    rig.kill9(rig.device)  # mid-publish: events are being committed and sent as fast as possible
    rig.start_device(total=400, interval=0.002)
    rig.recorded_at_least(400)
    rig.assert_everything_arrived_once(400)


def test_central_killed_mid_ingest_and_restarted(rig: Rig) -> None:
    rig.start_central()
    rig.start_device(total=400, interval=0.003)
    rig.recorded_at_least(150)
    rig.kill9(rig.central)
    rig.recorded_at_least(300)  # events pile up at the broker and in the outbox meanwhile
    rig.start_central()
    rig.recorded_at_least(400)
    rig.assert_everything_arrived_once(400)
