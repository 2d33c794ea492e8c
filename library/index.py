"""The HNSW index over templates, and its serialisation without pickle.

The index is stored as named arrays inside the encrypted snapshot and
rebuilt with hnswlib's own state loader, so no plaintext index file ever
exists and nothing is unpickled. hnswlib's loader trusts its input (a crafted
state can make it read or write out of bounds), so ``check_state`` validates
every size and link before ``join_state`` hands the state over, and the
snapshot authenticates the bytes (``library.index_storage``) before that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import hnswlib
import numpy as np

from library.errors import SnapshotError

SPACE = "ip"  # templates are unit vectors: inner product is cosine similarity
# M, ef_construction and ef were chosen with bench/library.py on 1M synthetic 192-D templates
# (docs/benchmarks.md): M=24 lost recall at every ef; ef_construction 250 instead of 100 let ef=64 reach
# recall 0.994 where 100 needed ef=80, and 400 bought little more for 1.7x the build time.
M = 32
EF_CONSTRUCTION = 250
BUILD_CHUNK = 50_000  # templates per add_items call when building from a file (~37 MB at 192-D)
# Search beam. Chosen on mates planted across the embedder's genuine scores (bench/library.py, recall_at_50_by_band;
# docs/benchmarks.md), measured at 1M on a quiet machine (2026-12-05): mates at cosine 0.7-0.9 reach 0.99 from
# ef 200 (0.979 at 128), at p50 / p99 1.33 / 1.77 ms; 256 is over the 2 ms p99 (2.07 ms). Typical genuine pairs
# (0.5-0.7) and those near the threshold (0.3-0.5) need far wider beams (0.79 / 0.40 at ef 200, 0.97 / 0.90 at
# 1024 with p99 6.7 ms): no ef meets 0.99 in every band within 2 ms, so 200 is the widest that keeps p99 under it.
SEARCH_EF = 200
# A delta segment's index is small (thousands of records) and built on the desk while it searches: at 10k
# templates ef_construction 100 gave the same mate recall@50 as 250 (0.90 vs 0.92 for mates at cosine 0.3-0.5,
# 500 probes, within noise) in half the build time (5.3 s vs 10.6 s on one loaded core).
SEGMENT_EF_CONSTRUCTION = 100
CHUNK_BYTES = 64 * 1024 * 1024
_SER_VERSION = 1


def memory_bytes(count: int, dim: int) -> int:
    """What loading a stored index of ``count`` templates costs a process at its peak, from hnswlib's layout.

    Per element: the vector, the level-0 links (2M ids) with their count, the label, and about 120 bytes of
    upper-level links and label map (1M x 192-D measured at ~1.1 KB an element, ``docs/benchmarks.md``).
    Loading holds the stored arrays and the index built from them at once, hence twice that.
    """
    return 2 * count * (4 * dim + 8 * M + 4 + 8 + 120)


def rows_as_arrays(rows: list[tuple[object, ...]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(record_id, template bytes) rows as the (vectors, labels) arrays ``add_items`` takes."""
    vectors = np.frombuffer(b"".join(bytes(v) for _, v in rows), dtype=np.float32).reshape(-1, dim)  # type: ignore[call-overload]
    labels = np.fromiter((int(r) for r, _ in rows), dtype=np.uint64, count=len(rows))  # type: ignore[call-overload]
    return vectors, labels


def extend(hnsw: hnswlib.Index, removed: Iterable[int], rows: list[tuple[object, ...]], dim: int,
           threads: int = 1) -> hnswlib.Index:
    """``hnsw`` with the ``removed`` labels marked deleted and the (record_id, template) ``rows`` added."""
    for label in removed:
        hnsw.mark_deleted(label)
    if rows:
        hnsw.resize_index(hnsw.get_current_count() + len(rows))
        hnsw.set_num_threads(max(threads, 1))
        hnsw.add_items(*rows_as_arrays(rows, dim))
    return hnsw


def build_index(vectors: np.ndarray, labels: np.ndarray, threads: int = 2,
                ef_construction: int = EF_CONSTRUCTION) -> hnswlib.Index:
    count, dim = vectors.shape
    index = hnswlib.Index(space=SPACE, dim=dim)
    index.init_index(max_elements=max(count, 1), M=M, ef_construction=ef_construction)
    index.set_num_threads(threads)
    if count:
        index.add_items(vectors, labels)
    index.set_ef(SEARCH_EF)
    return index


