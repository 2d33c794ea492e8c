"""The stored index is authenticated and checked before hnswlib's loader sees it."""

import json
from pathlib import Path

import numpy as np
import pytest

from library import index
from library.errors import SnapshotError
from library.snapshot import Snapshot, new_key
from tests.library.builders import DIM, alter_stored_index, build, unit_vectors


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
    alter_stored_index(path, key)  # someone holding the key, or a bug: SQLCipher's HMAC cannot object
    with pytest.raises(SnapshotError, match="does not match its digest"):
        Snapshot.open(path, key)


def _levels_of(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return arrays["element_levels"].view(np.int32)


def _with_levels(arrays: dict[str, np.ndarray], levels: np.ndarray) -> None:
    arrays["element_levels"] = levels.astype(np.int32).view(arrays["element_levels"].dtype)


def test_entry_point_below_the_top_level_is_refused() -> None:
    # hnswlib searches from the entry point down from max_level: an entry point without that level
    # read links from outside its allocation and crashed the process at the first search.
    scalars, arrays = _state(400)
    state = json.loads(scalars)
    levels = _levels_of(arrays)
    other = next(i for i in range(400) if levels[i] < state["max_level"])
    state["enterpoint_node"] = other
    with pytest.raises(SnapshotError, match="entry point is not on the top level"):
        index.join_state(json.dumps(state), arrays, DIM)


def test_upper_level_link_to_a_node_without_that_level_is_refused() -> None:
    scalars, arrays = _state(400)
    levels = _levels_of(arrays)[:400]
    blocks = arrays["link_lists"].view(np.uint32).reshape(-1, index.M + 1).copy()
    level_of_block = index._block_levels(levels)
    ground = int(np.flatnonzero(levels == 0)[0])
    row = int(np.flatnonzero(level_of_block >= 1)[0])
    blocks[row, 0] = max(int(blocks[row, 0]) & 0xFFFF, 1)
    blocks[row, 1] = ground
    arrays["link_lists"] = blocks.reshape(-1).view(arrays["link_lists"].dtype)
    with pytest.raises(SnapshotError, match="names a level its target does not have"):
        index.join_state(scalars, arrays, DIM)


def test_levels_past_the_element_count_are_refused() -> None:
    vectors = unit_vectors(50)
    hnsw = index.build_index(vectors, np.arange(1, 51, dtype=np.uint64))
    hnsw.resize_index(80)
    scalars, arrays = index.split_state(hnsw)
    levels = _levels_of(arrays).copy()
    levels[70] = 3
    _with_levels(arrays, levels)
    with pytest.raises(SnapshotError, match="levels are set for nodes the index does not hold"):
        index.join_state(scalars, arrays, DIM)


@pytest.mark.parametrize(("damage", "message"), [("duplicate_node", "does not name each node once"),
                                                  ("duplicate_label", "names a label twice"),
                                                  ("swapped", "disagrees with the graph's labels")])
def test_label_map_must_pair_each_node_with_its_own_label(damage: str, message: str) -> None:
    scalars, arrays = _state()
    external = arrays["label_lookup_external"].copy()
    internal = arrays["label_lookup_internal"].copy()
    if damage == "duplicate_node":
        internal[3] = internal[4]
    elif damage == "duplicate_label":
        external[3] = external[4]
    else:
        external[3], external[4] = external[4], external[3]
    arrays["label_lookup_external"], arrays["label_lookup_internal"] = external, internal
    with pytest.raises(SnapshotError, match=message):
        index.join_state(scalars, arrays, DIM)


def test_a_checked_state_with_deletions_still_loads_and_searches() -> None:
    vectors = unit_vectors(300)
    hnsw = index.build_index(vectors, np.arange(1, 301, dtype=np.uint64))
    for label in range(1, 301, 3):
        hnsw.mark_deleted(label)
    scalars, arrays = index.split_state(hnsw)
    restored = index.join_state(scalars, arrays, DIM)
    labels, _ = index.search(restored, vectors[1], 5, live=200)
    assert labels[0] == 2 and all(int(x) % 3 != 1 for x in labels)


@pytest.mark.parametrize("name", ["M", "cur_element_count", "max_level", "enterpoint_node", "max_elements"])
@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_scalars_are_refused_as_damage(name: str, value: str) -> None:
    """json.loads reads Infinity and NaN, and int(inf) raises OverflowError, which escaped check_state
    (found by tests/library/test_index_properties.py)."""
    scalars, arrays = _state(20)
    text = scalars.replace(f'"{name}": ', f'"{name}": {value}, "was_{name}": ', 1)
    with pytest.raises(SnapshotError, match="damaged"):
        index.join_state(text, arrays, DIM)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("index_inited", False),  # hnswlib restores no graph, and the first search dereferences it: a segfault
        ("index_inited", 1),
        ("normalize", True),
        ("ep_added", False),
        ("has_deletions", "no"),
        ("num_threads", 10**9),
        ("ef_construction", 0),
        ("mult", 1e300),
        ("mult", -1.0),
        ("seed", "x"),
    ],
)
def test_loader_flags_and_build_parameters_are_checked(name: str, value: object) -> None:
    """The scalars check_state did not look at. index_inited false passed the check and segfaulted the first
    search (found by tests/library/test_index_properties.py); the others feed hnswlib's later add_items."""
    scalars, arrays = _state(20)
    state = json.loads(scalars) | {name: value}
    with pytest.raises(SnapshotError, match="damaged"):
        index.join_state(json.dumps(state), arrays, DIM)


@pytest.mark.parametrize(("name", "value"), [("mult", 1 / np.log(32) + 1e-12), ("ef_construction", 31)])
def test_parameters_hnswlib_rebuilds_and_compares_are_refused_before_its_loader(name: str, value: object) -> None:
    """hnswlib rebuilds the index from M and ef_construction, compares, and throws on a mismatch after allocating
    about 2.6 MB that it never frees: the fuzzer's index target grew past 2.5 GB. check_state refuses these first."""
    scalars, arrays = _state(20)
    state = json.loads(scalars) | {name: float(value) if name == "mult" else value}
    with pytest.raises(SnapshotError, match=name) as refused:
        index.join_state(json.dumps(state), arrays, DIM)
    assert "Unpickle" not in str(refused.value)
