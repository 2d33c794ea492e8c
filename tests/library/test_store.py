"""The device's library folder: forward-only installs that survive kill -9 at any point."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.services.library import LibraryHolder
from library.delta import make_delta
from library.errors import DeltaApplyError, DeltaBaseMismatchError, VersionRollbackError
from library.snapshot import Snapshot, new_key, write_key_file
from library.store import LibraryStore
from tests.library.builders import build, unit_vectors

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["copied", "rows", "index", "written", "renamed", "switched"]
APPLY_STAGES = STAGES[:-1]  # the steps run by the apply's own child process (library.apply_process)
_CHILD = """
import sys, time
from pathlib import Path
from library.snapshot import read_key_file
from library.store import LibraryStore

root, update, key_file, stop_at, kind = sys.argv[1:6]

def hook(name):
    building = getattr(store, "building", None)
    print(name, building.pid if building else 0, flush=True)
    if name == stop_at:
        time.sleep(600)

store = LibraryStore(Path(root), on_stage=hook)
install = store.install_delta if kind == "delta" else store.install_full
install(Path(update), read_key_file(Path(key_file)))
print("done", flush=True)
"""


@pytest.fixture
def lineage(tmp_path: Path):
    """v1 (records 0-299), v2 (drops 0-19, adds 300-339) and the v1->v2 delta, under one key."""
    key, vectors = new_key(), unit_vectors(340)
    write_key_file(tmp_path / "lib.key", key)
    v1 = build(tmp_path / "v1.db", key, {i: vectors[i] for i in range(300)}, version=1)
    v2 = build(tmp_path / "v2.db", key, {i: vectors[i] for i in range(20, 340)}, version=2)
    base, target = Snapshot.open(v1, key), Snapshot.open(v2, key)
    make_delta(base, target, tmp_path / "v1-v2.delta", key)
    digests = {1: base.digest, 2: target.digest}
    base.close()
    target.close()
    return key, vectors, v1, v2, tmp_path / "v1-v2.delta", digests


def _installed(root: Path, key: bytes) -> tuple[int, str]:
    snapshot = LibraryStore(root).open_current(key, expected_embedder="emb@1")
    try:
        return snapshot.version, snapshot.digest
    finally:
        snapshot.close()


def test_delta_install_moves_forward_and_never_back(lineage, tmp_path: Path) -> None:
    key, vectors, v1, _, delta, digests = lineage
    store = LibraryStore(tmp_path / "device")
    assert store.install_full(v1, key) == 1
    assert store.install_delta(delta, key) == 2
    assert _installed(tmp_path / "device", key) == (2, digests[2])
    with pytest.raises(VersionRollbackError, match="not newer"):
        store.install_full(v1, key)
    with pytest.raises(VersionRollbackError):
        store.install_delta(delta, key)
    assert store.open_current(key).search(vectors[330], k=1)[0].record.source == "SUBJ-00330/330.jpg"


def test_delta_for_a_version_not_installed_is_refused(lineage, tmp_path: Path) -> None:
    key, vectors, *_, delta, _ = lineage
    other = build(tmp_path / "other.db", key, {i: vectors[i] for i in range(10)}, version=0)
    store = LibraryStore(tmp_path / "device")
    store.install_full(other, key)
    with pytest.raises(DeltaBaseMismatchError, match="version 0 is installed"):
        store.install_delta(delta, key)
    assert store.current_version() == 0


def _run_child(root: Path, update: Path, key_file: Path, stop_at: str, kind: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(update), str(key_file), stop_at, kind],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _kill_at(child: subprocess.Popen[str], stage: str) -> int:
    """SIGKILL the installer once it reports ``stage`` (it then sleeps there); returns the pid of the process
    that was building the segment then (0 if none)."""
    with child:
        assert child.stdout is not None
        building = 0
        for line in child.stdout:
            name, pid = line.split()
            if name == stage:
                building = int(pid)
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return building


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def _wait_gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_at_each_stage_of_a_delta_leaves_a_whole_version(lineage, tmp_path: Path, stage: str) -> None:
    key, _, v1, _, delta, digests = lineage
    root = tmp_path / "device"
    LibraryStore(root).install_full(v1, key)
    building = _kill_at(_run_child(root, delta, tmp_path / "lib.key", stage, "delta"), stage)
    if stage in APPLY_STAGES:  # the desk died while its apply process ran: that process dies with it
        assert building, f"no apply process of its own was running at {stage!r}"
        assert _wait_gone(building), f"the apply process {building} outlived the desk"

    expected = 2 if stage == "switched" else 1
    assert _installed(root, key) == (expected, digests[expected])
    leftovers = [p.name for p in (root / "versions").iterdir() if not p.name.endswith(".db")]
    assert leftovers == []
    assert [p.name for p in (root / "segments").iterdir()] == (["0000000002.seg"] if expected == 2 else [])
    if expected == 1:
        LibraryStore(root).install_delta(delta, key)
    assert _installed(root, key) == (2, digests[2])


@pytest.mark.parametrize("stage", APPLY_STAGES)
def test_kill_9_of_the_apply_process_is_a_plain_error_and_nothing_is_lost(lineage, tmp_path: Path, stage: str
                                                                         ) -> None:
    """The child building the segment is killed at each of its steps: the desk gets a plain error (never a
    silent success), keeps version 1 with nothing left behind, and the same delta applies afterwards."""
    key, _, v1, _, delta, digests = lineage
    root = tmp_path / "device"

    def kill_child(name: str) -> None:
        if name == stage and store.building is not None:  # install_full has a "copied" step of its own
            os.kill(store.building.pid, signal.SIGKILL)

    store = LibraryStore(root, on_stage=kill_child)
    store.install_full(v1, key)
    with pytest.raises(DeltaApplyError, match=r"killed by signal 9 before it finished\. The update was not installed"):
        store.install_delta(delta, key)
    assert store.building is None
    assert store.current_version() == 1
    assert list((root / "segments").iterdir()) == []
    assert _installed(root, key) == (1, digests[1])
    assert LibraryStore(root).install_delta(delta, key) == 2
    assert _installed(root, key) == (2, digests[2])


@pytest.mark.parametrize("stage", ["copied", "renamed", "switched"])
def test_kill_9_during_a_full_install_leaves_a_whole_version(lineage, tmp_path: Path, stage: str) -> None:
    key, _, v1, v2, _, digests = lineage
    root = tmp_path / "device"
    LibraryStore(root).install_full(v1, key)
    _kill_at(_run_child(root, v2, tmp_path / "lib.key", stage, "full"), stage)
    expected = 2 if stage == "switched" else 1
    assert _installed(root, key) == (expected, digests[expected])


def test_kill_9_at_random_moments_never_breaks_the_library(lineage, tmp_path: Path) -> None:
    key, _, v1, _, delta, digests = lineage
    rng = random.Random(7)
    seen = set()
    for attempt in range(8):
        root = tmp_path / f"device{attempt}"
        LibraryStore(root).install_full(v1, key)
        with _run_child(root, delta, tmp_path / "lib.key", "never", "delta") as child:
            time.sleep(rng.uniform(0.05, 1.0))
            child.kill()
            child.wait(timeout=30)
        version, content = _installed(root, key)
        assert content == digests[version]
        seen.add(version)
    assert seen <= {1, 2}


def test_searches_continue_while_a_delta_is_applied_and_swapped(lineage, tmp_path: Path) -> None:
    key, vectors, v1, _, delta, _ = lineage
    store = LibraryStore(tmp_path / "device")
    store.install_full(v1, key)
    holder = LibraryHolder(store.open_current(key))
    errors: list[BaseException] = []
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def search() -> None:
        rng = np.random.default_rng(1)
        while not stop.is_set():
            i = int(rng.integers(20, 300))  # in both versions
            snapshot = holder.current
            try:
                top = snapshot.search(vectors[i], k=10)
                assert top[0].record.source == f"SUBJ-{i:05d}/{i}.jpg"
                results.append((snapshot.version, top[0].record.source))
            except BaseException as e:
                errors.append(e)

    thread = threading.Thread(target=search)
    thread.start()
    try:
        time.sleep(0.1)
        store.install_delta(delta, key)
        old = holder.swap(store.open_current(key))
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    old.close()
    assert errors == []
    assert {version for version, _ in results} == {1, 2}
    assert [v for v, _ in results] == sorted(v for v, _ in results)  # never back to the old version


def test_the_apply_process_runs_at_low_priority_and_never_sees_the_key_in_argv_or_env(lineage, tmp_path: Path
                                                                                     ) -> None:
    """The searches keep the CPU (SCHED_BATCH, nice 19 above the desk's) and the key goes through the pipe:
    other users can read a process's command line and environment."""
    key, _, v1, _, delta, digests = lineage
    seen: dict[str, object] = {}

    def look(name: str) -> None:
        if name == "rows" and store.building is not None:
            pid = store.building.pid
            seen["policy"] = os.sched_getscheduler(pid)
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, pid)
            seen["visible"] = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()

    store = LibraryStore(tmp_path / "device", on_stage=look)
    store.install_full(v1, key)
    assert store.install_delta(delta, key) == 2
    assert seen["policy"] == os.SCHED_BATCH
    assert seen["nice"] == min(os.getpriority(os.PRIO_PROCESS, 0) + 19, 19)
    assert key.hex().encode() not in seen["visible"] and key not in seen["visible"]  # type: ignore[operator]
    assert _installed(tmp_path / "device", key) == (2, digests[2])
