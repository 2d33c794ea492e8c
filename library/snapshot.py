"""Write and read a library snapshot: one SQLCipher file holding everything.

A snapshot is built into ``<name>.building`` next to its destination and
renamed into place only when complete, so a reader never sees half a library;
the building file commits as it goes, so an interrupted enrolment can resume
from it. Its metadata records the embedder it was built with, because a
template is only comparable with templates from the same model, and the
content digest (``library.digest``) that names this version's content.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType

import hnswlib
import numpy as np
import sqlcipher3

from library import cipher, digest, index, index_storage
from library.errors import EmbedderMismatchError, SnapshotError
from library.files import durable_replace
from library.records import Candidate, ReferenceRecord

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
BUILDING_SUFFIX = ".building"

new_key = cipher.new_key
write_key_file = cipher.write_key_file
read_key_file = cipher.read_key_file

RECORD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    record_id INTEGER PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    sex TEXT, ethnicity_code TEXT, date_of_birth TEXT, age_band TEXT, image_date TEXT,
    source TEXT NOT NULL UNIQUE,
    quality TEXT,
    digest BLOB NOT NULL
);
CREATE INDEX records_subject ON records(subject_ref);
CREATE TABLE templates (record_id INTEGER PRIMARY KEY REFERENCES records, vector BLOB NOT NULL);
CREATE TABLE thumbnails (record_id INTEGER PRIMARY KEY REFERENCES records, jpeg BLOB NOT NULL);
"""
SCHEMA = RECORD_SCHEMA + """
CREATE TABLE index_arrays (
    name TEXT NOT NULL, chunk INTEGER NOT NULL, dtype TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (name, chunk)
);
"""
RECORD_COLUMNS = ("record_id, subject_ref, sex, ethnicity_code, date_of_birth, age_band, image_date, source, "
                  "quality")
