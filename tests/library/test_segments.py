"""Library versions as base + delta segments: same content as central's full rebuild, searched as one library."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from library import digest
from library.compaction import compact, start_compaction
from library.delta import make_delta
from library.errors import DeltaResultMismatchError, SnapshotError
from library.snapshot import Snapshot, new_key, write_key_file
from library.store import LibraryStore
from tests.library.builders import EMBEDDER, alter_stored_index, build, record, unit_vectors

ROOT = Path(__file__).resolve().parents[2]
# Record sets of versions 1..4: each drops some records (base ones, then ones a segment added), adds new ones,
# and changes one (a removal plus an addition of the same source), so tombstones land in the base and in segments.
MEMBERS = {1: set(range(0, 300)), 2: set(range(20, 340)), 3: set(range(25, 330)) | set(range(340, 360)),
           4: (set(range(25, 330)) - {330 - 1, 335}) | set(range(345, 380))}
CHANGED = {3: {100}, 4: {350}}  # version: records whose metadata changes in that version


def _build(tmp: Path, key: bytes, vectors: np.ndarray, version: int) -> Path:
    changed = {i: record(i, sex=None) for v in range(2, version + 1) for i in CHANGED.get(v, set())}
    return build(tmp / f"v{version}.db", key, {i: vectors[i] for i in sorted(MEMBERS[version])}, version,
                 changed=changed)


@pytest.fixture
def chain(tmp_path: Path):
    """Full rebuilds v1..v4 (what central publishes) and the deltas between them, under one key."""
    key, vectors = new_key(), unit_vectors(400, seed=3)
    write_key_file(tmp_path / "lib.key", key)
    fulls = {v: _build(tmp_path, key, vectors, v) for v in MEMBERS}
    deltas, digests = {}, {}
    for v in MEMBERS:
        snap = Snapshot.open(fulls[v], key)
        digests[v] = snap.digest
        snap.close()
    for v in list(MEMBERS)[1:]:
        base, target = Snapshot.open(fulls[v - 1], key), Snapshot.open(fulls[v], key)
        make_delta(base, target, tmp_path / f"v{v - 1}-v{v}.delta", key)
        deltas[v] = tmp_path / f"v{v - 1}-v{v}.delta"
        base.close()
        target.close()
    return key, vectors, fulls, deltas, digests


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _exact(vectors: np.ndarray, members: set[int], probe: np.ndarray, k: int) -> list[str]:
    ids = sorted(members)
    scores = vectors[ids] @ probe
    return [f"SUBJ-{ids[i]:05d}/{ids[i]}.jpg" for i in np.argsort(-scores)[:k]]


def test_each_delta_becomes_a_segment_with_the_full_rebuilds_content(chain, tmp_path: Path) -> None:
    key, vectors, fulls, deltas, digests = chain
    store = LibraryStore(tmp_path / "device")
    store.install_full(fulls[1], key)
    for v in (2, 3, 4):
        assert store.install_delta(deltas[v], key) == v
        version = store.open_current(key, EMBEDDER)
        try:
            assert (version.version, version.digest, len(version.segments)) == (v, digests[v], v - 1)
            # The record set, recomputed from every record's own bytes, is central's full rebuild's.
            assert digest.recompute_content_digest(version) == digests[v]
            assert version.count == len(MEMBERS[v])
            assert {r.source for r in version.records()} == {f"SUBJ-{i:05d}/{i}.jpg" for i in MEMBERS[v]}
            rng = np.random.default_rng(v)
            for i in rng.choice(sorted(MEMBERS[v]), size=25, replace=False):
                probe = vectors[int(i)] + 0.3 * rng.normal(size=vectors.shape[1]).astype(np.float32)
                probe /= np.linalg.norm(probe)
                found = version.search(probe, k=10)
                # Against exact search over the resulting record set, not the base.
                assert [c.record.source for c in found] == _exact(vectors, MEMBERS[v], probe, 10)
                assert [c.rank for c in found] == list(range(1, 11))
                top = found[0].record
                assert version.record(top.record_id) == top
                number = int(top.source.split("/")[1].removesuffix(".jpg"))
                assert version.thumbnail(top.record_id) == b"\xff\xd8thumb-%d\xff\xd9" % number
            for removed in set(range(0, 400)) - MEMBERS[v]:
                hit = version.search(vectors[removed], k=1)[0]
                assert hit.record.source != f"SUBJ-{removed:05d}/{removed}.jpg"
        finally:
            version.close()
    changed = store.open_current(key)
    assert changed.entry("SUBJ-00100/100.jpg")[0].sex is None  # the changed record's new metadata is served
    changed.close()


def test_a_delta_writes_only_its_segment_and_the_base_file_is_untouched(chain, tmp_path: Path) -> None:
    key, _, fulls, deltas, digests = chain
    root = tmp_path / "device"
    store = LibraryStore(root)
    store.install_full(fulls[1], key)
    base = store.current_path()
    before, size = _sha(base), base.stat().st_size
    for v in (2, 3):
        store.install_delta(deltas[v], key)
    assert _sha(base) == before and store.current_path() == base
    assert sorted(p.name for p in (root / "versions").iterdir()) == [base.name]  # no copy of the base
    written = sum(p.stat().st_size for p in (root / "segments").iterdir())
    assert 0 < written < size / 2
    assert _installed(root, key) == (3, digests[3])


def _installed(root: Path, key: bytes) -> tuple[int, str]:
    version = LibraryStore(root).open_current(key, EMBEDDER)
    try:
        return version.version, version.digest
    finally:
        version.close()


def test_an_update_shares_what_the_desk_already_has_loaded(chain, tmp_path: Path) -> None:
    key, vectors, fulls, deltas, _ = chain
    store = LibraryStore(tmp_path / "device")
    store.install_full(fulls[1], key)
    first = store.open_current(key)
    store.install_delta(deltas[2], key)
    second = store.open_current(key, reuse=first)
    assert second.base is first.base  # the base's index is not loaded again
    store.install_delta(deltas[3], key)
    third = store.open_current(key, reuse=second)
    assert third.base is first.base and third.segments[0] is second.segments[0]
    first.close()
    second.close()  # the parts third still uses stay open
    assert third.search(vectors[30], k=1)[0].record.source == "SUBJ-00030/30.jpg"
    third.close()


def test_a_delta_whose_result_is_not_centrals_is_refused_and_leaves_nothing(chain, tmp_path: Path) -> None:
    key, _, fulls, deltas, digests = chain
    store = LibraryStore(tmp_path / "device")
    store.install_full(fulls[1], key)
    forged = tmp_path / "forged.delta"
    forged.write_bytes(deltas[2].read_bytes())
    from library import cipher

    conn = cipher.connect(forged, key)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'result_digest'", ("0" * 64,))
    conn.commit()
    conn.close()
    with pytest.raises(DeltaResultMismatchError):
        store.install_delta(forged, key)
    assert list((tmp_path / "device" / "segments").iterdir()) == []
    assert _installed(tmp_path / "device", key) == (1, digests[1])


def _device_with_segments(chain, tmp_path: Path) -> tuple[Path, LibraryStore]:  # type: ignore[no-untyped-def]
    """A desk's store holding version 1 as its base and the deltas to 2 and 3 as two segments."""
    key, _, fulls, deltas, _ = chain
    root = tmp_path / "device"
    store = LibraryStore(root)
    store.install_full(fulls[1], key)
    for v in (2, 3):
        store.install_delta(deltas[v], key)
    return root, store


