"""Central's ingest on several worker processes (``[ingest] workers``), real PostgreSQL and Mosquitto.

``python -m central ingest`` runs with 2 or 3 worker processes in one MQTT v5 shared subscription; several
simulated desks publish interleaved signed chains, one desk partly backwards (a resend after a reconnect).
The broker deals one desk's events to every worker, so they are stored out of order by different processes.
Afterwards every event is stored once, every chain is gap-free, linked and matched by its signed checkpoint,
there are no findings, every desk was acked to its last event, and no ack ever claimed more than was
committed when it arrived. A worker killed with SIGKILL mid-stream is started again under its client id and
the broker hands it the messages it held: nothing is lost.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from core.audit.ack import Ack
from core.topics import ack_topic, audit_topic, checkpoint_topic
from testbed.chain_writer import ChainWriter
from tests.audit_support import wait_for
from tests.fleet_key import CENTRAL_PUBLIC, write_command_key

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count(1)
CHECKPOINT_EVERY = 50


@dataclass
class Desk:
    """A simulated desk: its signed chain, and central's acks as it receives them (checked against the store)."""

    writer: ChainWriter
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    acked_through: int = 0
    acked_hash: str = ""
    checkpoint_acked: int = 0
    ack_ahead_of_store: list[str] = field(default_factory=list)

    def take_ack(self, payload: bytes, store: AuditStore, lock: threading.Lock) -> None:
        ack = Ack.from_signed(payload, CENTRAL_PUBLIC)
        assert ack.device_id == self.writer.device_id
        with lock:
            head = store.head(ack.device_id)
        if head is None or head.contiguous_seq < ack.events_through:
            self.ack_ahead_of_store.append(f"ack through {ack.events_through}, stored {head}")
        if ack.events_through >= self.acked_through:  # a stale ack from a slower worker moves nothing back
            self.acked_through, self.acked_hash = ack.events_through, ack.head_hash
        self.checkpoint_acked = max(self.checkpoint_acked, ack.checkpoint_through)


def _chain(desk_id: str, count: int) -> Desk:
    desk = Desk(ChainWriter(desk_id))
    for i in range(count):
        desk.messages.append((audit_topic(desk_id), desk.writer.event(actor=f"pc{i % 5}", n=i).to_bytes()))
        if desk.writer.seq % CHECKPOINT_EVERY == 0 or i == count - 1:
            desk.messages.append((checkpoint_topic(desk_id), desk.writer.checkpoint().to_bytes()))
    return desk


class Central:
    """``python -m central ingest`` with ``workers`` processes, on PostgreSQL, in a shared subscription."""

    def __init__(self, tmp: Path, mosquitto, url: str, workers: int) -> None:
        n = next(_ids)
        command_key, _public = write_command_key(tmp / "central-key")
        self.config = tmp / "central.toml"
        self.config.write_text(
            f'data_dir = "{tmp / "central"}"\ndatabase = "{url}"\n'
            f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "central-w{n}-{os.getpid()}"\n'
            f'[ingest]\nworkers = {workers}\nshared_group = "ingest{n}x{os.getpid()}"\nack_interval_s = 0.1\n'
            '[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n'
            f'[fleet]\ncommand_key = "{command_key}"\n')
        self.log_path = tmp / "central.log"
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "central", "ingest", "--config", str(self.config)],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: '"event":"ingesting"' in self.log, 60), self.log
        assert wait_for(lambda: len(self.worker_pids()) == self.workers, 10), self.log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The worker processes (spawned children of central's process; not multiprocessing's tracker)."""
        assert self.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(int(entry.name))
        return sorted(found)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rig(tmp_path: Path, postgres, mosquitto) -> Iterator[tuple[str, AuditStore, RegistryStore]]:
    url = postgres.create_database()
    store, registry = AuditStore(url), RegistryStore(url)
    yield url, store, registry
    store.close()
    registry.close()


class Fleet:
    """Several desks on one MQTT client each: they publish QoS 1 and hear their acks."""

    def __init__(self, mosquitto, desks: list[Desk], store: AuditStore) -> None:
        self.desks, self._lock = desks, threading.Lock()
        self.clients: list[Client] = []
        for desk in desks:
            c = Client(CallbackAPIVersion.VERSION2, client_id=f"{desk.writer.device_id}-{os.getpid()}",
                       protocol=MQTTProtocolVersion.MQTTv5)
            c.max_inflight_messages_set(100)
            c.on_message = lambda _c, _u, m, d=desk: d.take_ack(m.payload, store, self._lock)
            c.connect(mosquitto.host, mosquitto.port)
            c.subscribe(ack_topic(desk.writer.device_id), qos=1)
            c.loop_start()
            self.clients.append(c)
        time.sleep(0.3)  # the ack subscriptions are in place

    def publish(self, plan: list[tuple[int, str, bytes]]) -> None:
        infos = [self.clients[i].publish(topic, payload, qos=1) for i, topic, payload in plan]
        for info in infos:
            info.wait_for_publish(timeout=30)

    def close(self) -> None:
        for c in self.clients:
            c.loop_stop()
            c.disconnect()


def _interleaved(desks: list[Desk], start: int, stop: int) -> list[tuple[int, str, bytes]]:
    """Round-robin across desks, message by message: what a fleet's traffic looks like at the broker."""
    plan = []
    for k in range(start, stop):
        for i, desk in enumerate(desks):
            if k < len(desk.messages):
                plan.append((i, *desk.messages[k]))
    return plan


