import itertools
from pathlib import Path

import numpy as np
import pytest
import sqlcipher3

from library.errors import EmbedderMismatchError, SnapshotError, SnapshotKeyError
from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, check_template, new_key, read_key_file, write_key_file

DIM = 192


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(path: Path, key: bytes, vectors: np.ndarray, embedder: str = "emb@1") -> None:
    with SnapshotWriter.create(path, key, embedder_id=embedder, dim=DIM, version=3) as writer:
        for i, v in enumerate(vectors):
            writer.add(ReferenceRecord(subject_ref=f"SUBJ-{i:04d}", source=f"s/{i}.jpg", sex="F",
                                       ethnicity_code="IC1"), v, b"\xff\xd8thumb-%d\xff\xd9" % i)


@pytest.fixture
def snapshot_file(tmp_path: Path):
    key = new_key()
    vectors = unit_vectors(300)
    build(tmp_path / "lib.db", key, vectors)
    return tmp_path / "lib.db", key, vectors


def test_search_finds_each_record_first(snapshot_file):
    path, key, vectors = snapshot_file
    snap = Snapshot.open(path, key, expected_embedder="emb@1")
    assert (snap.count, snap.version, snap.dim) == (300, 3, DIM)
    for i in (0, 17, 299):
        top = snap.search(vectors[i], k=5)
        assert top[0].record.subject_ref == f"SUBJ-{i:04d}"
        assert top[0].rank == 1 and top[0].score == pytest.approx(1.0, abs=1e-5)
        assert [c.rank for c in top] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in itertools.pairwise(top))


def test_templates_thumbnails_and_records_come_back(snapshot_file):
    path, key, vectors = snapshot_file
    snap = Snapshot.open(path, key)
    record_id = snap.search(vectors[5], k=1)[0].record.record_id
    assert snap.thumbnail(record_id) == b"\xff\xd8thumb-5\xff\xd9"
    np.testing.assert_allclose(snap.template(record_id), vectors[5])
    assert snap.record(record_id).ethnicity_code == "IC1"


def test_nothing_readable_on_disk(snapshot_file):
    path, _, vectors = snapshot_file
    raw = path.read_bytes()
    assert b"SUBJ-0005" not in raw and b"thumb-5" not in raw and b"SQLite format" not in raw
    assert vectors[5].tobytes()[:32] not in raw


def test_wrong_key_is_refused_with_a_clear_message(snapshot_file):
    path, _, _ = snapshot_file
    with pytest.raises(SnapshotKeyError, match="cannot be opened with this key"):
        Snapshot.open(path, new_key())


def test_tampered_file_is_refused(snapshot_file):
    path, key, _ = snapshot_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError):
        snap = Snapshot.open(path, key)
        for rid in range(1, 301):
            snap.thumbnail(rid)
            snap.template(rid)


def test_other_embedder_is_refused(snapshot_file):
    path, key, _ = snapshot_file
    with pytest.raises(EmbedderMismatchError, match="emb@1"):
        Snapshot.open(path, key, expected_embedder="other@2")


def test_probe_of_wrong_dimension_is_refused(snapshot_file):
    path, key, _ = snapshot_file
    with pytest.raises(EmbedderMismatchError, match="128 dimensions"):
        Snapshot.open(path, key).search(np.ones(128, dtype=np.float32), k=3)


def test_failed_build_leaves_no_file(tmp_path: Path):
    key = new_key()
    with pytest.raises(SnapshotError, match="not a unit vector"), \
            SnapshotWriter.create(tmp_path / "lib.db", key, embedder_id="e", dim=DIM) as writer:
        writer.add(ReferenceRecord(subject_ref="A", source="a"), np.ones(DIM, np.float32), b"")
    assert list(tmp_path.iterdir()) == []


def test_empty_library_searches_to_nothing(tmp_path: Path):
    key = new_key()
    build(tmp_path / "lib.db", key, np.empty((0, DIM), np.float32))
    assert Snapshot.open(tmp_path / "lib.db", key).search(unit_vectors(1)[0], k=5) == []


def test_key_file_is_private_and_round_trips(tmp_path: Path):
    key = new_key()
    write_key_file(tmp_path / "k", key)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert read_key_file(tmp_path / "k") == key
    (tmp_path / "bad").write_text("zz")
    with pytest.raises(SnapshotKeyError, match="not a hex key"):
        read_key_file(tmp_path / "bad")