def build_index_streamed(chunks: Iterable[tuple[np.ndarray, np.ndarray]], count: int, dim: int,
                         threads: int = 2) -> hnswlib.Index:
    """One index over ``count`` templates fed in (vectors, labels) chunks.

    Pre-sizing the index and inserting chunk by chunk means the builder holds
    the index plus one chunk, never a second full copy of the templates: at
    20M that copy alone is 15 GB (``docs/library-format.md``, "Building at scale").
    """
    hnsw = hnswlib.Index(space=SPACE, dim=dim)
    hnsw.init_index(max_elements=max(count, 1), M=M, ef_construction=EF_CONSTRUCTION)
    hnsw.set_num_threads(threads)
    added = 0
    for vectors, labels in chunks:
        if len(labels):
            hnsw.add_items(vectors, labels)
            added += len(labels)
    if added != count:
        raise SnapshotError(f"The index was to hold {count} templates but {added} were read.")
    hnsw.set_ef(SEARCH_EF)
    return hnsw


def split_state(index: hnswlib.Index) -> tuple[str, dict[str, np.ndarray]]:
    """Scalars as JSON and arrays by name: the two halves of hnswlib's state."""
    (state,) = index.__getstate__()
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    return json.dumps(scalars, sort_keys=True), arrays


def _damaged(why: str) -> SnapshotError:
    return SnapshotError(f"The library's search index is damaged ({why}). Reinstall the library.")


def check_state(scalars: dict[str, Any], arrays: dict[str, np.ndarray], dim: int) -> None:
    """Refuse any state whose sizes or links would take hnswlib's loader or search out of bounds."""
    try:
        n, cap = int(scalars["cur_element_count"]), int(scalars["max_elements"])
        m, m0 = int(scalars["M"]), int(scalars["max_M0"])
        per_elem, off_data = int(scalars["size_data_per_element"]), int(scalars["offset_data"])
        links_per = int(scalars["size_links_per_element"])
        expected = {
            "ser_version": _SER_VERSION, "space": SPACE, "dim": dim, "offset_level0": 0,
            "max_M0": 2 * m, "max_M": m, "offset_data": m0 * 4 + 4, "size_links_per_element": m * 4 + 4,
            "label_offset": off_data + dim * 4, "size_data_per_element": off_data + dim * 4 + 8,
        }
        for name, value in expected.items():
            if scalars[name] != value:
                raise _damaged(f"{name} is {scalars[name]!r}, expected {value!r}")
        if not (0 < m <= 512 and 0 <= n <= cap):
            raise _damaged("implausible sizes")
        _check_flags(scalars, n)
        sizes = {"data_level0": n * per_elem, "label_lookup_external": n * 8, "label_lookup_internal": n * 4,
                 "element_levels": cap * 4}
        for name, nbytes in sizes.items():
            if arrays[name].nbytes != nbytes:
                raise _damaged(f"{name} holds {arrays[name].nbytes} bytes, expected {nbytes}")
        all_levels = arrays["element_levels"].view(np.int32)
        levels = all_levels[:n]
        # hnswlib's loader walks element_levels up to max_elements but has link offsets only for the first
        # cur_element_count nodes: a level past the count makes it copy from outside the link array.
        if cap > n and all_levels[n:].any():
            raise _damaged("levels are set for nodes the index does not hold")
        max_level, entry = int(scalars["max_level"]), int(scalars["enterpoint_node"])
        if n:
            if levels.min() < 0 or levels.max() != max_level or not 0 <= entry < n:
                raise _damaged("levels or entry point out of range")
            # Search descends from the entry point through every level down from max_level.
            if int(levels[entry]) != max_level:
                raise _damaged("the entry point is not on the top level")
        if arrays["link_lists"].nbytes != int(levels.sum()) * links_per:
            raise _damaged("upper-level links have the wrong size")
        _check_labels(arrays, scalars, n, per_elem)
        level0 = arrays["data_level0"].view(np.uint8).reshape(n, per_elem)[:, :off_data].copy().view(np.uint32)
        _check_links(level0, m0, np.zeros(n, dtype=np.int32), levels)
        if arrays["link_lists"].nbytes:
            blocks = arrays["link_lists"].view(np.uint32).reshape(-1, m + 1)
            _check_links(blocks, m, _block_levels(levels), levels)
    except (KeyError, ValueError, TypeError, OverflowError) as e:  # OverflowError: int() of an infinite float
        raise _damaged(f"unreadable state: {e}") from e


