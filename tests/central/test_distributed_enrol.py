"""Enrolment on a real local Dask cluster (worker processes, TLS) against the in-process build of the same folder."""

from __future__ import annotations

import os
import shutil
import signal
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster

from central.enrolment.__main__ import main
from central.enrolment.distributed import DaskTemplater, cluster_client
from central.enrolment.enrol import EnrolError, EnrolReport, enrol
from library.composition import composition
from library.digest import content_digest, recompute_content_digest
from library.snapshot import Snapshot, read_key_file

pytestmark = pytest.mark.models


@pytest.fixture
def many_dir(tmp_path: Path, face_photo) -> Path:
    """40 images of 10 subjects (the same photos under different names), enough for a kill mid-run."""
    root = tmp_path / "many"
    names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    for s in range(10):
        (root / f"DEMO-{s:02d}").mkdir(parents=True)
        for i, name in enumerate(names):
            shutil.copyfile(face_photo(name), root / f"DEMO-{s:02d}" / f"{i}-{name}")
    return root


def _outcomes(report: EnrolReport) -> list[tuple[str, bool, str | None]]:
    return [(o.source, o.enrolled, o.reason) for o in report.outcomes]


def _assert_same_library(a_path: Path, a_key: Path, b_path: Path, b_key: Path) -> None:
    a, b = Snapshot.open(a_path, read_key_file(a_key)), Snapshot.open(b_path, read_key_file(b_key))
    try:
        assert content_digest(a) == content_digest(b) == recompute_content_digest(b)
        assert list(a.records()) == list(b.records())  # same record ids, sources and metadata
        for (ra, ta, ha, _), (rb, tb, hb, _) in zip(a.entries(), b.entries(), strict=True):
            assert ra == rb and ha == hb
            np.testing.assert_allclose(ta, tb, atol=1e-6)
        as_of = date(2026, 1, 1)
        assert composition(a, as_of) == composition(b, as_of)
    finally:
        a.close()
        b.close()


def test_local_cluster_builds_the_same_library_and_leaves_no_biometrics_in_worker_dirs(
    import_dir: Path, tmp_path: Path, pipeline
) -> None:
    single = enrol(import_dir, tmp_path / "one.db", tmp_path / "one.key", pipeline, progress=False)
    scratch = tmp_path / "dask"
    with cluster_client(workers=2, local_directory=scratch) as client:
        assert all(addr.startswith("tls://") for addr in client.scheduler_info()["workers"])
        spread = enrol(import_dir, tmp_path / "dask.db", tmp_path / "dask.key",
                       DaskTemplater(client, batch_size=2), progress=False)
        worker_dirs = client.run(lambda dask_worker: dask_worker.local_directory).values()
        assert worker_dirs and all(Path(d).is_relative_to(scratch) for d in worker_dirs)
        # Read while the workers still run: a worker deletes its directory when it closes.
        files = {str(p): p.read_bytes() for p in scratch.rglob("*") if p.is_file()}

    assert _outcomes(spread) == _outcomes(single)
    assert spread.enrolled == 4 and spread.subjects == 3
    _assert_same_library(tmp_path / "one.db", tmp_path / "one.key", tmp_path / "dask.db", tmp_path / "dask.key")

    snapshot = Snapshot.open(tmp_path / "dask.db", read_key_file(tmp_path / "dask.key"))
    try:
        needles = [b"\xff\xd8\xff"]  # any JPEG at all
        for _, template, thumbnail, _ in snapshot.entries():
            needles += [thumbnail[200:264], template.tobytes()[:64]]
    finally:
        snapshot.close()
    leaked = [name for name, data in files.items() for needle in needles if needle in data]
    assert leaked == []


def test_a_worker_killed_mid_run_loses_no_image_and_enrols_none_twice(
    many_dir: Path, tmp_path: Path, pipeline
) -> None:
    single = enrol(many_dir, tmp_path / "one.db", tmp_path / "one.key", pipeline, progress=False)
    killed: list[int] = []
    with cluster_client(workers=2) as client:
        def kill_a_busy_worker(batch: int) -> None:
            if batch != 0:
                return
            pids = client.run(os.getpid)
            busy = [addr for addr, keys in client.processing().items() if keys]
            killed.append(pids[busy[0]])
            os.kill(killed[0], signal.SIGKILL)

        templater = DaskTemplater(client, batch_size=2, on_batch=kill_a_busy_worker)
        spread = enrol(many_dir, tmp_path / "dask.db", tmp_path / "dask.key", templater, progress=False)
        survivors = set(client.run(os.getpid).values())

    assert killed and killed[0] not in survivors
    assert spread.enrolled == single.enrolled == 40
    assert [o.source for o in spread.outcomes] == [o.source for o in single.outcomes]
    assert all(o.enrolled for o in spread.outcomes)
    _assert_same_library(tmp_path / "one.db", tmp_path / "one.key", tmp_path / "dask.db", tmp_path / "dask.key")


def test_the_command_enrols_on_a_local_cluster(import_dir: Path, tmp_path: Path, capsys) -> None:
    out, key_file = tmp_path / "lib.db", tmp_path / "lib.key"
    code = main(["enrol", "--images", str(import_dir), "--out", str(out), "--key-file", str(key_file),
                 "--workers", "1", "--no-progress"])
    assert code == 0
    assert "Enrolled 4 images of 3 subjects" in capsys.readouterr().out
    assert Snapshot.open(out, read_key_file(key_file)).count == 4


def test_a_plaintext_scheduler_is_refused_unless_allowed() -> None:
    with pytest.raises(EnrolError, match="not tls://"), cluster_client("tcp://127.0.0.1:8786"):
        pass


def test_workers_that_would_spill_to_disk_are_refused(tmp_path: Path) -> None:
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, local_directory=str(tmp_path)) as c, \
            Client(c) as client, pytest.raises(EnrolError, match="may spill results"):
        DaskTemplater(client)
