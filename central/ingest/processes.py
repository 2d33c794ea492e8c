"""Ingest workers as processes of their own, kept running: how central's ingest uses more than one core.

A worker's work is Python (parsing, hashing, signature checks, building SQL), and one Python process runs
one thread of it at a time, so workers as threads of one process would share a core. With ``[ingest]
workers`` above 1, ``python -m central serve`` and ``python -m central ingest`` start that many worker
processes (``spawn``, never a fork of a process holding threads and connections). Each is an
``AuditIngest`` with its own database connection and its own persistent MQTT session, client id
``<client_id>-<n>``, in the MQTT v5 shared subscription ``$share/<group>/...``, so the broker hands each
message to one of them.

Why a dead worker is started again at once, under the same client id: Mosquitto keeps handing a
disconnected member of a shared subscription its turn of new messages while its session lasts (they wait
in that session), and its unacknowledged ones stay there too. The replacement resumes the session and
receives all of them; nothing is lost meanwhile, since nothing was acknowledged that was not committed.
Until it is back, every desk's chain has a gap there and the acks stop short of it (desks keep their rows).
A worker that keeps dying is started again after a growing pause (at most a minute), and each death is
logged with its exit code.

Per-device order is not kept by routing (a shared subscription deals messages round-robin, not by
device): two workers may store one desk's events in any order. The store makes that harmless: each
batch locks the desk's head row (``central.audit.store``), so the chain walk, the checkpoints and the
ack each see every committed event of that desk, whichever worker stored it.

The workers' counts (connected, received, rejected) are in memory shared with this process, so
``/healthz`` and ``/metrics`` see them all (``IngestStatus``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Any

from central.settings import CentralSettings

logger = logging.getLogger(__name__)

_FIELDS = 3  # connected, received, rejected per worker
_SUPERVISE_S = 0.2
_COUNTS_S = 0.2
_RESTART_FIRST_S = 0.5
_RESTART_MAX_S = 60.0
_STABLE_S = 30.0  # a worker that ran this long before it died is started again at once


def worker_client_id(settings: CentralSettings, index: int) -> str:
    """The fixed client id of worker ``index`` (0-based): the broker keeps its session under this name."""
    if settings.ingest.workers == 1:
        return settings.mqtt.client_id
    return f"{settings.mqtt.client_id}-{index + 1}"


def run_worker(settings: CentralSettings, index: int, counts: Any, stop: Any, announce: bool) -> None:
    """One worker process: ingest until ``stop`` is set, the parent goes, or SIGTERM; then store the batch it
    holds, send the acks it owes and disconnect (the broker keeps the session)."""
    from central.audit.store import AuditStore
    from central.fleet.command_key import FollowedCommandKey
    from central.ingest.mqtt import AuditIngest
    from central.peer_review.review_key import load_review_key
    from core.log_format import configure_logging

    configure_logging("central")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    ended = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: ended.set())
    parent = os.getppid()
    assert settings.fleet.command_key is not None  # checked by the parent before it starts any worker
    command_key = FollowedCommandKey(settings.fleet.command_key)  # a rotation takes effect without a restart
    store = AuditStore(settings.database_url)
    worker = AuditIngest(settings.mqtt, store, command_key=command_key, client_id=worker_client_id(settings, index),
                         shared_group=settings.ingest.shared_group, ack_interval_s=settings.ingest.ack_interval_s,
                         review_key=load_review_key(settings.peer_review.review_key),
                         probe_dir=settings.review_probe_dir, probe_max_days=settings.peer_review.probe_max_days)
    worker.start()
    announcer = None
    if announce and settings.publish.repo_dir is not None:
        from central.publish.announcer import Announcer

        # The first worker owns the link that retains library announcements for the fleet.
        announcer = Announcer(settings.publish.repo_dir, settings.publish, worker.publish_retained,
                              command_key=command_key)
        announcer.start()
    base = index * _FIELDS
    try:
        while not (ended.is_set() or stop.is_set() or os.getppid() != parent):
            counts[base], counts[base + 1], counts[base + 2] = int(worker.connected), worker.received, worker.rejected
            ended.wait(_COUNTS_S)
    finally:
        if announcer is not None:
            announcer.stop()
        worker.stop()
        store.close()
        counts[base] = 0


class IngestProcesses:
    """``settings.ingest.workers`` worker processes, each started again if it dies, until ``stop``.

    Also an ``IngestStatus``: connected while every worker is; received and rejected summed over the
    workers (a replaced worker counts from zero again).
    """

    def __init__(self, settings: CentralSettings, *, announce: bool = False) -> None:
        self._settings = settings
        self._announce = announce
        self._n = settings.ingest.workers
        self._ctx = mp.get_context("spawn")
        self._counts: Any = self._ctx.Array("q", self._n * _FIELDS, lock=False)
        self._stop_workers: Any = self._ctx.Event()
        self._procs: list[Any] = [None] * self._n
        self._deaths = [0] * self._n
        self._started_at = [0.0] * self._n
        self._restart_at = [0.0] * self._n
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="ingest-supervisor", daemon=True)
        self.restarts = 0

    # --- IngestStatus ---

    @property
    def connected(self) -> bool:
        return all(self._counts[i * _FIELDS] for i in range(self._n))

    @property
    def received(self) -> int:
        return sum(self._counts[i * _FIELDS + 1] for i in range(self._n))

    @property
    def rejected(self) -> int:
        return sum(self._counts[i * _FIELDS + 2] for i in range(self._n))

    # --- running them ---

    @property
    def pids(self) -> list[int | None]:
        """Each worker's process id now (None while one is being replaced); for the operator and the tests."""
        return [p.pid if p is not None and _running(p) else None for p in self._procs]

    def start(self) -> None:
        for i in range(self._n):
            self._launch(i)
        self._supervisor.start()

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to store what it holds and disconnect; kill one that has not within ``timeout``."""
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        self._stop_workers.set()
        deadline = time.monotonic() + timeout
        for p in self._procs:
            if p is None:
                continue
            _wait_ended(p, max(0.0, deadline - time.monotonic()))
            if _running(p):
                logger.error("ingest worker %s did not stop in %.0f s; killing it (its unacknowledged messages "
                             "stay with the broker)", p.pid, timeout)
                p.kill()
                _wait_ended(p, 5.0)

    def _launch(self, index: int) -> None:
        proc = self._ctx.Process(target=run_worker, name=f"central-ingest-{index + 1}",
                                 args=(self._settings, index, self._counts, self._stop_workers,
                                       self._announce and index == 0))
        proc.start()
        self._procs[index] = proc
        self._started_at[index] = time.monotonic()

    def _supervise(self) -> None:
        while not self._stopping.wait(_SUPERVISE_S):
            for i, proc in enumerate(self._procs):
                if proc is None or _running(proc):
                    continue
                now = time.monotonic()
                if not self._restart_at[i]:
                    ran = now - self._started_at[i]
                    self._deaths[i] = 0 if ran >= _STABLE_S else self._deaths[i] + 1
                    pause = 0.0 if not self._deaths[i] else min(_RESTART_MAX_S,
                                                                _RESTART_FIRST_S * 2 ** (self._deaths[i] - 1))
                    self._restart_at[i] = now + pause
                    self._counts[i * _FIELDS] = 0
                    logger.error("ingest worker %s (%s) ended with exit code %s after %.0f s; starting it again "
                                 "in %.1f s under the same client id, so the broker hands it the messages it held",
                                 i + 1, worker_client_id(self._settings, i), proc.exitcode, ran, pause,
                                 extra={"event": "ingest_worker_died"})
                if now >= self._restart_at[i]:
                    self._restart_at[i] = 0.0
                    self._launch(i)
                    self.restarts += 1


def _running(proc: Any) -> bool:
    """Whether the process still runs. Its sentinel, not ``waitpid``: gunicorn's master (in ``serve``) reaps
    every child that ends, ours too, and then ``is_alive`` would say a dead worker is alive."""
    return not multiprocessing.connection.wait([proc.sentinel], timeout=0)


def _wait_ended(proc: Any, timeout: float) -> None:
    multiprocessing.connection.wait([proc.sentinel], timeout=timeout)
