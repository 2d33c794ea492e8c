"""Audit ingest benchmark: signed, chained events from 20 simulated devices through Mosquitto into central.

    .venv/bin/python bench/ingest.py                      # 20 x 1,000 events per store, 100,000 drain
    .venv/bin/python bench/ingest.py --per-device 200 --drain 10000   # quick run

What runs, all real: a Mosquitto with persistence on (own config and port,
``max_queued_messages 0`` so an offline central's queue is bounded only by
memory), central's ingest as its own process (``python -m central ingest``:
validation, chain checks, checkpoint signature checks, batched transactions,
acks back to the devices), and 20 simulated devices in 4 publisher processes,
each a paho client with a fixed client id, a persistent session and QoS 1,
publishing events sealed into a per-device hash chain with an Ed25519-signed
checkpoint every 100 events.

1. Throughput, for SQLite and then PostgreSQL (a throwaway cluster from
   ``testbed/postgres.py``): events per second from the first publish until
   every event is stored.
2. Drain: with central stopped (its session kept by the broker), the 20
   devices publish 100,000 events: a one-hour outage at ~28 events/s across
   the fleet. Then central starts and the time until all are stored is
   measured (SQLite).

``lost`` and ``duplicated`` are counted from the stores afterwards: events
published but not stored, and stored (device, seq) pairs more than once. The
last line of output is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.audit.store import AuditStore  # noqa: E402
from central.fleet.registry_store import RegistryStore  # noqa: E402
from central.fleet.revoke import generate_command_key  # noqa: E402
from testbed.chain_writer import ChainWriter  # noqa: E402
from testbed.mosquitto import PersistentBroker  # noqa: E402

DEVICES = 20
PUBLISHERS = 4
CHECKPOINT_EVERY = 100


def _publish(host: str, port: int, devices: list[tuple[str, str]], count: int, ready: object) -> None:
    """One publisher process: build each device's chain, publish it all at QoS 1, wait for every PUBACK."""
    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from core.topics import audit_topic, checkpoint_topic

    plans = []
    for device_id, key_hex in devices:
        w = ChainWriter(device_id, key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex)))
        msgs = []
        for i in range(count):
            msgs.append((audit_topic(device_id), w.event(actor=f"pc{i % 7}", candidates=i % 10).to_bytes()))
            if w.seq % CHECKPOINT_EVERY == 0 or i == count - 1:
                msgs.append((checkpoint_topic(device_id), w.checkpoint().to_bytes()))
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device_id}", protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(host, port, clean_start=False, properties=props)
        client.loop_start()
        plans.append((client, msgs))
    ready.wait()  # type: ignore[attr-defined]
    infos = [c.publish(t, p, qos=1) for c, msgs in plans for t, p in msgs]
    for info in infos:
        info.wait_for_publish(timeout=600)
    for client, _ in plans:
        client.disconnect()
        client.loop_stop()


def command_key(workdir: Path) -> Path:
    """Central's signing key for acks (ingest will not start without one), made once per bench folder."""
    key = workdir / "fleet-command.pem"
    if not key.exists():
        generate_command_key(key)
    return key


class Central:
    """``python -m central ingest`` as a process, on a given store."""

    def __init__(self, workdir: Path, broker: PersistentBroker, url: str, workers: int) -> None:
        self.config = workdir / f"central-{abs(hash(url))}.toml"
        group = '\nshared_group = "bench"' if workers > 1 else ""
        self.config.write_text(
            f'data_dir = "{workdir}"\ndatabase = "{url}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "bench-central-{abs(hash(url))}"\n'
            f"[ingest]\nworkers = {workers}{group}\n"
            '[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n'
            f'[fleet]\ncommand_key = "{command_key(workdir)}"\n')
        self.log = workdir / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "central", "ingest", "--config", str(self.config)],
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "central ingest: ..." once the workers are connected

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            if self.proc.stdout:
                self.proc.stdout.close()