def test_compaction_folds_segments_into_a_base_with_the_same_content(chain, tmp_path: Path) -> None:
    key, vectors, _, deltas, digests = chain
    root, store = _device_with_segments(chain, tmp_path)
    serving = store.open_current(key)
    assert compact(store, key) == 3
    assert list((root / "segments").iterdir()) == []
    compacted = store.open_current(key)
    assert (compacted.version, compacted.digest, compacted.segments) == (3, digests[3], [])
    assert digest.recompute_content_digest(compacted) == digests[3]
    # The version served before compaction keeps answering (its files' descriptors stay open).
    assert serving.search(vectors[200], k=1)[0].record.source == "SUBJ-00200/200.jpg"
    serving.close()
    # Deltas keep applying on the compacted base: labels were kept, so segments after it still line up.
    store.install_delta(deltas[4], key)
    after = store.open_current(key)
    assert (after.version, after.digest) == (4, digests[4])
    assert digest.recompute_content_digest(after) == digests[4]
    after.close()
    compacted.close()


def test_compaction_runs_in_a_background_process_at_low_priority(chain, tmp_path: Path) -> None:
    key, _, fulls, deltas, digests = chain
    root = tmp_path / "device"
    store = LibraryStore(root)
    store.install_full(fulls[1], key)
    store.install_delta(deltas[2], key)
    child = start_compaction(root, key)
    assert child.wait(timeout=120) == 0
    assert LibraryStore(root).segment_files(json_pointer(root)) == []
    assert _installed(root, key) == (2, digests[2])