def test_interrupted_build_resumes_to_the_same_library(tmp_path: Path):
    from tests.library.builders import build as build_records
    from tests.library.builders import record, thumbnail

    key, vectors = new_key(), unit_vectors(30)
    with pytest.raises(KeyboardInterrupt), \
            SnapshotWriter.create(tmp_path / "lib.db", key, embedder_id="emb@1", dim=DIM) as writer:
        for i in range(20):
            writer.add(record(i), vectors[i], thumbnail(i))
        raise KeyboardInterrupt
    assert not (tmp_path / "lib.db").exists()
    with pytest.raises(SnapshotError, match="unfinished library build"):
        Snapshot.open(tmp_path / "lib.db.building", key)
    with pytest.raises(SnapshotError, match="has embedder_id"):
        SnapshotWriter.create(tmp_path / "lib.db", key, embedder_id="other@1", dim=DIM, resume=True)

    with SnapshotWriter.create(tmp_path / "lib.db", key, embedder_id="emb@1", dim=DIM, resume=True) as writer:
        assert writer.done_sources() == {record(i).source for i in range(20)}
        for i in range(20, 30):
            writer.add(record(i), vectors[i], thumbnail(i))
        with pytest.raises(SnapshotError, match="already in this library"):
            writer.add(record(3), vectors[3], thumbnail(3))

    resumed = Snapshot.open(tmp_path / "lib.db", key)
    whole = Snapshot.open(build_records(tmp_path / "whole.db", key, dict(enumerate(vectors))), key)
    assert resumed.count == 30 and resumed.digest == whole.digest
    assert resumed.search(vectors[25], k=1)[0].record.source == record(25).source


def test_serving_snapshot_is_open_read_only(snapshot_file):
    """A stray write through the serving connection is refused by SQLite, and the file is unchanged."""
    path, key, vectors = snapshot_file
    before = path.read_bytes()
    snap = Snapshot.open(path, key)
    with pytest.raises(sqlcipher3.OperationalError, match="readonly"):
        snap._conn.execute("DELETE FROM records")
    assert snap.search(vectors[5], k=1)[0].record.subject_ref == "SUBJ-0005"
    snap.close()
    assert path.read_bytes() == before


def test_a_template_of_huge_values_is_refused_without_an_overflow_warning() -> None:
    """float32 squares overflowed inside the norm, a RuntimeWarning before the refusal (an error under
    filterwarnings = error); found by tests/library/test_delta_properties.py."""
    import warnings

    from library.snapshot import check_template

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SnapshotError, match="not a unit vector"):
            check_template(np.array([3e38, 0, 0, 0], dtype=np.float32), 4)


def test_index_written_in_other_chunk_sizes_loads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The loader sizes its buffer from the chunk count (reading each blob once); a file whose chunks are
    larger or smaller than today's CHUNK_BYTES must still give the same index."""
    from library import index

    key, vectors = new_key(), unit_vectors(300)
    monkeypatch.setattr(index, "CHUNK_BYTES", 4096)  # many small chunks, each full but the last
    build(tmp_path / "small.db", key, vectors)
    monkeypatch.setattr(index, "CHUNK_BYTES", 1000)  # the loader now expects smaller chunks than were written
    snap = Snapshot.open(tmp_path / "small.db", key, expected_embedder="emb@1")
    top = snap.search(vectors[17], k=3)
    assert top[0].record.subject_ref == "SUBJ-0017" and top[0].score == pytest.approx(1.0, abs=1e-5)
    monkeypatch.setattr(index, "CHUNK_BYTES", 1 << 20)  # and larger than were written
    again = Snapshot.open(tmp_path / "small.db", key, expected_embedder="emb@1")
    assert [c.record.subject_ref for c in again.search(vectors[17], k=3)] == [c.record.subject_ref for c in top]


def test_a_template_holding_a_signalling_nan_is_refused_as_damaged_not_as_a_warning() -> None:
    """A damaged or forged template whose bytes read as a signalling NaN: casting it to float64 raised a NumPy
    warning (an error under strict warnings) instead of the plain refusal (found by the delta property test)."""
    vector = np.frombuffer(np.array([0x7FA00000, 0, 0, 0], dtype="<u4").tobytes(), dtype=np.float32)
    with pytest.raises(SnapshotError, match="not a unit vector"):
        check_template(vector, 4)
