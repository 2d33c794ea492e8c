"""Properties of the delta parser (Hypothesis): a delta's meta and rows, whatever SQLite hands back, are parsed or
refused with a SnapshotError (DeltaError), never a ValueError or TypeError."""

from __future__ import annotations

from datetime import date
from pathlib import Path, PurePath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from library import cipher
from library.delta import DELTA_FORMAT, _info, added_record, apply_delta, make_delta
from library.errors import SnapshotError
from library.records import ReferenceRecord
from library.snapshot import FORMAT_VERSION, Snapshot, SnapshotWriter, new_key

DIM = 4
# What SQLite returns: TEXT columns hold text, blobs or NULL; BLOB columns any storage class.
texts = st.none() | st.text(max_size=12) | st.binary(max_size=12) | st.sampled_from(["1990-02-03", "2020-13-01", ""])
blobs = texts | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.binary(min_size=16, max_size=16)
VALID_META = {"format": DELTA_FORMAT, "format_version": str(FORMAT_VERSION), "base_version": "1",
              "base_digest": "sha256:" + "a" * 64, "result_version": "2", "result_digest": "sha256:" + "b" * 64,
              "embedder_id": "emb@1", "dim": str(DIM), "added": "1", "removed": "0"}


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _record(i: int) -> ReferenceRecord:
    return ReferenceRecord(f"SUBJ-{i}", f"SUBJ-{i}/{i}.jpg", sex="MF"[i % 2], ethnicity_code="IC2",
                           date_of_birth=date(1980, 1, 1 + i), image_date=date(2020, 2, 2), age_band="25-34")


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(VALID_META)), texts.filter(lambda v: v is not None), max_size=4))
def test_any_meta_is_parsed_or_refused(changes: dict) -> None:
    meta = VALID_META | changes
    try:
        info = _info(meta, PurePath("d.delta"))  # type: ignore[arg-type]
    except SnapshotError:
        return
    assert isinstance(info.dim, int) and isinstance(info.result_version, int)


@settings(max_examples=300)
@given(st.integers(-(2**63), 2**63 - 1), st.lists(texts, min_size=8, max_size=8), st.lists(blobs, min_size=3,
                                                                                          max_size=3))
def test_any_row_is_parsed_or_refused(record_id: int, text_columns: list, blob_columns: list) -> None:
    try:
        record, vector, _ = added_record((record_id, *text_columns, *blob_columns), DIM)
    except SnapshotError:
        return
    assert record.record_id == record_id and vector.shape == (DIM,)


@pytest.fixture(scope="module")
def delta_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path, Path]:
    folder = tmp_path_factory.mktemp("delta")
    key = new_key()
    for version, items in ((1, range(0, 4)), (2, range(2, 6))):
        with SnapshotWriter.create(folder / f"v{version}.db", key, embedder_id="emb@1", dim=DIM,
                                   version=version) as writer:
            for i in items:
                writer.add(_record(i), _vector(i), b"\xff\xd8thumb-%d\xff\xd9" % i)
    base, target = Snapshot.open(folder / "v1.db", key), Snapshot.open(folder / "v2.db", key)
    make_delta(base, target, folder / "d", key)
    base.close()
    target.close()
    return key, folder / "v1.db", folder / "d"


COLUMNS = [("records", c) for c in ("subject_ref", "sex", "ethnicity_code", "date_of_birth", "age_band",
                                    "image_date", "source", "quality", "digest")]
COLUMNS += [("templates", "vector"), ("thumbnails", "jpeg")]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(COLUMNS), blobs.filter(lambda v: v is not None))
def test_a_real_delta_with_any_value_in_a_row_is_applied_or_refused(delta_files, tmp_path: Path, column: tuple,
                                                                   value: object) -> None:
    key, base, original = delta_files
    table, name = column
    damaged = tmp_path / "damaged.delta"
    damaged.write_bytes(original.read_bytes())
    conn = cipher.connect(damaged, key)
    try:
        conn.execute(f"UPDATE {table} SET {name} = ? WHERE record_id = 1", (value,))
        conn.commit()
    except Exception:  # a value the schema itself refuses (NOT NULL, UNIQUE): nothing to parse
        conn.close()
        return
    conn.close()
    out = tmp_path / "out.db"
    out.unlink(missing_ok=True)
    try:
        apply_delta(base, damaged, key, out)
    except SnapshotError:
        assert not out.exists()
