"""A killed enrolment coordinator resumes from its last checkpoint (the national-scale enrolment issue).

``python -m central.enrolment enrol --workers 2`` runs as a real process with a
local Dask cluster (its nannies and workers are its child processes). The
``RFR_ENROL_COMMIT_EVERY`` / ``RFR_ENROL_HOLD_AFTER`` seams in
``central.enrolment.enrol`` make it checkpoint every 4 records and stop after 10
(8 committed, 2 in an open transaction), where it is SIGKILLed: no clean-up
code runs. The rerun with ``--resume`` must finish the same library an
uninterrupted in-process build makes, with every image exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from central.enrolment.enrol import COMMIT_EVERY_ENV, HOLD_AFTER_ENV, enrol, iter_images
from library import cipher
from library.digest import content_digest
from library.snapshot import Snapshot, read_key_file
from tests.central import test_distributed_enrol as distributed

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
many_dir = distributed.many_dir  # the 40-image fixture (10 subjects x 4 photos), shared with that module
COMMIT_EVERY, HOLD_AFTER = 4, 10
COMMITTED = HOLD_AFTER // COMMIT_EVERY * COMMIT_EVERY  # 8: the last checkpoint before the kill
JPEG_SOI = b"\xff\xd8\xff"


def _command(images: Path, out: Path, key_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "central.enrolment", "enrol", "--images", str(images), "--out", str(out),
            "--key-file", str(key_file), "--workers", "2", "--batch-size", "2", "--no-progress", *extra]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"the enrolment exited ({proc.returncode}) early: {path.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout} s: {path.read_text()}")


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_killed_coordinator_resumes_from_its_last_checkpoint(many_dir: Path, tmp_path: Path, pipeline) -> None:
    out, key_file = tmp_path / "out" / "lib.db", tmp_path / "out" / "lib.key"
    out.parent.mkdir()
    building = out.with_name(out.name + ".building")
    scratch = tmp_path / "tmp"  # the runs' TMPDIR: Dask's scratch directories and anything else made there
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), COMMIT_EVERY_ENV: str(COMMIT_EVERY)}
    stderr = tmp_path / "killed.err"

    with open(stderr, "wb") as err:
        proc = subprocess.Popen(_command(many_dir, out, key_file), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=err, env={**env, HOLD_AFTER_ENV: str(HOLD_AFTER)})
    try:
        _wait_for(stderr, f"holding after {HOLD_AFTER} images", proc, timeout=60)
        cluster = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in cluster if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in cluster]  # --workers 2: two worker processes
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Nannies and workers notice their parent is gone and exit: no orphans hold biometric results in memory.
    _, orphans = psutil.wait_procs(cluster, timeout=20)
    assert orphans == [], [(p.pid, p.cmdline()) for p in orphans]

    # What the kill left: the partial build, encrypted, holding exactly the last checkpoint; no finished snapshot.
    assert building.exists() and not out.exists()
    head = building.read_bytes()[:16]
    assert not head.startswith(b"SQLite format 3")
    key = read_key_file(key_file)
    conn = cipher.connect(building, key)
    try:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == COMMITTED
    finally:
        conn.close()
    assert building.with_name(building.name + "-journal").exists()  # the 2 uncommitted records' transaction
    killed_scratch, killed_out = _files(scratch), _files(out.parent)
    assert [p for p, data in killed_scratch.items() if JPEG_SOI in data] == []

    resumed = subprocess.run(_command(many_dir, out, key_file, "--resume"), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Enrolled 40 images ({COMMITTED} from the interrupted run) of 10 subjects" in resumed.stdout
    assert not building.exists()

    reference = enrol(many_dir, tmp_path / "one.db", tmp_path / "one.key", pipeline, progress=False)
    assert reference.enrolled == 40
    built = Snapshot.open(out, key)
    one = Snapshot.open(tmp_path / "one.db", read_key_file(tmp_path / "one.key"))
    try:
        sources = [r.source for r in built.records()]
        expected = [str(image.relative_to(many_dir)) for _, image in iter_images(many_dir)]
        assert sorted(sources) == sorted(expected) and len(set(sources)) == len(sources) == built.count == 40
        assert content_digest(built) == content_digest(one)
        assert list(built.records()) == list(one.records())  # same record ids in the same order as well
        needles = [JPEG_SOI] + [thumb[200:264] for _, _, thumb, _ in built.entries()] \
            + [template.tobytes()[:64] for _, template, _, _ in built.entries()]
    finally:
        built.close()
        one.close()
    # Nothing plaintext in the temp directories (the killed run's Dask scratch is never cleaned up, so it
    # is still there), nor in the partial build and its journal as the kill left them, nor in the output.
    # Encrypted files are searched for longer needles only: 3 random bytes can match by chance.
    leaked = [str(p) for p, data in _files(scratch).items() for n in needles if n in data]
    for files in (killed_out, _files(out.parent)):
        leaked += [str(p) for p, data in files.items() if p != key_file for n in needles[1:] if n in data]
    assert leaked == []
