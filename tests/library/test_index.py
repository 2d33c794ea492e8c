"""The stored index is authenticated and checked before hnswlib's loader sees it."""

from pathlib import Path

import numpy as np
import pytest

from library import cipher, index
from library.errors import SnapshotError
from library.snapshot import Snapshot, new_key
from tests.library.builders import DIM, build, unit_vectors


def _state(n: int = 200) -> tuple[str, dict[str, np.ndarray]]:
    vectors = unit_vectors(n)
    return index.split_state(index.build_index(vectors, np.arange(1, n + 1, dtype=np.uint64)))


def test_round_trip_without_pickle_gives_the_same_results() -> None:
    scalars, arrays = _state()
    restored = index.join_state(scalars, arrays, DIM)
    probe = unit_vectors(1, seed=5)[0]
    labels, scores = index.search(restored, probe, 10)
    assert len(labels) == 10 and all(np.diff(scores) <= 1e-6)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("link", "a link points outside the index"),
        ("count", "more links than the graph allows"),
        ("truncate", "data_level0 holds"),
        ("label", "a label points outside"),
    ],
)
def test_crafted_state_is_refused_before_parsing(damage: str, message: str) -> None:
    scalars, arrays = _state()
    per_elem = 2 * index.M * 4 + 4 + DIM * 4 + 8
    level0 = arrays["data_level0"].view(np.uint8).reshape(200, per_elem).copy()
    if damage == "link":
        level0[7, 4:8] = np.frombuffer(np.uint32(10_000_000).tobytes(), np.uint8)
        level0[7, 0] = max(level0[7, 0], 1)
    elif damage == "count":
        level0[7, 0:2] = np.frombuffer(np.uint16(999).tobytes(), np.uint8)
    elif damage == "label":
        arrays["label_lookup_internal"] = arrays["label_lookup_internal"].copy()
        arrays["label_lookup_internal"][3] = 5000
    arrays["data_level0"] = level0.reshape(-1).view(arrays["data_level0"].dtype)
    if damage == "truncate":
        arrays["data_level0"] = arrays["data_level0"][:-100]
    with pytest.raises(SnapshotError, match=message):
        index.join_state(scalars, arrays, DIM)


def test_other_dimension_is_refused() -> None:
    scalars, arrays = _state()
    with pytest.raises(SnapshotError, match="dim"):
        index.join_state(scalars, arrays, 128)


def test_index_altered_inside_the_file_is_refused_by_its_digest(tmp_path: Path) -> None:
    key = new_key()
    path = build(tmp_path / "lib.db", key, dict(enumerate(unit_vectors(100))))
    conn = cipher.connect(path, key)  # someone holding the key, or a bug: SQLCipher's HMAC cannot object
    data = bytearray(conn.execute("SELECT data FROM index_arrays WHERE name = 'data_level0'").fetchone()[0])
    data[100] ^= 0xFF
    conn.execute("UPDATE index_arrays SET data = ? WHERE name = 'data_level0'", (bytes(data),))
    conn.commit()
    conn.close()
    with pytest.raises(SnapshotError, match="does not match its digest"):
        Snapshot.open(path, key)
