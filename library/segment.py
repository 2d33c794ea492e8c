"""Delta segments: a verified delta turned into a small, immutable, searchable part of a library version.

A library version on the desk is a base snapshot plus an ordered list of segments
(``library.version``). A segment is one SQLCipher file under the lineage's key holding
the records the delta added (with their templates and thumbnails), an HNSW index over
just those records, and the *tombstones*: the labels of the records the delta removed,
wherever they live (the base or an earlier segment). Applying a delta therefore writes
about the size of the delta and holds one small index in memory; the base file, its
index and the segments before it are never touched, so the version being searched keeps
serving from the same objects (Lucene and Milvus do the same with their segments).

Labels (``record_id``) are global within a lineage: a segment's records take fresh
labels from the previous part's ``next_record_id``, so a label names one record in the
base and every segment, and compaction (``library.compaction``) can fold segments into a
new base without renumbering anything.

The apply proves the result is the library central signed: the (source, record digest)
pairs of the base and every segment, minus the tombstones, merged in source order, must
give the delta's ``result_digest``, the same digest a full rebuild has.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import sqlcipher3

from library import cipher, digest, index, index_storage
from library.delta import APPLYING_SUFFIX, DeltaInfo, StageHook, added_record, read_delta_info
from library.errors import DeltaBaseMismatchError, DeltaError, DeltaResultMismatchError, SnapshotError
from library.files import durable_replace
from library.snapshot import (
    _INSERT_RECORD,
    FORMAT_VERSION,
    RECORD_COLUMNS,
    RECORD_SCHEMA,
    Snapshot,
    _iso,
    now_iso,
    write_meta,
)

logger = logging.getLogger(__name__)

SEGMENT_FORMAT = "custody-rfr-library-segment"
SEGMENT_SUFFIX = ".seg"
NO_INDEX = "none"  # index_digest of a segment that adds nothing (removals only)

_LOOKUP_BATCH = 500  # removed sources looked up per query (SQLite allows 32,766 parameters)

_SCHEMA = RECORD_SCHEMA + """
CREATE TABLE tombstones (label INTEGER PRIMARY KEY, source TEXT NOT NULL);
CREATE TABLE index_arrays (
    name TEXT NOT NULL, chunk INTEGER NOT NULL, dtype TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (name, chunk)
);
"""


class Segment(Snapshot):
    """One opened segment: its records, its index (None when it adds nothing) and its tombstones.

    It reads its records through the same code as a snapshot (same tables), so record, thumbnail and
    template lookups behave alike; ``version``, ``digest`` and ``count`` are those of the library version
    the segment produces, ``added`` the records it holds itself.
    """

    def __init__(self, path: Path, key: bytes, expected_embedder: str | None = None) -> None:
        self.path = Path(path)
        self._conn = cipher.connect(self.path, key, read_only=True)
        self._lock = threading.RLock()
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != SEGMENT_FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
                raise SnapshotError(f"{self.path.name} is not a library segment this software reads.")
            self.embedder_id, self.dim = meta["embedder_id"], int(meta["dim"])
            self.version, self.base_version = int(meta["version"]), int(meta["base_version"])
            self.base_digest, self.digest = meta["base_digest"], meta["content_digest"]
            self.count, self.added = int(meta["count"]), int(meta["added"])
            self.first_label, self.next_record_id = int(meta["first_label"]), int(meta["next_record_id"])
            self.created_at = meta["created_at"]
            self.meta = meta
            if expected_embedder is not None and expected_embedder != self.embedder_id:
                raise SnapshotError(f"The library segment {self.path.name} is for {self.embedder_id}, not "
                                    f"{expected_embedder}. Reinstall the full library.")
            self.tombstones = np.fromiter((int(label) for (label,) in self._conn.execute(
                "SELECT label FROM tombstones")), dtype=np.int64)
            if meta["index_digest"] == NO_INDEX:
                self._index = None
            else:
                self._index = index_storage.load_index(self._fetch, meta["index_scalars"], meta["index_digest"],
                                                       self.dim)
        except (sqlcipher3.DatabaseError, KeyError, ValueError) as e:
            self._conn.close()
            raise SnapshotError(f"The library segment {self.path.name} is damaged ({e}). Reinstall the full "
                                f"library from central.") from e
        except SnapshotError:
            self._conn.close()
            raise

    def holds(self, label: int) -> bool:
        return self.first_label <= label < self.next_record_id


def labelled_digests(fetch: index_storage.Fetch) -> Iterator[tuple[str, bytes, int]]:
    """(source, record digest, label) of one part in source order, read in pages of 20,000."""
    page = 20000
    rows = fetch(f"SELECT source, digest, record_id FROM records ORDER BY source LIMIT {page}", ())
    while rows:
        for source, row_digest, label in rows:
            yield str(source), bytes(row_digest), int(label)  # type: ignore[arg-type, call-overload]
        rows = fetch(f"SELECT source, digest, record_id FROM records WHERE source > ? ORDER BY source "
                     f"LIMIT {page}", (rows[-1][0],))


def live_digests(parts: Iterable[Iterator[tuple[str, bytes, int]]], tombstones: set[int] | frozenset[int]
                 ) -> Iterator[tuple[str, bytes]]:
    """The version's (source, record digest) in source order: every part's rows merged, tombstones skipped."""
    for source, row_digest, label in heapq.merge(*parts):
        if label not in tombstones:
            yield source, row_digest


def _fetcher(conn: sqlcipher3.Connection) -> index_storage.Fetch:
    return lambda sql, params: conn.execute(sql, params).fetchall()


def _meta(conn: sqlcipher3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def build_segment(chain: list[Path], delta_path: Path, key: bytes, out_path: Path, *,
                  on_stage: StageHook | None = None, index_threads: int = 1) -> tuple[DeltaInfo, object | None]:
    """Turn a verified delta into the segment file ``out_path`` on top of ``chain`` (base file, then segments).

    Nothing in ``chain`` is written. Returns the delta's info and the index built for the segment (so the
    caller can serve it without loading it back). Raises ``DeltaBaseMismatchError`` when the delta is for
    another version and ``DeltaResultMismatchError`` when the result is not what central signed; in both
    cases nothing is left at ``out_path``.
    """
    stage = on_stage or (lambda _name: None)
    info = read_delta_info(delta_path, key)
    work = out_path.with_name(out_path.name + APPLYING_SUFFIX)
    conns = [cipher.connect(path, key, read_only=True) for path in chain]
    delta = cipher.connect(delta_path, key, read_only=True)
    try:
        metas = [_meta(conn) for conn in conns]
        _check_base(info, metas[-1], chain[-1])
        tombstones: set[int] = set()
        for conn in conns[1:]:
            tombstones.update(int(label) for (label,) in conn.execute("SELECT label FROM tombstones"))
        work.unlink(missing_ok=True)
        out = cipher.connect(work, key, create=True)
        try:
            out.execute("PRAGMA journal_mode = OFF")  # thrown away on any failure, fsynced before its rename
            out.execute("PRAGMA synchronous = OFF")
            out.executescript(_SCHEMA)
            stage("copied")
            hnsw, meta, result = _fill(out, delta, conns, metas, tombstones, info, stage, index_threads)
            write_meta(out, {**meta, "content_digest": result})
            out.commit()
        finally:
            out.close()
        stage("written")
        durable_replace(work, out_path)
        stage("renamed")
        logger.info("library delta %s stored as segment %s: version %d -> %d (+%d -%d)", delta_path.name,
                    out_path.name, info.base_version, info.result_version, info.added, info.removed)
        return info, hnsw
    except BaseException:
        work.unlink(missing_ok=True)
        raise
    finally:
        delta.close()
        for conn in conns:
            conn.close()


def _check_base(info: DeltaInfo, last: dict[str, str], path: Path) -> None:
    if (last.get("embedder_id"), last.get("dim")) != (info.embedder_id, str(info.dim)):
        raise DeltaError(f"The delta is for {info.embedder_id} libraries; {path.name} was built with "
                         f"{last.get('embedder_id')}.")
    if last.get("content_digest") != info.base_digest or last.get("version") != str(info.base_version):
        raise DeltaBaseMismatchError(
            f"This update changes library version {info.base_version} (content {info.base_digest[:12]}), but the "
            f"installed library is version {last.get('version')} (content "
            f"{last.get('content_digest', '?')[:12]}). It was not applied; the installed library stays in "
            f"use. Install the full library version {info.result_version} instead.")


def _fill(out: sqlcipher3.Connection, delta: sqlcipher3.Connection, conns: list[sqlcipher3.Connection],
          metas: list[dict[str, str]], tombstones: set[int], info: DeltaInfo, stage: StageHook,
          index_threads: int) -> tuple[object | None, dict[str, str], str]:
    """Tombstones for the removals, the added rows under fresh labels, their index and the checked result
    digest; returns (index, meta, digest)."""
    removed = [str(source) for (source,) in delta.execute("SELECT source FROM removed")]
    for start in range(0, len(removed), _LOOKUP_BATCH):
        batch = removed[start:start + _LOOKUP_BATCH]
        labels_found = _live_labels(conns, batch, tombstones)
        missing = [source for source in batch if source not in labels_found]
        if missing:
            raise DeltaError(f"The delta removes {missing[0]}, which the installed library does not hold.")
        out.executemany("INSERT INTO tombstones VALUES (?, ?)", ((labels_found[s], s) for s in batch))
        tombstones.update(labels_found.values())
    first = next_id = int(metas[-1]["next_record_id"])
    labels, vectors = [], []
    records, templates, thumbnails = [], [], []
    rows = delta.execute(f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))}, t.vector, "
                         "h.jpeg, r.digest FROM records r JOIN templates t USING (record_id) "
                         "JOIN thumbnails h USING (record_id) ORDER BY r.record_id")
    for row in rows:
        record, vector, thumbnail = added_record(tuple(row), info.dim)  # checked against the digest it carries
        records.append((next_id, record.subject_ref, record.sex, record.ethnicity_code,
                        _iso(record.date_of_birth), record.age_band, _iso(record.image_date), record.source,
                        record.quality, row[-1]))
        templates.append((next_id, vector.tobytes()))
        thumbnails.append((next_id, thumbnail))
        labels.append(next_id)
        vectors.append(vector)
        next_id += 1
    try:
        out.executemany(_INSERT_RECORD, records)
    except sqlcipher3.IntegrityError as e:
        raise DeltaError(f"The delta adds an image twice ({e}): the delta is damaged.") from e
    out.executemany("INSERT INTO templates VALUES (?, ?)", templates)
    out.executemany("INSERT INTO thumbnails VALUES (?, ?)", thumbnails)
    stage("rows")
    # The digest pass reads every part's (source, digest) and is the only step that grows with the library; it
    # runs on its own connections while hnswlib (which releases the GIL) builds the segment's index.
    own = list(labelled_digests(_fetcher(out)))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-digest") as pool:
        pending = pool.submit(_result_digest, conns, own, tombstones, info)
        hnsw = None
        scalars, index_digest = "{}", NO_INDEX
        if labels:
            hnsw = index.build_index(np.vstack(vectors), np.asarray(labels, dtype=np.uint64),
                                     threads=max(index_threads, 1), ef_construction=index.SEGMENT_EF_CONSTRUCTION)
            scalars, index_digest = index_storage.write_index(out, hnsw)
        stage("index")
        result = pending.result()
    count = int(metas[-1]["count"]) - info.removed + len(labels)
    meta = {"format": SEGMENT_FORMAT, "format_version": str(FORMAT_VERSION), "embedder_id": info.embedder_id,
            "dim": str(info.dim), "version": str(info.result_version), "base_version": str(info.base_version),
            "base_digest": info.base_digest, "count": str(count), "added": str(len(labels)),
            "removed": str(info.removed), "first_label": str(first), "next_record_id": str(next_id),
            "created_at": now_iso(), "index_scalars": scalars, "index_digest": index_digest}
    return hnsw, meta, result


def _result_digest(conns: list[sqlcipher3.Connection], own: list[tuple[str, bytes, int]], tombstones: set[int],
                   info: DeltaInfo) -> str:
    """The content digest of the chain plus the new segment's rows; it must be the one central signed."""
    parts = [labelled_digests(_fetcher(conn)) for conn in conns] + [iter(own)]
    try:
        result = digest.combine(info.embedder_id, info.dim, live_digests(parts, frozenset(tombstones)))
    except ValueError as e:  # a source twice: the delta adds an image the library still holds
        raise DeltaResultMismatchError(f"Applying the update gave a library with an image twice ({e}). "
                                       f"It was not installed; the installed library stays in use.") from e
    if result != info.result_digest:
        raise DeltaResultMismatchError(
            f"Applying the update to version {info.result_version} did not give the library central "
            f"described (content {result[:12]} instead of {info.result_digest[:12]}). It was not "
            f"installed; the installed library stays in use.")
    return result


def _live_labels(conns: list[sqlcipher3.Connection], sources: list[str], tombstones: set[int]) -> dict[str, int]:
    """The label under which each source is live in the chain (a removed-then-re-added image has two labels)."""
    found: dict[str, int] = {}
    marks = ",".join("?" * len(sources))
    for conn in reversed(conns):  # the newest part first: a re-added image lives in a later segment
        for label, source in conn.execute(f"SELECT record_id, source FROM records WHERE source IN ({marks})",
                                          sources):
            if int(label) not in tombstones:
                found.setdefault(str(source), int(label))
    return found


def read_segment_meta(path: Path, key: bytes) -> dict[str, str]:
    conn = cipher.connect(path, key, read_only=True)
    try:
        return _meta(conn)
    finally:
        conn.close()