def _assert_all_stored_once_verified_and_acked(store: AuditStore, desks: list[Desk], count: int) -> None:
    total = count * len(desks)  # the test's database holds only these desks' events
    assert wait_for(lambda: store.count() == total, 60), f"{store.count()} of {total} stored"
    distinct = store._scalar("SELECT COUNT(*) FROM (SELECT DISTINCT device_id, seq FROM audit_events) d")
    assert distinct == total  # nothing lost, nothing stored twice
    for desk in desks:
        d = desk.writer.device_id
        assert wait_for(lambda d=d: (h := store.head(d)) is not None and h.checkpoint_seq == count, 20), store.head(d)
        head = store.head(d)
        assert head is not None
        assert (head.contiguous_seq, head.max_seq, head.head_hash) == (count, count, desk.writer.head)
        assert store.gaps(d) == []
    assert store.findings() == []  # no broken link, no conflict, no checkpoint mismatch
    assert store.rejection_count() == 0
    for desk in desks:  # every event acked once stored, and no ack ahead of the commit
        assert wait_for(lambda desk=desk: desk.acked_through == count and desk.checkpoint_acked == count, 20), (
            desk.writer.device_id, desk.acked_through, desk.checkpoint_acked)
        assert desk.acked_hash == desk.writer.head
        assert desk.ack_ahead_of_store == []


def test_three_worker_processes_store_interleaved_out_of_order_chains_once_verified_and_acked(
        tmp_path: Path, mosquitto, rig) -> None:
    url, store, registry = rig
    count = 240
    desks = [_chain(f"wdesk{next(_ids)}-{i}", count) for i in range(5)]
    for desk in desks:
        registry.register_device(desk.writer.device_id, desk.writer.public_hex)
    # One desk sends its second half before its first (a resend after a reconnect arrives out of order).
    backwards = desks[0]
    half = len(backwards.messages) // 2
    backwards.messages = backwards.messages[half:] + backwards.messages[:half]
    central = Central(tmp_path, mosquitto, url, workers=3)
    central.start()
    fleet = Fleet(mosquitto, desks, store)
    try:
        fleet.publish(_interleaved(desks, 0, max(len(d.messages) for d in desks)))
        _assert_all_stored_once_verified_and_acked(store, desks, count)
        assert len(central.worker_pids()) == 3
        # The broker really dealt each desk's chain to several processes: a desk's events arrived out of order.
        assert sum(h.reordered for h in store.heads()) > 0
    finally:
        fleet.close()
        central.stop()
    assert central.proc is not None and central.proc.returncode == 0, central.log
    assert '"level":"error"' not in central.log, central.log


def test_a_worker_killed_mid_stream_is_restarted_and_loses_nothing(tmp_path: Path, mosquitto, rig) -> None:
    url, store, registry = rig
    count = 300
    desks = [_chain(f"kdesk{next(_ids)}-{i}", count) for i in range(4)]
    for desk in desks:
        registry.register_device(desk.writer.device_id, desk.writer.public_hex)
    central = Central(tmp_path, mosquitto, url, workers=2)
    central.start()
    fleet = Fleet(mosquitto, desks, store)
    try:
        before = central.worker_pids()
        longest = max(len(d.messages) for d in desks)
        fleet.publish(_interleaved(desks, 0, longest // 3))
        victim = before[0]
        published = threading.Thread(target=fleet.publish, args=(_interleaved(desks, longest // 3, longest),))
        published.start()  # the rest streams in while the worker dies: some lands in its session while it is gone
        os.kill(victim, signal.SIGKILL)
        published.join()
        assert wait_for(lambda: len(central.worker_pids()) == 2 and victim not in central.worker_pids(), 30), (
            central.log)
        _assert_all_stored_once_verified_and_acked(store, desks, count)
    finally:
        fleet.close()
        central.stop()
    assert '"event":"ingest_worker_died"' in central.log
    assert "(session present: True)" in central.log  # the replacement resumed the dead worker's session
