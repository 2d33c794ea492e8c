"""Write and read a library snapshot: one SQLCipher file holding everything.

A snapshot is built into a temporary name next to its destination and
renamed into place only when complete, so a reader never sees half a
library. Its metadata records the embedder it was built with, because a
template is only comparable with templates from the same model.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType

import numpy as np
import sqlcipher3

from library import cipher, index
from library.errors import EmbedderMismatchError, SnapshotError
from library.records import Candidate, ReferenceRecord

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

new_key = cipher.new_key
write_key_file = cipher.write_key_file
read_key_file = cipher.read_key_file

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    record_id INTEGER PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    sex TEXT, ethnicity_code TEXT, date_of_birth TEXT, image_date TEXT,
    source TEXT NOT NULL
);
CREATE INDEX records_subject ON records(subject_ref);
CREATE TABLE templates (record_id INTEGER PRIMARY KEY REFERENCES records, vector BLOB NOT NULL);
CREATE TABLE thumbnails (record_id INTEGER PRIMARY KEY REFERENCES records, jpeg BLOB NOT NULL);
CREATE TABLE index_arrays (
    name TEXT NOT NULL, chunk INTEGER NOT NULL, dtype TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (name, chunk)
);
"""


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


class SnapshotWriter:
    """Builds a snapshot; use as a context manager so a failed build leaves nothing behind."""

    def __init__(self, path: Path, key: bytes, embedder_id: str, dim: int, version: int) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".building")
        self._tmp.unlink(missing_ok=True)
        self.embedder_id, self.dim, self.version = embedder_id, dim, version
        self._conn = cipher.connect(self._tmp, key, create=True)
        self._conn.executescript(_SCHEMA)
        self._vectors: list[np.ndarray] = []
        self._labels: list[int] = []

    @classmethod
    def create(cls, path: Path, key: bytes, *, embedder_id: str, dim: int, version: int = 1) -> SnapshotWriter:
        return cls(path, key, embedder_id, dim, version)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()

    def add(self, record: ReferenceRecord, template: np.ndarray, thumbnail_jpeg: bytes) -> int:
        vector = np.asarray(template, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise SnapshotError(f"Template has {vector.shape[0]} dimensions; this library uses {self.dim}.")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or abs(norm - 1.0) > 1e-3:
            raise SnapshotError("Template is not a unit vector; it was not produced by the face pipeline.")
        cur = self._conn.execute(
            "INSERT INTO records (subject_ref, sex, ethnicity_code, date_of_birth, image_date, source)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record.subject_ref, record.sex, record.ethnicity_code, _iso(record.date_of_birth),
             _iso(record.image_date), record.source),
        )
        record_id = int(cur.lastrowid)
        self._conn.execute("INSERT INTO templates VALUES (?, ?)", (record_id, vector.tobytes()))
        self._conn.execute("INSERT INTO thumbnails VALUES (?, ?)", (record_id, thumbnail_jpeg))
        self._vectors.append(vector)
        self._labels.append(record_id)
        return record_id

    def finalize(self) -> None:
        vectors = np.vstack(self._vectors) if self._vectors else np.empty((0, self.dim), np.float32)
        hnsw = index.build_index(vectors, np.asarray(self._labels, dtype=np.uint64))
        scalars, arrays = index.split_state(hnsw)
        for name, array in arrays.items():
            raw = array.tobytes()
            for chunk, start in enumerate(range(0, max(len(raw), 1), index.CHUNK_BYTES)):
                self._conn.execute("INSERT INTO index_arrays VALUES (?, ?, ?, ?)",
                                   (name, chunk, array.dtype.str, raw[start:start + index.CHUNK_BYTES]))
        meta = {
            "format_version": str(FORMAT_VERSION),
            "embedder_id": self.embedder_id,
            "dim": str(self.dim),
            "version": str(self.version),
            "count": str(len(self._labels)),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "index_scalars": scalars,
        }
        self._conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        self._conn.commit()
        self._conn.close()
        os.replace(self._tmp, self.path)
        logger.info("library snapshot %s written: %d records", self.path, len(self._labels))

    def abort(self) -> None:
        self._conn.close()
        self._tmp.unlink(missing_ok=True)


