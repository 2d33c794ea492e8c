"""Deltas turn one library version into the next, and refuse anything that would not."""

from pathlib import Path

import numpy as np
import pytest

from library import cipher
from library.delta import apply_delta, make_delta, read_delta_info
from library.digest import recompute_content_digest
from library.errors import DeltaBaseMismatchError, DeltaError, DeltaResultMismatchError
from library.snapshot import Snapshot, new_key
from tests.library.builders import build, record, unit_vectors


@pytest.fixture
def lineage(tmp_path: Path):
    """v1 with records 0-199; v2 drops 0-9, changes 10 (metadata) and 11 (template), adds 200-229."""
    key, vectors = new_key(), unit_vectors(230)
    v1 = build(tmp_path / "v1.db", key, {i: vectors[i] for i in range(200)}, version=1)
    moved = vectors[11] + 0.05 * vectors[12]
    items2 = {i: vectors[i] for i in range(10, 230)} | {11: moved / np.linalg.norm(moved)}
    v2 = build(tmp_path / "v2.db", key, items2, version=2, changed={10: record(10, sex=None, age_band="25-34")})
    return key, vectors, v1, v2


def _open(path: Path, key: bytes) -> Snapshot:
    return Snapshot.open(path, key, expected_embedder="emb@1")


def test_applied_delta_reproduces_the_target_library(lineage, tmp_path: Path) -> None:
    key, vectors, v1, v2 = lineage
    base, target = _open(v1, key), _open(v2, key)
    info = make_delta(base, target, tmp_path / "v1-v2.delta", key)
    assert (info.base_version, info.result_version, info.added, info.removed) == (1, 2, 32, 12)
    assert (info.base_digest, info.result_digest) == (base.digest, target.digest)
    assert read_delta_info(tmp_path / "v1-v2.delta", key) == info

    out = apply_delta(v1, tmp_path / "v1-v2.delta", key, tmp_path / "applied.db")

    applied = _open(out, key)
    assert (applied.version, applied.count, applied.digest) == (2, 220, target.digest)
    assert recompute_content_digest(applied) == target.digest
    assert applied.search(vectors[215], k=1)[0].record.source == "SUBJ-00215/215.jpg"
    assert all(not c.record.source.startswith("SUBJ-0000") for c in applied.search(vectors[3], k=50))
    assert applied.search(vectors[10], k=1)[0].record.age_band == "25-34"
    assert len(applied.search(vectors[0], k=500)) == 220
    assert _open(v1, key).digest == base.digest  # the base is untouched


def test_delta_for_another_base_is_refused_and_nothing_is_written(lineage, tmp_path: Path) -> None:
    key, vectors, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    other = build(tmp_path / "other.db", key, {i: vectors[i] for i in range(150)}, version=1)
    with pytest.raises(DeltaBaseMismatchError, match="installed library is version 1"):
        apply_delta(other, tmp_path / "d", key, tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()
    assert not list(tmp_path.glob("*.applying"))


def test_result_that_differs_from_the_signed_digest_is_refused(lineage, tmp_path: Path) -> None:
    key, _, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    conn = cipher.connect(tmp_path / "d", key)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'result_digest'", ("0" * 64,))
    conn.commit()
    conn.close()
    with pytest.raises(DeltaResultMismatchError, match="not installed"):
        apply_delta(v1, tmp_path / "d", key, tmp_path / "out.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "v1.db", "v2.db"]


def test_tampered_added_record_is_refused(lineage, tmp_path: Path) -> None:
    key, _, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    conn = cipher.connect(tmp_path / "d", key)
    conn.execute("UPDATE records SET subject_ref = 'SOMEONE-ELSE' WHERE record_id = 1")
    conn.commit()
    conn.close()
    with pytest.raises(DeltaError, match="does not match its digest"):
        apply_delta(v1, tmp_path / "d", key, tmp_path / "out.db")


@pytest.mark.parametrize(
    ("statement", "values"),
    [
        ("UPDATE records SET date_of_birth = ? WHERE record_id = 1", ("not a date",)),
        ("UPDATE records SET sex = ? WHERE record_id = 1", (b"M",)),
        ("UPDATE templates SET vector = ? WHERE record_id = 1", (b"\x00" * 7,)),
        ("UPDATE templates SET vector = ? WHERE record_id = 1", ("text, not a template",)),
        ("UPDATE thumbnails SET jpeg = ? WHERE record_id = 1", (12,)),
        ("UPDATE records SET digest = ? WHERE record_id = 1", (3.5,)),
    ],
)
def test_malformed_added_record_is_a_delta_error(lineage, tmp_path: Path, statement: str, values: tuple) -> None:
    """A damaged row (wrong type, bad date, a template that is not whole float32s) is refused as a DeltaError,
    like any other damage, never a ValueError or TypeError that escapes the updater's handling."""
    key, _, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    conn = cipher.connect(tmp_path / "d", key)
    conn.execute(statement, values)
    conn.commit()
    conn.close()
    with pytest.raises(DeltaError, match="record"):
        apply_delta(v1, tmp_path / "d", key, tmp_path / "out.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "v1.db", "v2.db"]


def test_delta_under_another_key_is_refused(lineage, tmp_path: Path) -> None:
    key, _, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    with pytest.raises(Exception, match="cannot be opened with this key"):
        apply_delta(v1, tmp_path / "d", new_key(), tmp_path / "out.db")


def test_large_removals_rebuild_the_index(tmp_path: Path) -> None:
    key, vectors = new_key(), unit_vectors(300)
    v1 = build(tmp_path / "v1.db", key, dict(enumerate(vectors)), version=1)
    v2 = build(tmp_path / "v2.db", key, {i: vectors[i] for i in range(150, 300)}, version=2)
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    applied = _open(apply_delta(v1, tmp_path / "d", key, tmp_path / "out.db"), key)
    assert applied.meta["index_deleted"] == "0"
    assert applied.index.get_current_count() == 150
    assert applied.search(vectors[160], k=1)[0].record.source == "SUBJ-00160/160.jpg"


def test_no_plaintext_reaches_disk(lineage, tmp_path: Path) -> None:
    key, vectors, v1, v2 = lineage
    make_delta(_open(v1, key), _open(v2, key), tmp_path / "d", key)
    apply_delta(v1, tmp_path / "d", key, tmp_path / "out.db")
    for path in tmp_path.iterdir():
        raw = path.read_bytes()
        assert b"SUBJ-00215" not in raw and b"thumb-215" not in raw and b"SQLite format" not in raw, path
        assert vectors[215].tobytes()[:32] not in raw