_INSERT_RECORD = (f"INSERT INTO records ({RECORD_COLUMNS}, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def record_from_row(row: tuple[object, ...]) -> ReferenceRecord:
    """A ``ReferenceRecord`` from a row selected as ``RECORD_COLUMNS``."""
    rid, subject, sex, eth, dob, band, image_date, source, quality = row
    return ReferenceRecord(record_id=int(rid), subject_ref=str(subject), sex=sex, ethnicity_code=eth,  # type: ignore[arg-type]
                           date_of_birth=_date(dob), age_band=band, image_date=_date(image_date),  # type: ignore[arg-type]
                           source=str(source), quality=quality)  # type: ignore[arg-type]


def check_template(template: np.ndarray, dim: int) -> np.ndarray:
    """The template as float32, or a SnapshotError if it cannot have come from the face pipeline."""
    vector = np.asarray(template, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dim:
        raise SnapshotError(f"Template has {vector.shape[0]} dimensions; this library uses {dim}.")
    if not np.isfinite(vector).all():  # first: casting a signalling NaN's bits to float64 raises a warning
        raise SnapshotError("Template is not a unit vector; it was not produced by the face pipeline.")
    norm = float(np.linalg.norm(vector.astype(np.float64)))  # float32 squares overflow (with a warning) past 1e19
    if abs(norm - 1.0) > 1e-3:
        raise SnapshotError("Template is not a unit vector; it was not produced by the face pipeline.")
    return vector


def insert_record(conn: sqlcipher3.Connection, record_id: int, record: ReferenceRecord, vector: np.ndarray,
                  thumbnail_jpeg: bytes) -> None:
    """Insert one record with its template and thumbnail; a repeated ``source`` is refused."""
    row_digest = digest.record_digest(record, vector, thumbnail_jpeg)
    try:
        conn.execute(_INSERT_RECORD, (record_id, record.subject_ref, record.sex, record.ethnicity_code,
                                      _iso(record.date_of_birth), record.age_band, _iso(record.image_date),
                                      record.source, record.quality, row_digest))
    except sqlcipher3.IntegrityError as e:
        raise SnapshotError(f"The image {record.source} is already in this library.") from e
    conn.execute("INSERT INTO templates VALUES (?, ?)", (record_id, vector.tobytes()))
    conn.execute("INSERT INTO thumbnails VALUES (?, ?)", (record_id, thumbnail_jpeg))


def write_meta(conn: sqlcipher3.Connection, values: dict[str, str]) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())


def stored_digest(conn: sqlcipher3.Connection, embedder_id: str, dim: int) -> str:
    rows = conn.execute("SELECT source, digest FROM records ORDER BY source")
    return digest.combine(embedder_id, dim, ((str(s), bytes(d)) for s, d in rows))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SnapshotWriter:
    """Builds a snapshot; use as a context manager so a failed build leaves nothing behind.

    With ``resume=True`` an interrupted build's ``.building`` file is continued
    (``done_sources`` says what it already holds); otherwise any such file is
    discarded. Adds are committed every ``commit_every`` records, which bounds
    what an interruption loses. Templates are not kept in memory: ``finalize``
    streams them back from the file into the index, so a build of tens of
    millions holds the index and one chunk, not the templates twice.
    """

    def __init__(self, path: Path, key: bytes, embedder_id: str, dim: int, version: int, *,
                 resume: bool = False, commit_every: int = 500, index_threads: int = 2) -> None:
        self.path = Path(path)
        self.building_path = self.path.with_name(self.path.name + BUILDING_SUFFIX)
        self.embedder_id, self.dim, self.version = embedder_id, dim, version
        self.commit_every, self.index_threads = commit_every, index_threads
        self.index_build_seconds = 0.0
        self._count = 0
        self._next_id = 1
        self._pending = 0
        if resume and self.building_path.exists():
            self._conn = cipher.connect(self.building_path, key)
            self._resume()
        else:
            self.building_path.unlink(missing_ok=True)
            self._conn = cipher.connect(self.building_path, key, create=True)
            self._conn.executescript(SCHEMA)
            write_meta(self._conn, {"format_version": str(FORMAT_VERSION), "embedder_id": embedder_id,
                                    "dim": str(dim), "version": str(version)})
            self._conn.commit()

    def _resume(self) -> None:
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlcipher3.DatabaseError as e:
            self._conn.close()
            raise SnapshotError(f"{self.building_path} is not an interrupted library build ({e}).") from e
        wanted = {"format_version": str(FORMAT_VERSION), "embedder_id": self.embedder_id, "dim": str(self.dim),
                  "version": str(self.version)}
        for name, value in wanted.items():
            if meta.get(name) != value:
                self._conn.close()
                raise SnapshotError(
                    f"The interrupted build {self.building_path.name} has {name} {meta.get(name)!r}, not "
                    f"{value!r}; resume it with the same settings, or delete it to start again."
                )
        count, last = self._conn.execute("SELECT count(*), max(record_id) FROM records").fetchone()
        self._count, self._next_id = int(count), int(last or 0) + 1
        logger.info("resuming %s with %d records", self.building_path, self._count)

    @classmethod
    def create(cls, path: Path, key: bytes, *, embedder_id: str, dim: int, version: int = 1,
               resume: bool = False, commit_every: int = 500, index_threads: int = 2) -> SnapshotWriter:
        return cls(path, key, embedder_id, dim, version, resume=resume, commit_every=commit_every,
                   index_threads=index_threads)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.finalize()
        elif exc_type is KeyboardInterrupt:
            self.suspend()
        else:
            self.abort()

    def done_sources(self) -> set[str]:
        """Sources already in the build: what a resumed enrolment skips."""
        return {str(s) for (s,) in self._conn.execute("SELECT source FROM records")}

    def subject_count(self) -> int:
        return int(self._conn.execute("SELECT count(DISTINCT subject_ref) FROM records").fetchone()[0])

    def add(self, record: ReferenceRecord, template: np.ndarray, thumbnail_jpeg: bytes) -> int:
        vector = check_template(template, self.dim)
        record_id = self._next_id
        insert_record(self._conn, record_id, record, vector, thumbnail_jpeg)
        self._next_id += 1
        self._count += 1
        self._pending += 1
        if self._pending >= self.commit_every:
            self._conn.commit()
            self._pending = 0
        return record_id

    def _template_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vectors, labels) in record order, ``index.BUILD_CHUNK`` at a time, read back from the build file."""
        last = 0
        while True:
            rows = self._conn.execute("SELECT record_id, vector FROM templates WHERE record_id > ? "
                                      "ORDER BY record_id LIMIT ?", (last, index.BUILD_CHUNK)).fetchall()
            if not rows:
                return
            labels = np.fromiter((int(r) for r, _ in rows), dtype=np.uint64, count=len(rows))
            vectors = np.frombuffer(b"".join(bytes(v) for _, v in rows), dtype=np.float32).reshape(-1, self.dim)
            del rows
            yield vectors, labels
            last = int(labels[-1])

    def finalize(self) -> None:
        started = time.perf_counter()
        hnsw = index.build_index_streamed(self._template_chunks(), self._count, self.dim,
                                          threads=self.index_threads)
        self.index_build_seconds = time.perf_counter() - started
        scalars, index_digest = index_storage.write_index(self._conn, hnsw)
        del hnsw
        write_meta(self._conn, {
            "count": str(self._count),
            "created_at": now_iso(),
            "index_scalars": scalars,
            "index_digest": index_digest,
            "index_deleted": "0",
            "next_record_id": str(self._next_id),
            "content_digest": stored_digest(self._conn, self.embedder_id, self.dim),
        })
        self._conn.commit()
        self._conn.close()
        durable_replace(self.building_path, self.path)
        logger.info("library snapshot %s written: %d records", self.path, self._count)

    def suspend(self) -> None:
        """Keep what was added for a later ``resume=True`` (an operator pressed Ctrl-C)."""
        self._conn.commit()
        self._conn.close()

    def abort(self) -> None:
        self._conn.close()
        self.building_path.unlink(missing_ok=True)


class Snapshot:
    """A loaded snapshot, searchable from several request threads at once."""

    def __init__(self, path: Path, key: bytes, expected_embedder: str | None = None) -> None:
        self.path = Path(path)
        self._conn = cipher.connect(self.path, key, read_only=True)
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
        if "index_digest" not in meta:
            self._conn.close()
            raise SnapshotError(f"{self.path.name} is an unfinished library build, not a snapshot.")
        self.embedder_id = meta["embedder_id"]
        self.dim = int(meta["dim"])
        self.version = int(meta["version"])
        self.count = int(meta["count"])
        self.created_at = meta["created_at"]
        self.digest = meta["content_digest"]
        self.meta = meta
        if expected_embedder is not None and expected_embedder != self.embedder_id:
            self._conn.close()
            raise EmbedderMismatchError(
                f"This library was built with face model {self.embedder_id}, but this device uses "
                f"{expected_embedder}. Searching it would give meaningless results; install a library "
                f"built for {expected_embedder}."
            )
        try:
            self._index = index_storage.load_index(self._fetch, meta["index_scalars"], meta["index_digest"],
                                                   self.dim)
        except SnapshotError:
            self._conn.close()
            raise

    @classmethod
    def open(cls, path: Path, key: bytes, expected_embedder: str | None = None) -> Snapshot:
        return cls(path, key, expected_embedder)

    @property
    def index(self) -> hnswlib.Index:
        """The loaded HNSW index, for benchmarks and delta application; searches go through ``search``."""
        return self._index

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

    def search(self, vector: np.ndarray, k: int = 10) -> list[Candidate]:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise EmbedderMismatchError(
                f"The probe template has {vector.shape[0]} dimensions; this library uses {self.dim}."
            )
        with self._lock:
            labels, scores = index.search(self._index, vector, k, live=self.count)
            ids = [int(label) for label in labels]
            records = self._records(ids)
        return [Candidate(rank=rank, score=float(score), record=records[rid])
                for rank, (rid, score) in enumerate(zip(ids, scores, strict=True), start=1)]

    def _records(self, record_ids: list[int]) -> dict[int, ReferenceRecord]:
        if not record_ids:
            return {}
        marks = ",".join("?" * len(record_ids))
        rows = self._fetch(f"SELECT {RECORD_COLUMNS} FROM records WHERE record_id IN ({marks})", tuple(record_ids))
        found = {int(row[0]): record_from_row(row) for row in rows}  # type: ignore[call-overload]
        missing = set(record_ids) - set(found)
        if missing:
            raise SnapshotError(f"The library index names records {sorted(missing)[:5]} that are not in "
                                f"{self.path.name}: the file is damaged. Reinstall the library.")
        return found

    def record(self, record_id: int) -> ReferenceRecord:
        rows = self._fetch(f"SELECT {RECORD_COLUMNS} FROM records WHERE record_id = ?", (record_id,))
        if not rows:
            raise SnapshotError(f"Record {record_id} is not in this library.")
        return record_from_row(rows[0])

    def thumbnail(self, record_id: int) -> bytes:
        rows = self._fetch("SELECT jpeg FROM thumbnails WHERE record_id = ?", (record_id,))
        if not rows:
            raise SnapshotError(f"Record {record_id} has no reference image in this library.")
        return bytes(rows[0][0])  # type: ignore[arg-type]

    def template(self, record_id: int) -> np.ndarray:
        rows = self._fetch("SELECT vector FROM templates WHERE record_id = ?", (record_id,))
        if not rows:
            raise SnapshotError(f"Record {record_id} has no template in this library.")
        return np.frombuffer(bytes(rows[0][0]), dtype=np.float32).copy()  # type: ignore[arg-type]

    def _pages(self, select: str, key_column: int, page: int) -> Iterator[tuple[object, ...]]:
        """Rows of ``select ... ORDER BY r.source`` in pages, resuming after the last source seen.

        Each page seeks the unique index on source, so a million rows cost a
        million index steps, not a rescan from the start for every page.
        """
        rows = self._fetch(f"{select} ORDER BY r.source LIMIT {page}")
        while rows:
            yield from rows
            rows = self._fetch(f"{select} WHERE r.source > ? ORDER BY r.source LIMIT {page}",
                               (rows[-1][key_column],))

    def record_digests(self) -> Iterator[tuple[str, bytes]]:
        """(source, record digest) in source order, read in pages so millions of rows stay cheap."""
        for source, row_digest in self._pages("SELECT r.source, r.digest FROM records r", 0, 20000):
            yield str(source), bytes(row_digest)  # type: ignore[arg-type]

    def entries(self) -> Iterator[tuple[ReferenceRecord, np.ndarray, bytes, bytes]]:
        """(record, template, thumbnail, stored digest) for every record in source order."""
        select = (f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))}, t.vector, h.jpeg, "
                  "r.digest FROM records r JOIN templates t USING (record_id) JOIN thumbnails h USING (record_id)")
        for row in self._pages(select, 7, 2000):
            yield (record_from_row(row[:9]), np.frombuffer(bytes(row[9]), dtype=np.float32),  # type: ignore[arg-type]
                   bytes(row[10]), bytes(row[11]))  # type: ignore[arg-type]

    def records(self) -> Iterator[ReferenceRecord]:
        """Every record's metadata (no templates or thumbnails), in record order, read in pages."""
        last = 0
        while True:
            rows = self._fetch(f"SELECT {RECORD_COLUMNS} FROM records WHERE record_id > ? ORDER BY record_id "
                               "LIMIT 10000", (last,))
            if not rows:
                return
            yield from (record_from_row(row) for row in rows)
            last = int(rows[-1][0])  # type: ignore[call-overload]

    def entry(self, source: str) -> tuple[ReferenceRecord, np.ndarray, bytes]:
        """One record by its source, with its template and thumbnail (what a delta carries)."""
        rows = self._fetch(
            f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))}, t.vector, h.jpeg "
            "FROM records r JOIN templates t USING (record_id) JOIN thumbnails h USING (record_id) "
            "WHERE r.source = ?", (source,))
        if not rows:
            raise SnapshotError(f"The image {source} is not in this library.")
        row = rows[0]
        return (record_from_row(row[:9]), np.frombuffer(bytes(row[9]), dtype=np.float32),  # type: ignore[arg-type]
                bytes(row[10]))  # type: ignore[arg-type]

    def describe(self) -> dict[str, str | int]:
        return {"version": self.version, "count": self.count, "embedder_id": self.embedder_id,
                "created_at": self.created_at, "content_digest": self.digest}

    def close(self) -> None:
        self._conn.close()
