"""Deltas: the changes from one library version to the next, and applying them safely.

A delta is its own SQLCipher file under the lineage's key (one key per
library lineage: its full snapshots and deltas share it). It holds the added
records with their templates, thumbnails and quality, the ``source`` of every
removed record, and a changed record as both. Its meta names the base it
applies to and the result it produces, each by version and content digest
(``library.digest``), so the appliance can refuse a delta for a library it
does not have, and can prove the library it built is the one central signed.

``apply_delta`` never modifies the base: it copies the base's ciphertext to a
working name, applies the changes there (journal off: a crash only ever
leaves a working file that is thrown away), updates a copy of the index, checks
the result digest and only then renames the file into place. Searches keep
using the base (its own index object) the whole time.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlcipher3

from library import cipher, digest, index, index_storage
from library.errors import DeltaBaseMismatchError, DeltaError, DeltaResultMismatchError
from library.files import copy_ciphertext, durable_replace
from library.records import ReferenceRecord
from library.snapshot import (
    FORMAT_VERSION,
    RECORD_COLUMNS,
    RECORD_SCHEMA,
    Snapshot,
    check_template,
    insert_record,
    now_iso,
    record_from_row,
    stored_digest,
    write_meta,
)

logger = logging.getLogger(__name__)

DELTA_FORMAT = "custody-rfr-library-delta"
APPLYING_SUFFIX = ".applying"
# Rebuild the index instead of patching it once this share of its items would be deleted-but-kept:
# marked items still cost memory and search time.
REBUILD_DELETED_FRACTION = 0.25

_DELTA_SCHEMA = RECORD_SCHEMA + "CREATE TABLE removed (source TEXT PRIMARY KEY);\n"

StageHook = Callable[[str], None]


@dataclass(frozen=True)
class DeltaInfo:
    """What a delta file says about itself: the TUF custom metadata is made from this."""

    base_version: int
    base_digest: str
    result_version: int
    result_digest: str
    embedder_id: str
    dim: int
    added: int
    removed: int


def _info(meta: dict[str, str], path: Path) -> DeltaInfo:
    if meta.get("format") != DELTA_FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
        raise DeltaError(f"{path.name} is not a library delta this software reads "
                         f"(format {meta.get('format')!r} {meta.get('format_version')!r}).")
    try:
        return DeltaInfo(int(meta["base_version"]), meta["base_digest"], int(meta["result_version"]),
                         meta["result_digest"], meta["embedder_id"], int(meta["dim"]), int(meta["added"]),
                         int(meta["removed"]))
    except (KeyError, ValueError) as e:
        raise DeltaError(f"{path.name} is an incomplete library delta ({e}).") from e


def added_record(row: tuple[object, ...], dim: int) -> tuple[ReferenceRecord, np.ndarray, bytes]:
    """One added record as the delta stores it (``RECORD_COLUMNS``, vector, jpeg, digest), checked, or a DeltaError.

    The row is parsed before its digest can be checked, so a damaged row (a value of the wrong SQLite type, a
    malformed date, a template that is not whole float32s) must fail as damage too, not as a ValueError.
    """
    if len(row) != 12:
        raise DeltaError(f"A delta record has {len(row)} columns, not 12: the delta is damaged.")
    *columns, vector_bytes, thumbnail, row_digest = row
    texts = columns[1:]  # after record_id: subject_ref, sex, ethnicity_code, dates, age_band, source, quality
    if (not isinstance(columns[0], int) or not all(v is None or isinstance(v, str) for v in texts)
            or not isinstance(columns[1], str) or not isinstance(columns[7], str)  # subject_ref, source
            or not all(isinstance(v, bytes) for v in (vector_bytes, thumbnail, row_digest))):
        raise DeltaError(f"A delta record (id {columns[0]!r}) holds a value of the wrong type: the delta is damaged.")
    try:
        record = record_from_row(tuple(columns))
        vector = np.frombuffer(vector_bytes, dtype=np.float32)
    except ValueError as e:
        raise DeltaError(f"A delta record (id {columns[0]!r}) is malformed ({e}): the delta is damaged.") from e
    vector = check_template(vector, dim)
    if digest.record_digest(record, vector, thumbnail) != row_digest:
        raise DeltaError(f"The delta's record {record.source} does not match its digest: the delta is damaged.")
    return record, vector, thumbnail


def _meta(conn: sqlcipher3.Connection, path: Path) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlcipher3.DatabaseError as e:
        raise DeltaError(f"{path.name} is not a library file or is damaged ({e}).") from e


def read_delta_info(path: Path, key: bytes) -> DeltaInfo:
    conn = cipher.connect(path, key)
    try:
        return _info(_meta(conn, path), Path(path))
    finally:
        conn.close()


class DeltaWriter:
    """Writes a delta against ``base``; the result digest is computed from the base plus the changes."""

    def __init__(self, out_path: Path, key: bytes, base: Snapshot, result_version: int) -> None:
        if result_version <= base.version:
            raise DeltaError(f"A delta must move the library forward: version {result_version} is not newer "
                             f"than the base version {base.version}.")
        self.out_path = Path(out_path)
        self.base, self.result_version = base, result_version
        self._tmp = self.out_path.with_name(self.out_path.name + ".writing")
        self._tmp.unlink(missing_ok=True)
        self._conn = cipher.connect(self._tmp, key, create=True)
        self._conn.executescript(_DELTA_SCHEMA)
        self._removed: set[str] = set()
        self._added: dict[str, bytes] = {}

    def remove(self, source: str) -> None:
        self._conn.execute("INSERT INTO removed VALUES (?)", (source,))
        self._removed.add(source)

    def add(self, record: ReferenceRecord, template: np.ndarray, thumbnail_jpeg: bytes) -> None:
        vector = check_template(template, self.base.dim)
        insert_record(self._conn, len(self._added) + 1, record, vector, thumbnail_jpeg)
        self._added[record.source] = digest.record_digest(record, vector, thumbnail_jpeg)

    def _result_entries(self) -> Iterator[tuple[str, bytes]]:
        """The result's (source, record digest) in source order, streamed: the base's minus removals, plus adds."""
        removed_seen = 0

        def kept() -> Iterator[tuple[str, bytes]]:
            nonlocal removed_seen
            for source, row_digest in self.base.record_digests():
                if source in self._removed:
                    removed_seen += 1
                else:
                    yield source, row_digest

        previous = None
        for source, row_digest in heapq.merge(kept(), sorted(self._added.items())):
            if source == previous:
                raise DeltaError(f"{source} is added by the delta but already in the base; remove it first.")
            previous = source
            yield source, row_digest
        if removed_seen != len(self._removed):
            raise DeltaError("The delta removes images that are not in the base library.")

    def finalize(self) -> DeltaInfo:
        info = DeltaInfo(
            base_version=self.base.version, base_digest=self.base.digest, result_version=self.result_version,
            result_digest=digest.combine(self.base.embedder_id, self.base.dim, self._result_entries()),
            embedder_id=self.base.embedder_id, dim=self.base.dim, added=len(self._added),
            removed=len(self._removed),
        )
        write_meta(self._conn, {
            "format": DELTA_FORMAT, "format_version": str(FORMAT_VERSION), "created_at": now_iso(),
            **{name: str(value) for name, value in info.__dict__.items()},
        })
        self._conn.commit()
        self._conn.close()
        durable_replace(self._tmp, self.out_path)
        return info

    def abort(self) -> None:
        self._conn.close()
        self._tmp.unlink(missing_ok=True)


def make_delta(base: Snapshot, target: Snapshot, out_path: Path, key: bytes) -> DeltaInfo:
    """The delta that turns ``base`` into ``target`` (same embedder, newer version)."""
    if (base.embedder_id, base.dim) != (target.embedder_id, target.dim):
        raise DeltaError(f"Cannot make a delta from a {base.embedder_id} library to a {target.embedder_id} one: "
                         f"a new face model needs a full library.")
    writer = DeltaWriter(out_path, key, base, target.version)
    try:
        old = dict(base.record_digests())
        for source, row_digest in target.record_digests():
            previous = old.pop(source, None)
            if previous == row_digest:
                continue
            if previous is not None:
                writer.remove(source)
            writer.add(*target.entry(source))
        for source in old:
            writer.remove(source)
        info = writer.finalize()
    except BaseException:
        writer.abort()
        raise
    if info.result_digest != target.digest:
        Path(out_path).unlink(missing_ok=True)
        raise DeltaError("The delta does not reproduce the target library's content digest; it was not kept.")
    return info


def apply_delta(base_path: Path, delta_path: Path, key: bytes, out_path: Path, *,
                on_stage: StageHook | None = None, index_threads: int = 1) -> Path:
    """Build the next snapshot at ``out_path`` from the base and a delta; the base is not touched.

    Raises ``DeltaBaseMismatchError`` when the delta is for another base and
    ``DeltaResultMismatchError`` when the result is not the library central
    described; in both cases nothing is written at ``out_path``.
    """
    stage = on_stage or (lambda _name: None)
    base_path, delta_path, out_path = Path(base_path), Path(delta_path), Path(out_path)
    delta = cipher.connect(delta_path, key, read_only=True)
    work = out_path.with_name(out_path.name + APPLYING_SUFFIX)
    try:
        info = _info(_meta(delta, delta_path), delta_path)
        base_conn = cipher.connect(base_path, key, read_only=True)
        try:
            base_meta = _meta(base_conn, base_path)
        finally:
            base_conn.close()
        _check_base(info, base_meta, base_path)
        copy_ciphertext(base_path, work)
        stage("copied")
        conn = cipher.connect(work, key)
        try:
            # The working copy is thrown away on any failure, so it needs no journal (faster, no extra file).
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            _apply(conn, delta, info, base_meta, stage, index_threads)
            conn.commit()
        finally:
            conn.close()
        stage("written")
        durable_replace(work, out_path)
        stage("renamed")
        logger.info("library delta %s applied: version %d -> %d (+%d -%d)", delta_path.name, info.base_version,
                    info.result_version, info.added, info.removed)
        return out_path
    except BaseException:
        work.unlink(missing_ok=True)
        raise
    finally:
        delta.close()


def _check_base(info: DeltaInfo, base_meta: dict[str, str], base_path: Path) -> None:
    if (base_meta.get("embedder_id"), base_meta.get("dim")) != (info.embedder_id, str(info.dim)):
        raise DeltaError(f"The delta is for {info.embedder_id} libraries; {base_path.name} was built with "
                         f"{base_meta.get('embedder_id')}.")
    if base_meta.get("content_digest") != info.base_digest or base_meta.get("version") != str(info.base_version):
        raise DeltaBaseMismatchError(
            f"This update changes library version {info.base_version} (content {info.base_digest[:12]}), but the "
            f"installed library is version {base_meta.get('version')} (content "
            f"{base_meta.get('content_digest', '?')[:12]}). It was not applied; the installed library stays in "
            f"use. Install the full library version {info.result_version} instead."
        )


def _apply(conn: sqlcipher3.Connection, delta: sqlcipher3.Connection, info: DeltaInfo, base_meta: dict[str, str],
           stage: StageHook, index_threads: int) -> None:
    removed_labels = []
    for (source,) in delta.execute("SELECT source FROM removed"):
        row = conn.execute("SELECT record_id FROM records WHERE source = ?", (source,)).fetchone()
        if row is None:
            raise DeltaError(f"The delta removes {source}, which the base library does not hold.")
        for table in ("templates", "thumbnails", "records"):
            conn.execute(f"DELETE FROM {table} WHERE record_id = ?", (row[0],))
        removed_labels.append(int(row[0]))
    next_id = int(base_meta["next_record_id"])
    added_labels, added_vectors = [], []
    rows = delta.execute(f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))}, t.vector, "
                         "h.jpeg, r.digest FROM records r JOIN templates t USING (record_id) "
                         "JOIN thumbnails h USING (record_id) ORDER BY r.record_id")
    for row in rows:
        record, vector, thumbnail = added_record(tuple(row), info.dim)
        insert_record(conn, next_id, record, vector, thumbnail)
        added_labels.append(next_id)
        added_vectors.append(vector)
        next_id += 1
    stage("rows")
    count = int(base_meta["count"]) - len(removed_labels) + len(added_labels)
    deleted = int(base_meta["index_deleted"]) + len(removed_labels)
    base_index = index_storage.load_index(lambda sql, params: conn.execute(sql, params).fetchall(),
                                          base_meta["index_scalars"], base_meta["index_digest"], info.dim)
    if deleted > REBUILD_DELETED_FRACTION * (count + deleted):
        del base_index
        labels, vectors = [], []
        for record_id, vector in conn.execute("SELECT record_id, vector FROM templates ORDER BY record_id"):
            labels.append(int(record_id))
            vectors.append(np.frombuffer(bytes(vector), dtype=np.float32))
        matrix = np.vstack(vectors) if vectors else np.empty((0, info.dim), np.float32)
        hnsw = index.build_index(matrix, np.asarray(labels, dtype=np.uint64), threads=max(index_threads, 1))
        deleted = 0
    else:
        hnsw = base_index
        for label in removed_labels:
            hnsw.mark_deleted(label)
        if added_labels:
            hnsw.resize_index(hnsw.get_current_count() + len(added_labels))
            hnsw.set_num_threads(max(index_threads, 1))
            hnsw.add_items(np.vstack(added_vectors), np.asarray(added_labels, dtype=np.uint64))
    stage("index")
    scalars, index_digest = index_storage.write_index(conn, hnsw)
    del hnsw
    result = stored_digest(conn, info.embedder_id, info.dim)
    if result != info.result_digest:
        raise DeltaResultMismatchError(
            f"Applying the update to version {info.result_version} did not give the library central described "
            f"(content {result[:12]} instead of {info.result_digest[:12]}). It was not installed; the installed "
            f"library stays in use."
        )
    write_meta(conn, {"version": str(info.result_version), "count": str(count), "created_at": now_iso(),
                      "index_scalars": scalars, "index_digest": index_digest, "index_deleted": str(deleted),
                      "next_record_id": str(next_id), "content_digest": result})

