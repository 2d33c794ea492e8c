"""Properties of the HNSW state check (Hypothesis): any mutation of a state is refused or is safe to search.

A tiny index (20 nodes, 4 dimensions, M=4) keeps each example fast. Whatever the mutation (scalars replaced by
any JSON value, array bytes flipped, arrays truncated or extended), ``join_state`` either raises
``SnapshotError`` or returns an index that hnswlib can search without crashing the process.
"""

from __future__ import annotations

import json

import hnswlib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from library import index
from library.errors import SnapshotError

DIM = 4
SCALARS = ["M", "cur_element_count", "dim", "ef", "enterpoint_node", "has_deletions", "label_offset", "max_M",
           "max_M0", "max_elements", "max_level", "mult", "num_threads", "offset_data", "offset_level0",
           "ser_version", "size_data_per_element", "size_links_per_element", "space", "allow_replace_deleted",
           "ep_added", "index_inited", "normalize", "seed"]
ARRAYS = ["data_level0", "element_levels", "label_lookup_external", "label_lookup_internal", "link_lists"]


def _tiny_state(seed: int) -> tuple[str, dict[str, np.ndarray]]:
    vectors = np.random.default_rng(seed).normal(size=(20, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hnsw = hnswlib.Index(space=index.SPACE, dim=DIM)
    hnsw.init_index(max_elements=20, M=4, ef_construction=20, random_seed=seed)
    hnsw.add_items(vectors, np.arange(1, 21, dtype=np.uint64))
    return index.split_state(hnsw)


STATES = [_tiny_state(seed) for seed in range(3)]
scalar_values = st.one_of(st.integers(-(2**40), 2**40), st.integers(-3, 70), st.floats(allow_nan=False),
                          st.booleans(), st.none(), st.text(max_size=4), st.lists(st.integers(), max_size=2))


def _join_and_search(scalars: str, arrays: dict[str, np.ndarray]) -> None:
    try:
        hnsw = index.join_state(scalars, arrays, DIM)
    except SnapshotError:
        return
    probe = np.full(DIM, 0.5, dtype=np.float32)
    for k in (1, 5):
        try:
            index.search(hnsw, probe, k)
        except RuntimeError as e:  # hnswlib found fewer than k reachable nodes: its refusal, not a crash
            assert str(e).startswith("Cannot return the results")


@settings(max_examples=40)
@given(st.sampled_from(range(len(STATES))))
def test_a_valid_state_round_trips_and_searches(which: int) -> None:
    scalars, arrays = STATES[which]
    hnsw = index.join_state(scalars, {k: v.copy() for k, v in arrays.items()}, DIM)
    assert json.loads(index.split_state(hnsw)[0]) == json.loads(scalars) | {"ef": index.SEARCH_EF}
    labels, _ = index.search(hnsw, np.full(DIM, 0.5, dtype=np.float32), 20)
    assert sorted(labels.tolist()) == list(range(1, 21))


@settings(max_examples=200)
@given(st.sampled_from(range(len(STATES))), st.dictionaries(st.sampled_from(SCALARS), scalar_values, min_size=1,
                                                           max_size=3))
def test_any_scalar_values_are_refused_or_safe(which: int, changes: dict) -> None:
    scalars, arrays = STATES[which]
    state = json.loads(scalars) | changes
    _join_and_search(json.dumps(state), {k: v.copy() for k, v in arrays.items()})


@settings(max_examples=300)
@given(st.sampled_from(range(len(STATES))), st.lists(st.tuples(st.sampled_from(ARRAYS), st.integers(0, 10**6),
                                                               st.integers(0, 255)), min_size=1, max_size=8))
def test_any_byte_changes_in_the_arrays_are_refused_or_safe(which: int, edits: list) -> None:
    scalars, arrays = STATES[which]
    raw = {k: bytearray(v.tobytes()) for k, v in arrays.items()}
    for name, where, value in edits:
        raw[name][where % len(raw[name])] = value
    _join_and_search(scalars, {k: np.frombuffer(bytes(raw[k]), dtype=arrays[k].dtype).copy() for k in ARRAYS})


@settings(max_examples=150)
@given(st.sampled_from(range(len(STATES))), st.sampled_from(ARRAYS), st.integers(-64, 64))
def test_arrays_of_the_wrong_length_are_refused(which: int, name: str, delta: int) -> None:
    scalars, arrays = STATES[which]
    arrays = {k: v.copy() for k, v in arrays.items()}
    itemsize = arrays[name].dtype.itemsize
    count = max(arrays[name].size + delta // itemsize, 0)
    grown = np.resize(arrays[name], count) if count else arrays[name][:0]
    arrays[name] = grown
    if delta // itemsize == 0:
        return
    try:
        index.join_state(scalars, arrays, DIM)
    except SnapshotError:
        return
    raise AssertionError(f"{name} resized by {delta // itemsize} items was accepted")


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_any_scalar_text_is_refused_or_safe(text: bytes) -> None:
    _, arrays = STATES[0]
    _join_and_search(text.decode("utf-8", "replace"), {k: v.copy() for k, v in arrays.items()})