def _check_flags(scalars: dict[str, Any], n: int) -> None:
    """The loader's flags and the build parameters a later add_items uses, as split_state writes them.

    With ``index_inited`` false hnswlib restores no graph at all and the first search dereferences it.
    """
    flags = {"index_inited": True, "normalize": False, "ep_added": n > 0}  # normalize is for "cosine" only
    for name, value in flags.items():
        if scalars[name] is not value:
            raise _damaged(f"{name} is {scalars[name]!r}, expected {value!r}")
    for name in ("has_deletions", "allow_replace_deleted"):
        if not isinstance(scalars[name], bool):
            raise _damaged(f"{name} is not true or false")
    # hnswlib rebuilds the index from M, ef_construction and max_elements, then compares the state with it and
    # throws on a mismatch, leaking what it built (about 2.6 MB of locks each time): refuse those first.
    m = int(scalars["M"])
    for name, low, high in (("num_threads", -1, 1024), ("ef", 1, 1_000_000), ("ef_construction", m, 1_000_000),
                            ("seed", 0, 2**64 - 1)):
        value = scalars[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _damaged(f"{name} is {value!r}, outside {low}..{high}")
    if scalars["num_threads"] == 0:  # -1 is hnswlib's "all cores"; 0 is never written
        raise _damaged("num_threads is 0")
    mult = scalars["mult"]  # the spread of random levels for nodes added later: exactly 1/ln(M), as hnswlib computes
    if not isinstance(mult, float) or mult != 1 / math.log(m):
        raise _damaged(f"mult is {mult!r}, expected {1 / math.log(m)!r}")


def _block_levels(levels: np.ndarray) -> np.ndarray:
    """The level of each upper-level link block, in the loader's order: node by node, levels 1..L."""
    counts = levels[levels > 0].astype(np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return (np.arange(int(counts.sum())) - starts + 1).astype(np.int32)


def _check_labels(arrays: dict[str, np.ndarray], scalars: dict[str, Any], n: int, per_elem: int) -> None:
    """The label map is a one-to-one pairing of n labels with the n internal ids, as the graph's own labels say."""
    external = arrays["label_lookup_external"].view(np.uint64)
    internal = arrays["label_lookup_internal"].view(np.uint32)
    if n == 0:
        return
    if int(internal.max()) >= n:
        raise _damaged("a label points outside the index")
    if not np.array_equal(np.sort(internal), np.arange(n, dtype=np.uint32)):
        raise _damaged("the label map does not name each node once")
    if np.unique(external).size != n:
        raise _damaged("the label map names a label twice")
    offset = int(scalars["label_offset"])
    rows = arrays["data_level0"].view(np.uint8).reshape(n, per_elem)
    stored = rows[:, offset:offset + 8].copy().view(np.uint64).ravel()
    if not np.array_equal(stored[internal], external):
        raise _damaged("the label map disagrees with the graph's labels")


def _check_links(blocks: np.ndarray, max_links: int, block_levels: np.ndarray, levels: np.ndarray) -> None:
    """Each block is [count (low 16 bits), neighbour ids...]: counts within M, ids within the index, and
    every neighbour present on the block's level (search reads the neighbour's links at that level)."""
    n = levels.size
    if not blocks.size:
        return
    counts = blocks[:, 0] & 0xFFFF
    if int(counts.max()) > max_links:
        raise _damaged("a node has more links than the graph allows")
    used = np.arange(max_links)[None, :] < counts[:, None]
    if not used.any():
        return
    targets = blocks[:, 1:][used]
    if int(targets.max()) >= n:
        raise _damaged("a link points outside the index")
    needed = np.broadcast_to(block_levels[:, None], used.shape)[used]
    if (levels[targets] < needed).any():
        raise _damaged("a link names a level its target does not have")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def join_state(scalars_json: str, arrays: dict[str, np.ndarray], dim: int) -> hnswlib.Index:
    try:
        # NaN and Infinity are not JSON and never written by split_state.
        state: dict[str, Any] = json.loads(scalars_json, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise _damaged(str(e)) from e
    check_state(state, arrays, dim)
    try:
        state.update(arrays)
        # pybind11 restores into an uninitialised instance; calling it on a constructed
        # Index corrupts memory (seen as a segfault at the first query).
        index = hnswlib.Index.__new__(hnswlib.Index)
        index.__setstate__((state,))
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise _damaged(str(e)) from e
    index.set_ef(SEARCH_EF)
    return index


def search_ef(k: int) -> int:
    return max(SEARCH_EF, k)


def search(index: hnswlib.Index, vector: np.ndarray, k: int, *, live: int | None = None,
           ef: int | None = None, keep: Callable[[int], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and cosine similarities of the k nearest templates, best first.

    ``live`` is the number of items not marked deleted (hnswlib does not say);
    asking for more than that makes hnswlib raise. ``ef`` is per call only for
    benchmarks: hnswlib's ef is index-wide, so callers sharing one index
    (the snapshot) serialise searches. ``keep`` is hnswlib's ``filter``: the labels it
    accepts are the only ones returned (a library version's tombstones are filtered out
    during the walk, so the k returned are k live records).
    """
    k = min(k, index.get_current_count() if live is None else live)
    if k <= 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
    query = vector.reshape(1, -1).astype(np.float32)
    index.set_ef(ef if ef is not None else search_ef(k))
    try:
        labels, distances = index.knn_query(query, k=k, filter=keep)
    except RuntimeError:
        # With many deleted items a small graph can run out of candidates; search it exhaustively.
        index.set_ef(max(index.get_current_count(), k))
        labels, distances = index.knn_query(query, k=k, filter=keep)
    return labels[0], 1.0 - distances[0]
