"""Compaction that fits any library: merge a version's segments into one segment, the base untouched.

Folding segments into a new base (``library.compaction``'s ``"base"`` mode) loads a second copy
of the base index beside the one the desk serves: at 20M templates about 23 GB more, which no
desk appliance has (``docs/benchmarks.md``). Merging the segments among themselves costs memory
for the segments' own records only (Lucene merges segments the same way and never rewrites the
whole index), so the store picks it when the base would not fit twice
(``LibraryStore.compaction_mode``).

``library.compaction.compact`` drives it as it drives the fold into a base (same stages, lock and
switch). The merge copies the first segment's ciphertext to ``segments/<v>-merged.seg.compacting``;
per later segment it deletes the rows that segment's tombstones name inside the merged range,
keeps its tombstones of base records, and inserts its rows under the labels they already have.
The first segment's index is loaded (authenticated), the removed labels marked deleted and the
later segments' templates added (rebuilt from the templates when marked items pass 25 %, as for
deltas). The result must give the version's content digest together with the base (the same
proof a delta's apply gives), and only then, under the store's lock and if the pointer still
names the same base and begins with the same segments, is it renamed into place and the pointer
switched to the base, the merged segment and any segments installed meanwhile. The base's
tombstones stay in the merged segment until a full version (or a compaction into a base on a
larger machine) drops them; searches keep skipping them with hnswlib's filter.
"""

from __future__ import annotations

from pathlib import Path

import sqlcipher3

from library import cipher, digest, index, index_storage
from library.delta import REBUILD_DELETED_FRACTION, StageHook
from library.errors import SnapshotError
from library.segment import NO_INDEX, SEGMENT_SUFFIX, labelled_digests, live_digests
from library.snapshot import write_meta

MERGED_MARK = "-merged"


def merged_path(segments: Path, version: int) -> Path:
    """Where the merge of the segments up to ``version`` goes (a merge's last version is merged only once)."""
    return segments / f"{version:010d}{MERGED_MARK}{SEGMENT_SUFFIX}"


def fold_segments(work: Path, base: Path, later: list[Path], key: bytes, last: dict[str, str], stage: StageHook,
                  index_threads: int) -> None:
    """Fold ``later`` segments into ``work`` (a copy of the first) and prove the result with ``base``."""
    conn = cipher.connect(work, key)
    base_conn = cipher.connect(base, key, read_only=True)
    try:
        conn.execute("PRAGMA journal_mode = OFF")  # thrown away on any failure, fsynced before its rename
        conn.execute("PRAGMA synchronous = OFF")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        dim, first_label = int(meta["dim"]), int(meta["first_label"])
        first_next, first_live = int(meta["next_record_id"]), int(meta["added"])
        removed_here: list[int] = []  # labels of the first segment that later segments removed
        for path in later:
            conn.execute("ATTACH DATABASE ? AS seg KEY ?", (str(path), f"x'{key.hex()}'"))
            dead = [(int(label), str(source)) for label, source in conn.execute("SELECT label, source FROM "
                                                                                 "seg.tombstones")]
            inside = [label for label, _ in dead if label >= first_label]
            for table in ("templates", "thumbnails", "records"):
                conn.executemany(f"DELETE FROM main.{table} WHERE record_id = ?", ((t,) for t in inside))
            removed_here.extend(t for t in inside if t < first_next)
            try:
                conn.executemany("INSERT INTO main.tombstones VALUES (?, ?)",
                                 ((label, source) for label, source in dead if label < first_label))
            except sqlcipher3.IntegrityError as e:
                raise SnapshotError(f"The library's segments remove one record twice ({e}); the segments stay "
                                    f"in use. Reinstall the full library from central.") from e
            for table in ("records", "templates", "thumbnails"):
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM seg.{table}")
            conn.commit()
            conn.execute("DETACH DATABASE seg")
        stage("compact-rows")
        live = int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
        hnsw = _merged_index(conn, meta, dim, first_next, first_live, removed_here, live, index_threads)
        scalars, index_digest = ("{}", NO_INDEX) if hnsw is None else index_storage.write_index(conn, hnsw)
        if hnsw is None:
            conn.execute("DELETE FROM index_arrays")
        del hnsw
        stage("compact-index")
        tombstones = frozenset(int(t) for (t,) in conn.execute("SELECT label FROM tombstones"))
        fetchers = [lambda sql, params, c=c: c.execute(sql, params).fetchall() for c in (base_conn, conn)]
        result = digest.combine(meta["embedder_id"], dim,
                                live_digests([labelled_digests(f) for f in fetchers], tombstones))
        base_live = int(dict(base_conn.execute("SELECT key, value FROM meta WHERE key = 'count'").fetchall())
                        ["count"]) - len(tombstones)
        if result != last["content_digest"] or base_live + live != int(last["count"]):
            raise SnapshotError(f"Merging the library's segments did not reproduce version {last['version']} "
                                f"(content {result[:12]}); the segments stay in use.")
        write_meta(conn, {"version": last["version"], "count": last["count"], "added": str(live),
                          "removed": str(len(tombstones)), "next_record_id": last["next_record_id"],
                          "created_at": last["created_at"], "index_scalars": scalars, "index_digest": index_digest,
                          "content_digest": result})
        conn.commit()
    finally:
        base_conn.close()
        conn.close()


def _merged_index(conn: sqlcipher3.Connection, meta: dict[str, str], dim: int, first_next: int, first_live: int,
                  removed_here: list[int], live: int, index_threads: int) -> object | None:
    """The first segment's index with the removed labels marked deleted and the later rows added, or a fresh
    one over every row when marked items would pass ``REBUILD_DELETED_FRACTION``; None when no row is left."""
    if live == 0:
        return None
    added = conn.execute("SELECT record_id, vector FROM templates WHERE record_id >= ? ORDER BY record_id",
                         (first_next,)).fetchall()
    if meta["index_digest"] != NO_INDEX:
        hnsw = index_storage.load_index(lambda sql, params: conn.execute(sql, params).fetchall(),
                                        meta["index_scalars"], meta["index_digest"], dim)
        already = hnsw.get_current_count() - first_live  # marked deleted by an earlier merge
        deleted = already + len(removed_here)
        if deleted <= REBUILD_DELETED_FRACTION * (hnsw.get_current_count() + len(added)):
            return index.extend(hnsw, removed_here, added, dim, index_threads)
        del hnsw
    rows = conn.execute("SELECT record_id, vector FROM templates ORDER BY record_id").fetchall()
    return index.build_index(*index.rows_as_arrays(rows, dim), threads=max(index_threads, 1),
                             ef_construction=index.SEGMENT_EF_CONSTRUCTION)