def json_pointer(root: Path) -> dict[str, object]:
    import json

    return json.loads((root / "current").read_text())


def test_a_segment_altered_on_disk_is_refused_at_open(chain, tmp_path: Path) -> None:
    key, _, fulls, deltas, _ = chain
    root = tmp_path / "device"
    store = LibraryStore(root)
    store.install_full(fulls[1], key)
    store.install_delta(deltas[2], key)
    segment = next((root / "segments").iterdir())
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):  # at open (meta, tombstones, index) or at the first read of the page
        digest.recompute_content_digest(LibraryStore(root).open_current(key))


_COMPACT_CHILD = """
import sys, time
from pathlib import Path
from library.compaction import compact
from library.snapshot import read_key_file
from library.store import LibraryStore

root, key_file, stop_at = sys.argv[1:4]  # argv[4]: the mode

def hook(name):
    print(name, flush=True)
    if name == stop_at:
        time.sleep(600)

compact(LibraryStore(Path(root), on_stage=hook), read_key_file(Path(key_file)), mode=sys.argv[4], on_stage=hook)
print("done", flush=True)
"""
COMPACT_STAGES = ["compact-copied", "compact-rows", "compact-index", "compact-written", "compact-renamed",
                  "compact-switched"]


@pytest.mark.parametrize("mode", ["base", "segments"])
@pytest.mark.parametrize("stage", COMPACT_STAGES)
def test_kill_9_at_each_stage_of_a_compaction_leaves_the_version_serving(chain, tmp_path: Path, stage: str,
                                                                         mode: str) -> None:
    key, vectors, fulls, deltas, digests = chain
    root = tmp_path / "device"
    store = LibraryStore(root)
    store.install_full(fulls[1], key)
    for v in (2, 3):
        store.install_delta(deltas[v], key)
    child = subprocess.Popen([sys.executable, "-c", _COMPACT_CHILD, str(root), str(tmp_path / "lib.key"), stage,
                              mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    with child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == stage:
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    restarted = LibraryStore(root)  # what the desk does at start: leftovers removed
    version = restarted.open_current(key, EMBEDDER)
    try:
        assert (version.version, version.digest) == (3, digests[3])
        assert len(version.segments) == (2 if stage != "compact-switched" else 0 if mode == "base" else 1)
        assert digest.recompute_content_digest(version) == digests[3]
        assert version.search(vectors[345], k=1)[0].record.source == "SUBJ-00345/345.jpg"
    finally:
        version.close()
    leftovers = [p.name for p in (root / "versions").iterdir() if not p.name.endswith(".db")]
    leftovers += [p.name for p in (root / "segments").iterdir() if not p.name.endswith(".seg")]
    assert leftovers == []
    restarted.install_delta(deltas[4], key)  # and the next update still applies
    assert _installed(root, key) == (4, digests[4])


@pytest.mark.parametrize("rebuild", [False, True], ids=["index-extended", "index-rebuilt"])
def test_merging_segments_keeps_the_version_and_never_touches_the_base(chain, tmp_path: Path, monkeypatch,
                                                                       rebuild: bool) -> None:
    """The compaction a desk too small for a second base index can afford: segments into one, base as it was.
    The merged index either extends the first segment's (removed records marked deleted) or, past the share of
    marked records that a rebuild pays for, is built afresh; both must serve the same version."""
    if rebuild:
        monkeypatch.setattr("library.segment_merge.REBUILD_DELETED_FRACTION", 0.0)
    key, vectors, _, deltas, digests = chain
    root, store = _device_with_segments(chain, tmp_path)
    base = store.current_path()
    before = _sha(base)
    serving = store.open_current(key)
    assert compact(store, key, mode="segments") == 3
    assert [p.name for p in (root / "segments").iterdir()] == ["0000000003-merged.seg"]
    merged = store.open_current(key, EMBEDDER)
    assert (merged.version, merged.digest, len(merged.segments)) == (3, digests[3], 1)
    assert merged.base.path == base and _sha(base) == before
    assert digest.recompute_content_digest(merged) == digests[3]
    assert serving.search(vectors[200], k=1)[0].record.source == "SUBJ-00200/200.jpg"  # still answers
    serving.close()
    # A delta applies on top of the merged segment, and a second merge folds the merged segment again:
    # v4 removes records that v3's segment added (340-344) and changes one (350).
    store.install_delta(deltas[4], key)
    assert compact(store, key, mode="segments") == 4
    again = store.open_current(key, EMBEDDER)
    try:
        assert (again.version, again.digest, len(again.segments)) == (4, digests[4], 1)
        assert again.segments[0].path.name == "0000000004-merged.seg" and _sha(base) == before
        assert digest.recompute_content_digest(again) == digests[4]
        assert again.search(vectors[370], k=1)[0].record.source == "SUBJ-00370/370.jpg"
        sources = {c.record.source for c in again.search(vectors[342], k=50)}
        assert "SUBJ-00342/342.jpg" not in sources and "SUBJ-00024/24.jpg" not in sources  # removed stay gone
        assert again.count == len(MEMBERS[4]) == len(list(again.records()))
    finally:
        again.close()
        merged.close()


def test_a_merge_never_loads_the_base_index(chain, tmp_path: Path) -> None:
    """What makes it fit any desk: with the base's stored index damaged, folding into a base fails (it loads
    that index) while merging the segments succeeds."""
    key = chain[0]
    root, store = _device_with_segments(chain, tmp_path)
    alter_stored_index(store.current_path(), key)
    with pytest.raises(SnapshotError, match="does not match its digest"):
        compact(store, key, mode="base")
    assert compact(store, key, mode="segments") == 3
    assert [p.name for p in (root / "segments").iterdir()] == ["0000000003-merged.seg"]


def test_the_store_merges_segments_when_the_base_would_not_fit_twice_in_memory(chain, tmp_path: Path,
                                                                                monkeypatch) -> None:
    from library import index

    key, _, fulls, deltas, _ = chain
    store = LibraryStore(tmp_path / "device")
    store.install_full(fulls[1], key)
    assert store.compaction_plan(key) is None  # nothing to compact
    store.install_delta(deltas[2], key)
    needed = index.memory_bytes(len(MEMBERS[1]), 192)
    assert store.compaction_mode(key, memory_available=2 * needed) == "base"
    assert store.compaction_mode(key, memory_available=2 * needed - 1) == "segments"
    monkeypatch.setattr("library.store.COMPACT_SEGMENTS", 2)
    assert store.compaction_plan(key, memory_available=2 * needed) is None  # one segment: under every threshold
    assert store.compaction_plan(key, memory_available=2 * needed - 1) is None
    store.install_delta(deltas[3], key)
    assert store.compaction_plan(key, memory_available=2 * needed) == "base"
    assert store.compaction_plan(key, memory_available=2 * needed - 1) == "segments"
    monkeypatch.setattr("library.memory.available_bytes", lambda: 0)  # the kernel's figure when none is given
    assert store.compaction_plan(key) == "segments"