class Snapshot:
    """A loaded snapshot, searchable from several request threads at once."""

    def __init__(self, path: Path, key: bytes, expected_embedder: str | None = None) -> None:
        self.path = Path(path)
        self._conn = cipher.connect(self.path, key)
        self._lock = threading.RLock()
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlcipher3.DatabaseError as e:
            self._conn.close()
            raise SnapshotError(f"{self.path.name} is not a library snapshot or is damaged ({e}).") from e
        if meta.get("format_version") != str(FORMAT_VERSION):
            self._conn.close()
            raise SnapshotError(f"{self.path.name} has library format {meta.get('format_version')!r}; "
                                f"this software reads format {FORMAT_VERSION}.")
        self.embedder_id = meta["embedder_id"]
        self.dim = int(meta["dim"])
        self.version = int(meta["version"])
        self.count = int(meta["count"])
        self.created_at = meta["created_at"]
        if expected_embedder is not None and expected_embedder != self.embedder_id:
            self._conn.close()
            raise EmbedderMismatchError(
                f"This library was built with face model {self.embedder_id}, but this device uses "
                f"{expected_embedder}. Searching it would give meaningless results; install a library "
                f"built for {expected_embedder}."
            )
        try:
            self._index = index.join_state(meta["index_scalars"], self._load_arrays())
        except SnapshotError:
            self._conn.close()
            raise

    @classmethod
    def open(cls, path: Path, key: bytes, expected_embedder: str | None = None) -> Snapshot:
        return cls(path, key, expected_embedder)

    def _fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run a read; a page that fails SQLCipher's HMAC means the file was altered or damaged."""
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlcipher3.DatabaseError as e:
            raise SnapshotError(
                f"The library file {self.path.name} is damaged or has been altered ({e}). "
                f"Reinstall the library from central."
            ) from e

    def _load_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, bytearray] = {}
        dtypes: dict[str, str] = {}
        for name, dtype, data in self._fetch("SELECT name, dtype, data FROM index_arrays ORDER BY name, chunk"):
            arrays.setdefault(name, bytearray()).extend(data)
            dtypes[name] = dtype
        return {name: np.frombuffer(bytes(raw), dtype=np.dtype(dtypes[name])).copy()
                for name, raw in arrays.items()}

    def search(self, vector: np.ndarray, k: int = 10) -> list[Candidate]:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise EmbedderMismatchError(
                f"The probe template has {vector.shape[0]} dimensions; this library uses {self.dim}."
            )
        with self._lock:
            labels, scores = index.search(self._index, vector, k)
            return [
                Candidate(rank=rank, score=float(score), record=self.record(int(label)))
                for rank, (label, score) in enumerate(zip(labels, scores, strict=True), start=1)
            ]

    def record(self, record_id: int) -> ReferenceRecord:
        rows = self._fetch(
            "SELECT record_id, subject_ref, sex, ethnicity_code, date_of_birth, image_date, source"
            " FROM records WHERE record_id = ?", (record_id,)
        )
        if not rows:
            raise SnapshotError(f"Record {record_id} is not in this library.")
        row = rows[0]
        return ReferenceRecord(record_id=row[0], subject_ref=row[1], sex=row[2], ethnicity_code=row[3],
                               date_of_birth=_date(row[4]), image_date=_date(row[5]), source=row[6])

    def thumbnail(self, record_id: int) -> bytes:
        rows = self._fetch("SELECT jpeg FROM thumbnails WHERE record_id = ?", (record_id,))
        if not rows:
            raise SnapshotError(f"Record {record_id} has no reference image in this library.")
        return bytes(rows[0][0])

    def template(self, record_id: int) -> np.ndarray:
        rows = self._fetch("SELECT vector FROM templates WHERE record_id = ?", (record_id,))
        if not rows:
            raise SnapshotError(f"Record {record_id} has no template in this library.")
        return np.frombuffer(bytes(rows[0][0]), dtype=np.float32).copy()

    def describe(self) -> dict[str, str | int]:
        return {"version": self.version, "count": self.count, "embedder_id": self.embedder_id,
                "created_at": self.created_at}

    def close(self) -> None:
        self._conn.close()