def _run(broker: PersistentBroker, url: str, workdir: Path, prefix: str, per_device: int, *, offline: bool,
         workers: int) -> dict[str, float]:
    """Publish ``per_device`` events from 20 devices; time until all are stored. ``offline``: central is down
    while they are published (the outage), and the clock starts when it comes back."""
    store = AuditStore(url)
    writers = [ChainWriter(f"{prefix}-{i:02d}") for i in range(DEVICES)]
    registry = RegistryStore(url)
    for w in writers:
        registry.register_device(w.device_id, w.public_hex)
    registry.close()
    central = Central(workdir, broker, url, workers)
    central.start()  # creates the persistent session and subscriptions
    if offline:
        central.stop()
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    devices = [(w.device_id, w.key.private_bytes_raw().hex()) for w in writers]
    procs = [ctx.Process(target=_publish, args=(broker.host, broker.port, devices[i::PUBLISHERS], per_device, ready))
             for i in range(PUBLISHERS)]
    for p in procs:
        p.start()
    time.sleep(3)  # let every device connect before the clock starts
    expected = DEVICES * per_device
    ready.set()
    t0 = time.monotonic()
    if offline:
        for p in procs:
            p.join()
        queued_s = time.monotonic() - t0
        t0 = time.monotonic()
        central.start()
    prefix_filter = f"{prefix}-%"
    count_sql = "SELECT COUNT(*) FROM audit_events WHERE device_id LIKE ?"
    while store._scalar(count_sql, (prefix_filter,)) < expected:
        if time.monotonic() - t0 > 1800:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join()
    time.sleep(1)
    stored = int(store._scalar(count_sql, (prefix_filter,)))
    distinct = int(store._scalar(
        "SELECT COUNT(*) FROM (SELECT DISTINCT device_id, seq FROM audit_events WHERE device_id LIKE ?) d",
        (prefix_filter,)))
    heads = [h for h in store.heads() if h.device_id.startswith(prefix)]
    findings = len(store.findings(limit=10_000))
    central.stop()
    store.close()
    out = {"events": expected, "seconds": round(elapsed, 2), "events_per_s": round(expected / elapsed, 1),
           "lost": expected - distinct, "duplicated": stored - distinct, "findings": findings,
           "all_chains_complete_and_signed": all(h.contiguous_seq == per_device == h.checkpoint_seq for h in heads)}
    if offline:
        out["queue_fill_s"] = round(queued_s, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-device", type=int, default=1000, help="events per device for the throughput runs")
    parser.add_argument("--drain", type=int, default=100_000, help="events queued during the outage")
    parser.add_argument("--workers", type=int, default=1, help="ingest workers (shared subscription if > 1)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rfr-bench-ingest-"))
    os.chmod(workdir, 0o755)
    broker = PersistentBroker(workdir / "broker", autosave_s=60)
    broker.start()
    pg = None
    results: dict[str, object] = {"uptime_before": os.getloadavg()}
    try:
        sqlite_url = f"sqlite:///{workdir / 'central.db'}"
        results["sqlite"] = _run(broker, sqlite_url, workdir, "tp-sqlite", args.per_device, offline=False,
                                 workers=args.workers)
        print(json.dumps({"sqlite": results["sqlite"]}), flush=True)
        if not args.skip_postgres:
            from testbed.postgres import start_postgres

            pg = start_postgres()
            results["postgres"] = _run(broker, pg.create_database(), workdir, "tp-pg", args.per_device,
                                       offline=False, workers=args.workers)
            print(json.dumps({"postgres": results["postgres"]}), flush=True)
        drain_url = f"sqlite:///{workdir / 'drain.db'}"
        results["drain"] = _run(broker, drain_url, workdir, "drain", args.drain // DEVICES, offline=True,
                                workers=args.workers)
        print(json.dumps({"drain": results["drain"]}), flush=True)
    finally:
        broker.stop()
        if pg:
            pg.stop()
    runs = [r for k, r in results.items() if isinstance(r, dict)]
    summary = {
        "events_per_s_sqlite": results["sqlite"]["events_per_s"],  # type: ignore[index]
        "events_per_s_postgres": results["postgres"]["events_per_s"] if "postgres" in results else None,  # type: ignore[index]
        "drain_100k_s": results["drain"]["seconds"],  # type: ignore[index]
        "drain_events": results["drain"]["events"],  # type: ignore[index]
        "lost": sum(r["lost"] for r in runs),
        "duplicated": sum(r["duplicated"] for r in runs),
        "findings": sum(r["findings"] for r in runs),
        "devices": DEVICES,
        "workers": args.workers,
        "load_before": results["uptime_before"],
        "load_after": os.getloadavg(),
    }
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
