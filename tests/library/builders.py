"""Small real libraries for tests: SQLCipher files in a temp folder, synthetic unit templates."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from library.records import ReferenceRecord
from library.snapshot import SnapshotWriter

DIM = 192
EMBEDDER = "emb@1"


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def record(i: int, **changes: object) -> ReferenceRecord:
    values: dict[str, object] = {"subject_ref": f"SUBJ-{i:05d}", "source": f"SUBJ-{i:05d}/{i}.jpg",
                                 "sex": "MF"[i % 2], "ethnicity_code": f"IC{i % 9 + 1}",
                                 "date_of_birth": date(1970 + i % 40, 1 + i % 12, 1 + i % 28),
                                 "image_date": date(2005 + i % 20, 6, 1), "quality": '{"verdict": "good"}'}
    values.update(changes)
    return ReferenceRecord(**values)  # type: ignore[arg-type]


def thumbnail(i: int) -> bytes:
    return b"\xff\xd8thumb-%d\xff\xd9" % i


def build(path: Path, key: bytes, items: dict[int, np.ndarray], version: int = 1,
          changed: dict[int, ReferenceRecord] | None = None) -> Path:
    """A snapshot holding record ``i`` with template ``items[i]`` (``changed`` overrides a record's metadata)."""
    changed = changed or {}
    with SnapshotWriter.create(path, key, embedder_id=EMBEDDER, dim=DIM, version=version) as writer:
        for i, vector in items.items():
            writer.add(changed.get(i, record(i)), vector, thumbnail(i))
    return path


def alter_stored_index(path: Path, key: bytes) -> None:
    """Flip one byte of a library file's stored index through SQLCipher, as someone holding the key (or a bug)
    could: the file stays valid to SQLCipher, so only the index's own digest can notice."""
    from library import cipher

    conn = cipher.connect(path, key)
    data = bytearray(conn.execute("SELECT data FROM index_arrays WHERE name = 'data_level0'").fetchone()[0])
    data[100] ^= 0xFF
    conn.execute("UPDATE index_arrays SET data = ? WHERE name = 'data_level0'", (bytes(data),))
    conn.commit()
    conn.close()
