"""Audit ingest benchmark: signed, chained events from 20 simulated devices through Mosquitto into central.

    .venv/bin/python bench/ingest.py                      # the full run (about 4 minutes)
    .venv/bin/python bench/ingest.py --per-device 200 --backlog 4000 --drain 0   # quick run

What runs, all real: a Mosquitto with persistence on (own config and port,
``max_queued_messages 0`` so an offline central's queue is bounded only by
memory), central's ingest as its own process (``python -m central ingest``:
validation, chain checks, checkpoint signature checks, batched transactions,
acks back to the devices) with 1, 2 or 4 worker processes (``[ingest]
workers``, an MQTT v5 shared subscription), and 20 simulated devices in 4
publisher processes, each a paho client with a fixed client id, a persistent
session and QoS 1, publishing events sealed into a per-device hash chain
(``testbed.chain_writer``) with an Ed25519-signed checkpoint every 100 events.

1. Live throughput: events per second from the first publish until every
   event is stored, SQLite with 1 worker, then PostgreSQL (a throwaway cluster
   from ``testbed/postgres.py``) with 1, 2 and 4 workers
   (``events_per_s_postgres_w1/w2/w4`` and their ratios to w1). Publishers,
   broker and workers share the machine's cores.
2. Backlog on PostgreSQL: with central stopped (its workers' sessions kept by
   the broker), the devices publish ``--backlog`` events; then 1, 2 or 4
   workers drain them, timed from the first stored event to the last, with no
   publisher running.
3. Drain: 100,000 events queued during an outage (a one-hour outage at ~28
   events/s across the fleet), drained by one worker into SQLite.

``ingest_cpu_ms_per_event`` is the CPU time central's processes used per
event (the process and its workers, from /proc): on a machine shared with
other jobs it is steadier than events/s, and it shows what each further
worker costs.

``lost`` and ``duplicated`` are counted from the stores afterwards: events
published but not stored, and stored (device, seq) pairs more than once; each
device's chain must be gap-free and its last signed checkpoint verified. Each
run has its own client ids and shared group, and ends its sessions at the
broker afterwards. The last line of output is JSON.
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


_runs = iter(range(1, 1_000_000))


class Central:
    """``python -m central ingest`` as a process, on a given store, with ``workers`` worker processes.

    Each run gets its own client ids and shared group: a session left at the broker by an earlier run
    would otherwise take its turn of this run's messages."""

    def __init__(self, workdir: Path, broker: PersistentBroker, url: str, workers: int) -> None:
        run = next(_runs)
        self.config = workdir / f"central-{run}.toml"
        self.client_id = f"bench-central-{run}"
        self.workers = workers
        group = f'\nshared_group = "bench{run}"' if workers > 1 else ""
        self.config.write_text(
            f'data_dir = "{workdir}"\ndatabase = "{url}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "{self.client_id}"\n'
            f"[ingest]\nworkers = {workers}{group}\n"
            '[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n'
            f'[fleet]\ncommand_key = "{command_key(workdir)}"\n')
        self.log = workdir / f"central-{run}.log"
        self.broker = broker
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_ids(self) -> list[str]:
        return [self.client_id] if self.workers == 1 else [f"{self.client_id}-{i + 1}" for i in range(self.workers)]

    def start(self, wait: bool = True) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "central", "ingest", "--config", str(self.config)],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        if not wait:
            return
        while b'"event":"ingesting"' not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"central ingest did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by central's process and its worker processes: unlike
        wall-clock time, not stretched by other jobs on a shared machine."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry.name) == self.proc.pid or int(fields[1]) == self.proc.pid:
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None

    def end_sessions(self) -> None:
        """Connect once with each worker's client id and a clean start, so the broker drops its session."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        for client_id in self.client_ids:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
            c.connect(self.broker.host, self.broker.port, clean_start=True)
            c.loop_start()
            time.sleep(0.2)
            c.disconnect()
            c.loop_stop()


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
    cpu0 = central.cpu_s() if central.proc else 0.0
    prefix_filter = f"{prefix}-%"
    count_sql = "SELECT COUNT(*) FROM audit_events WHERE device_id LIKE ?"
    if offline:
        for p in procs:
            p.join()
        queued_s = time.monotonic() - t0
        central.start(wait=False)
        # The clock starts at the first stored event: the workers' start-up (spawning processes,
        # connecting) is not ingest.
        while store._scalar(count_sql, (prefix_filter,)) == 0:
            time.sleep(0.01)
        t0 = time.monotonic()
        cpu0 = central.cpu_s()  # the workers' start-up (imports, connecting) is not counted either
    while store._scalar(count_sql, (prefix_filter,)) < expected:
        if time.monotonic() - t0 > 1800:
            break
        time.sleep(0.05)
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
    cpu_s = central.cpu_s() - cpu0
    central.stop()
    central.end_sessions()
    store.close()
    out = {"workers": workers, "events": expected, "seconds": round(elapsed, 2),
           "events_per_s": round(expected / elapsed, 1),
           "ingest_cpu_ms_per_event": round(1000 * cpu_s / expected, 3),
           "lost": expected - distinct, "duplicated": stored - distinct, "findings": findings,
           "all_chains_complete_and_signed": all(h.contiguous_seq == per_device == h.checkpoint_seq for h in heads)}
    if offline:
        out["queue_fill_s"] = round(queued_s, 2)
    return out


def _ratios(results: dict[str, dict[str, object]], kind: str) -> dict[str, float]:
    base = float(results[f"{kind}_w1"]["events_per_s"])  # type: ignore[arg-type]
    return {f"{kind}_w{n}_vs_w1": round(float(results[f"{kind}_w{n}"]["events_per_s"]) / base, 2)  # type: ignore[arg-type]
            for n in WORKER_COUNTS if f"{kind}_w{n}" in results}


WORKER_COUNTS = (1, 2, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-device", type=int, default=1000, help="events per device for the throughput runs")
    parser.add_argument("--backlog", type=int, default=20_000,
                        help="events queued while the PostgreSQL ingest is down, drained by 1, 2 and 4 workers")
    parser.add_argument("--drain", type=int, default=100_000, help="events queued during the outage (SQLite, 1 "
                        "worker); 0 skips it")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rfr-bench-ingest-"))
    os.chmod(workdir, 0o755)
    broker = PersistentBroker(workdir / "broker", autosave_s=60)
    broker.start()
    from testbed.postgres import start_postgres

    pg = start_postgres()
    results: dict[str, dict[str, object]] = {}
    load_before = os.getloadavg()

    def record(name: str, out: dict[str, object]) -> None:
        results[name] = out
        print(json.dumps({name: out}), flush=True)

    try:
        if not args.skip_sqlite:
            record("sqlite_w1", _run(broker, f"sqlite:///{workdir / 'central.db'}", workdir, "tp-sqlite",
                                     args.per_device, offline=False, workers=1))
        # Live: the desks publish while the workers store (publishers, broker and workers share the cores).
        for n in WORKER_COUNTS:
            record(f"postgres_w{n}", _run(broker, pg.create_database(), workdir, f"tp-pg-w{n}", args.per_device,
                                          offline=False, workers=n))
        # Backlog: queued while central was down, then drained by the workers alone (no publisher running).
        for n in WORKER_COUNTS:
            record(f"backlog_postgres_w{n}", _run(broker, pg.create_database(), workdir, f"bl-pg-w{n}",
                                                  args.backlog // DEVICES, offline=True, workers=n))
        if args.drain:
            record("drain", _run(broker, f"sqlite:///{workdir / 'drain.db'}", workdir, "drain",
                                 args.drain // DEVICES, offline=True, workers=1))
    finally:
        broker.stop()
        pg.stop()
    runs = list(results.values())
    summary: dict[str, object] = {
        "events_per_s_sqlite": results["sqlite_w1"]["events_per_s"] if "sqlite_w1" in results else None,
        **{f"events_per_s_postgres_w{n}": results[f"postgres_w{n}"]["events_per_s"] for n in WORKER_COUNTS},
        **_ratios(results, "postgres"),
        **{f"backlog_events_per_s_postgres_w{n}": results[f"backlog_postgres_w{n}"]["events_per_s"]
           for n in WORKER_COUNTS},
        **_ratios(results, "backlog_postgres"),
        **{f"ingest_cpu_ms_per_event_postgres_w{n}": results[f"backlog_postgres_w{n}"]["ingest_cpu_ms_per_event"]
           for n in WORKER_COUNTS},
        "drain_100k_s": results["drain"]["seconds"] if "drain" in results else None,
        "lost": sum(int(r["lost"]) for r in runs),  # type: ignore[call-overload]
        "duplicated": sum(int(r["duplicated"]) for r in runs),  # type: ignore[call-overload]
        "findings": sum(int(r["findings"]) for r in runs),  # type: ignore[call-overload]
        "all_chains_complete_and_signed": all(r["all_chains_complete_and_signed"] for r in runs),
        "devices": DEVICES,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
