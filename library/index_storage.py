"""The search index inside a SQLCipher file: chunked arrays plus a digest checked before parsing.

SQLCipher's page HMAC already proves each page came from someone with the
key; the index digest (sha256 over the scalars and every array, stored in the
snapshot's meta) additionally proves the arrays are the complete, matching set
that was written, so a truncated or mixed-up index is refused before hnswlib
sees a byte of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import hnswlib
import numpy as np
import sqlcipher3

from library import index
from library.errors import SnapshotError

_DOMAIN = b"custody-rfr/hnsw-index/v1\n"

Fetch = Callable[[str, tuple[object, ...]], list[tuple[object, ...]]]


def _digest(scalars_json: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(_DOMAIN)
    scalars = scalars_json.encode()
    h.update(len(scalars).to_bytes(8, "big") + scalars)
    for name in sorted(arrays):
        array = arrays[name]
        head = f"{name}\0{array.dtype.str}\0{array.nbytes}\0".encode()
        h.update(head)
        h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return h.hexdigest()


def write_index(conn: sqlcipher3.Connection, hnsw: hnswlib.Index) -> tuple[str, str]:
    """Replace the stored index with ``hnsw``; returns (scalars JSON, digest) for the meta table."""
    scalars, arrays = index.split_state(hnsw)
    conn.execute("DELETE FROM index_arrays")
    for name, array in arrays.items():
        raw = memoryview(np.ascontiguousarray(array)).cast("B")
        for chunk, start in enumerate(range(0, max(len(raw), 1), index.CHUNK_BYTES)):
            conn.execute("INSERT INTO index_arrays VALUES (?, ?, ?, ?)",
                         (name, chunk, array.dtype.str, bytes(raw[start:start + index.CHUNK_BYTES])))
    return scalars, _digest(scalars, arrays)


def load_index(fetch: Fetch, scalars_json: str, expected_digest: str, dim: int) -> hnswlib.Index:
    """Read, authenticate, check and only then parse the stored index."""
    # Counting chunks reads no blob; summing their lengths would read (and decrypt) the whole index a second
    # time, which at 1M records cost 8 of an 18-second cold start. Every chunk but the last is CHUNK_BYTES, so
    # the count bounds the size; a file written with larger chunks still loads (the buffer grows).
    counts = fetch("SELECT name, dtype, count(*) FROM index_arrays GROUP BY name, dtype", ())
    if len({name for name, _, _ in counts}) != len(counts):
        raise SnapshotError("The library's search index is damaged (mixed array types). Reinstall the library.")
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, chunks in counts:
        buffer = np.empty(int(chunks or 0) * index.CHUNK_BYTES, dtype=np.uint8)
        offset = 0
        for (data,) in fetch("SELECT data FROM index_arrays WHERE name = ? ORDER BY chunk", (name,)):
            raw = memoryview(data).cast("B")  # type: ignore[arg-type]
            if offset + len(raw) > len(buffer):
                grown = np.empty(max(offset + len(raw), 2 * len(buffer)), dtype=np.uint8)
                grown[:offset] = buffer[:offset]
                buffer = grown
            buffer[offset:offset + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
            offset += len(raw)
        try:
            arrays[str(name)] = buffer[:offset].view(np.dtype(str(dtype)))
        except (TypeError, ValueError) as e:
            raise SnapshotError(f"The library's search index is damaged ({e}). Reinstall the library.") from e
    if _digest(scalars_json, arrays) != expected_digest:
        raise SnapshotError("The library's search index does not match its digest: the file is damaged or "
                            "was altered. Reinstall the library from central.")
    return index.join_state(scalars_json, arrays, dim)


def index_bytes(scalars_json: str, arrays: dict[str, np.ndarray]) -> int:
    """Serialised size, as reported by the benchmark."""
    return len(scalars_json.encode()) + sum(a.nbytes for a in arrays.values())
