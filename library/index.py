"""The HNSW index over templates, and its serialisation without pickle.

The index is stored as named arrays inside the encrypted snapshot and
rebuilt with hnswlib's own state loader, so no plaintext index file ever
exists and nothing is unpickled.
"""

from __future__ import annotations

import json
from typing import Any

import hnswlib
import numpy as np

from library.errors import SnapshotError

SPACE = "ip"  # templates are unit vectors: inner product is cosine similarity
M = 16
EF_CONSTRUCTION = 200
MIN_EF = 64
CHUNK_BYTES = 64 * 1024 * 1024


def build_index(vectors: np.ndarray, labels: np.ndarray, threads: int = 2) -> hnswlib.Index:
    count, dim = vectors.shape
    index = hnswlib.Index(space=SPACE, dim=dim)
    index.init_index(max_elements=max(count, 1), M=M, ef_construction=EF_CONSTRUCTION)
    index.set_num_threads(threads)
    if count:
        index.add_items(vectors, labels)
    index.set_ef(MIN_EF)
    return index


def split_state(index: hnswlib.Index) -> tuple[str, dict[str, np.ndarray]]:
    """Scalars as JSON and arrays by name: the two halves of hnswlib's state."""
    (state,) = index.__getstate__()
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    return json.dumps(scalars, sort_keys=True), arrays


def join_state(scalars_json: str, arrays: dict[str, np.ndarray]) -> hnswlib.Index:
    try:
        state: dict[str, Any] = json.loads(scalars_json)
        state.update(arrays)
        # pybind11 restores into an uninitialised instance; calling it on a constructed
        # Index corrupts memory (seen as a segfault at the first query).
        index = hnswlib.Index.__new__(hnswlib.Index)
        index.__setstate__((state,))
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise SnapshotError(f"The library's search index is damaged ({e}). Reinstall the library.") from e
    index.set_ef(MIN_EF)
    return index


def search(index: hnswlib.Index, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and cosine similarities of the k nearest templates, best first."""
    count = index.get_current_count()
    k = min(k, count)
    if k == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
    index.set_ef(max(MIN_EF, 2 * k))
    labels, distances = index.knn_query(vector.reshape(1, -1).astype(np.float32), k=k)
    return labels[0], 1.0 - distances[0]
