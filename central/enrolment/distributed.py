"""Enrolment on a Dask cluster: workers template images, this process stays the only library writer.

National scale (about 20M custody images) is days of pipeline time on one box,
so the face pipeline runs on Dask workers (an existing, supported engine, not a
home-made one). Everything that decides what the library holds stays here in
the coordinator: the manifest, the refusals, the record order and the single
SQLCipher writer. Workers are stateless functions over image paths with one
``FacePipeline`` per worker process; they return ``Templated`` results (or a
refusal reason) and keep nothing. Hence:

- the library is the one the in-process build makes (same records in the same
  order, so the same record ids and content digest), because results are
  consumed in input order however the cluster scheduled them;
- a worker killed mid-batch loses nothing: Dask reruns its batches elsewhere,
  and a batch's result is consumed once, so nothing is enrolled twice; an
  image that keeps killing workers is refused on its own row, not the run;
- a killed coordinator resumes from the ``.building`` file like any
  interrupted enrolment (``--resume``), since only it ever wrote there.

Assumption: workers read the import folder at the same path as the coordinator
(a read-only share). Only paths go to workers; templates and thumbnails come
back over TLS and are held in worker memory until collected, never spilled to
disk (``docs/distributed-enrolment.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, Security

from central.enrolment.enrol import EnrolError, Templated, template_image

logger = logging.getLogger(__name__)

# Results are held in worker memory only: no spilling to the worker's local directory, where they
# would sit as plaintext pickles. "pause" stops a worker taking work before it runs out of memory.
NO_SPILL_CONFIG: dict[str, Any] = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": 0.85,
    "distributed.worker.memory.terminate": 0.95,
}
BATCH_SIZE = 16  # images per task: big enough to hide scheduling cost, small enough to rerun cheaply
_WORKER_WAIT_S = 120

_pipeline: Any = None
_pipeline_lock = threading.Lock()


def _worker_pipeline(inference_threads: int | None) -> Any:
    """This worker process's face pipeline, compiled on first use and kept (models load once per worker).

    ``inference_threads`` caps OpenVINO's CPU threads: several workers on one
    machine each defaulting to every core only fight over them.
    """
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            from models.pipeline import FacePipeline
            from models.runtime import core

            if inference_threads:
                core().set_property("CPU", {"INFERENCE_NUM_THREADS": inference_threads})
            _pipeline = FacePipeline.load()
        return _pipeline


def template_batch(jobs: list[tuple[str, str]], inference_threads: int | None = None) -> list[Templated | str]:
    """The task a worker runs: each (source, path) templated, or its refusal reason, in the same order."""
    pipeline = _worker_pipeline(inference_threads)
    return [template_image(pipeline, Path(path)) for _source, path in jobs]


def _describe_worker(inference_threads: int | None) -> tuple[str, int]:
    pipeline = _worker_pipeline(inference_threads)
    return pipeline.embedder_id, pipeline.dim


def _spill_policy(dask_worker: Any) -> tuple[object, object, str]:
    memory = dask_worker.memory_manager
    return memory.memory_target_fraction, memory.memory_spill_fraction, str(dask_worker.local_directory)


class DaskTemplater:
    """A ``Templater`` over a Dask client: batches out to workers, results back in input order.

    At most ``in_flight`` batches are outstanding, so the coordinator's memory
    is bounded whatever the input size, and the oldest batch is awaited first
    while the rest keep the workers busy. ``on_batch`` (a test seam) is called
    with each batch's number after its result is consumed. ``inference_threads``
    caps OpenVINO threads per worker (None: OpenVINO's default, all cores).
    """

    def __init__(self, client: Client, *, batch_size: int = BATCH_SIZE, in_flight: int | None = None,
                 inference_threads: int | None = None, on_batch: Callable[[int], None] | None = None) -> None:
        self.client, self.batch_size, self.on_batch = client, batch_size, on_batch
        self.inference_threads = inference_threads
        client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
        self._check_workers()
        threads = sum(client.nthreads().values())
        self.in_flight = in_flight or max(4, 3 * threads)

    def _check_workers(self) -> None:
        """Refuse workers that would spill biometric results to disk or that run a different face model."""
        for address, (target, spill, directory) in self.client.run(_spill_policy).items():
            if target is not False or spill is not False:
                raise EnrolError(
                    f"Dask worker {address} may spill results to {directory} (memory target {target}, spill "
                    f"{spill}); start workers with distributed.worker.memory.target and .spill set to false."
                )
        models = set(self.client.run(_describe_worker, self.inference_threads).values())
        if len(models) != 1:
            raise EnrolError(f"The Dask workers run different face models ({sorted(models)}); templates from "
                             f"different models cannot share a library.")
        ((self.embedder_id, self.dim),) = models

    def run(self, jobs: Iterable[tuple[str, Path]]) -> Iterator[Templated | str]:
        pending: deque[tuple[list[tuple[str, str]], Future]] = deque()
        jobs_iter = iter(jobs)
        batches = iter(lambda: [(s, str(p)) for s, p in islice(jobs_iter, self.batch_size)], [])
        number = 0
        try:
            while True:
                while len(pending) < self.in_flight:
                    batch = next(batches, None)
                    if batch is None:
                        break
                    pending.append((batch, self._submit(batch)))
                if not pending:
                    return
                batch, future = pending.popleft()
                results = self._collect(batch, future)
                future.release()
                yield from results
                if self.on_batch:
                    self.on_batch(number)
                number += 1
        finally:
            for _, future in pending:
                future.cancel()

    def _submit(self, batch: list[tuple[str, str]]) -> Future:
        return self.client.submit(template_batch, batch, self.inference_threads, pure=False)

    def _collect(self, batch: list[tuple[str, str]], future: Future) -> list[Templated | str]:
        """A batch's results; if the batch failed on the workers, each image again on its own."""
        try:
            return future.result()  # type: ignore[no-any-return]
        except Exception as e:
            if future.status != "error":
                raise EnrolError(f"Lost the Dask cluster ({e}); what was enrolled is kept: rerun with --resume.") \
                    from e
            failure = type(e).__name__
        logger.warning("%d image(s) failed on the cluster (%s)", len(batch), failure)
        if len(batch) == 1:
            return [f"could not be processed: it failed or killed the worker every time it was tried ({failure})"]
        singles = [self._submit([job]) for job in batch]
        return [self._collect([job], single)[0] for job, single in zip(batch, singles, strict=True)]


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None, *,
                   security: Security | None = None, allow_plaintext: bool = False,
                   local_directory: Path | None = None) -> Iterator[Client]:
    """A client on an existing scheduler, or on a local cluster of ``workers`` processes started here.

    A local cluster talks TLS with throwaway certificates and spills nothing;
    its scratch directory is private (0700) and, when made here, deleted at
    the end. A remote scheduler must be ``tls://`` unless ``allow_plaintext``
    (an isolated network the site has accepted in writing).
    """
    if scheduler:
        if not scheduler.startswith("tls://") and not allow_plaintext:
            raise EnrolError(f"The scheduler address {scheduler} is not tls://: templates and thumbnails would "
                             f"cross the network in plaintext. Use TLS (docs/distributed-enrolment.md) or pass "
                             f"--allow-plaintext for an isolated network.")
        with Client(scheduler, security=security or Security()) as client:
            yield client
        return
    if not workers or workers < 1:
        raise EnrolError("A local cluster needs at least one worker.")
    made = local_directory is None
    directory = Path(tempfile.mkdtemp(prefix="rfr-dask-")) if local_directory is None else local_directory
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = Security.temporary()
    try:
        with dask.config.set(NO_SPILL_CONFIG), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                             protocol="tls://", security=tls, local_directory=str(directory),
                             dashboard_address=None, worker_dashboard_address=None,
                             # No dashboard; the scheduler's own HTTP endpoint on a free loopback port
                             # (its default 8787 may be taken by another cluster on the machine).
                             scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"}) as cluster, \
                Client(cluster, security=tls) as client:
            yield client
    finally:
        if made:
            shutil.rmtree(directory, ignore_errors=True)


def local_inference_threads(workers: int) -> int:
    """OpenVINO threads per worker when ``workers`` share this machine: its cores split between them."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))
