"""Background compaction: fold a library version's segments into a new base snapshot, or merge them.

Every applied delta adds a segment (``library.segment``); searches pay a little for each
segment and for the tombstones filtered out of the base. Once the store says so
(``LibraryStore.needs_compaction``: ``COMPACT_SEGMENTS`` segments, or segments holding
``COMPACT_FRACTION`` of the base's bytes) the desk starts this module as its own process
at the lowest CPU priority (``SCHED_IDLE``, nice 19, one index thread), so searches keep
both cores while it runs on whatever is left.

The merge builds ``versions/<v>.db.compacting`` from a ciphertext copy of the base:
tombstoned rows deleted, segment rows inserted under the labels they already have,
the base index loaded (authenticated), tombstoned labels marked deleted and the segments'
templates added (rebuilt from the templates when marked items pass 25 %, as for deltas),
and the content digest checked against the version's. Only then, under the store's lock
and only if the pointer still names the same base and starts with the same segments,
is the file renamed into ``versions/`` and the pointer switched to the new base plus any
segments installed meanwhile. ``kill -9`` at any point leaves the previous pointer, and
the next store open removes the unfinished file.

That merge holds a second copy of the base index in memory. When it would not fit
(``LibraryStore.compaction_mode``: a 20M-record base on a 32 GB desk), the segments are merged
into one segment instead (``library.segment_merge``), leaving the base as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from library import cipher, index, index_storage
from library.delta import REBUILD_DELETED_FRACTION, StageHook
from library.errors import SnapshotError
from library.files import copy_ciphertext, durable_replace
from library.segment import read_segment_meta
from library.segment_merge import fold_segments, merged_path
from library.snapshot import stored_digest, write_meta
from library.store import COMPACTING_SUFFIX, LibraryStore

logger = logging.getLogger(__name__)


def compact(store: LibraryStore, key: bytes, *, mode: str | None = None, memory_available: int | None = None,
            on_stage: StageHook | None = None, index_threads: int = 1) -> int | None:
    """Fold the current segments into a new base (``mode="base"``) or merge them into one segment
    (``"segments"``, ``library.segment_merge``); by default whichever the machine's memory allows
    (``LibraryStore.compaction_mode``). Returns the version compacted, or None when there was nothing to do
    (no segment; for a merge, fewer than two) or the library changed meanwhile (a full install wins; the work
    is thrown away)."""
    if mode is None and store.current_version() is not None:
        mode = store.compaction_mode(key, memory_available)
    merging = mode == "segments"
    stage = on_stage or (lambda _name: None)
    with store.locked() as pointer:
        if pointer is None:
            return None
        base = store.current_path()
        names = store.segment_files(pointer)
        key_id = pointer.get("key_id")
    if len(names) < (2 if merging else 1):
        return None
    segments = [store.segments / name for name in names]
    last = read_segment_meta(segments[-1], key)
    version = int(last["version"])
    target = merged_path(store.segments, version) if merging else store.versions / f"{version:010d}.db"
    work = target.with_name(target.name + COMPACTING_SUFFIX)
    try:
        copy_ciphertext(segments[0] if merging else base, work)
        stage("compact-copied")
        if merging:
            fold_segments(work, base, segments[1:], key, last, stage, index_threads)
        else:
            _merge(work, segments, key, last, stage, index_threads)
        stage("compact-written")
        with store.locked() as now:
            if now is None or now.get("file") != base.name or store.segment_files(now)[:len(names)] != names:
                logger.info("compaction to version %d abandoned: the library changed meanwhile", version)
                work.unlink(missing_ok=True)
                return None
            if not work.exists():  # a store opened meanwhile removed it as a leftover
                return None
            durable_replace(work, target)
            stage("compact-renamed")
            remaining = store.segment_files(now)[len(names):]
            key_id = key_id if isinstance(key_id, str) else None
            if merging:
                store.switch_segments([target.name, *remaining], int(str(now["version"])),
                                      str(now["content_digest"]), key_id)
            else:
                store.switch_compacted(target, int(str(now["version"])), remaining, str(now["content_digest"]),
                                       key_id)
    except BaseException:
        work.unlink(missing_ok=True)
        raise
    logger.info("library segments up to version %d %s", version,
                f"merged into one ({len(names)} before)" if merging else "compacted into a new base")
    return version


def _merge(work: Path, segments: list[Path], key: bytes, last: dict[str, str], stage: StageHook,
           index_threads: int) -> None:
    conn = cipher.connect(work, key)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        dim = int(meta["dim"])
        tombstones: set[int] = set()
        for path in segments:
            conn.execute("ATTACH DATABASE ? AS seg KEY ?", (str(path), f"x'{key.hex()}'"))
            # A segment's tombstones name records of the parts before it: delete those first, since a changed
            # record comes back under the same source in this segment.
            dead = [int(t) for (t,) in conn.execute("SELECT label FROM seg.tombstones")]
            tombstones.update(dead)
            for table in ("templates", "thumbnails", "records"):
                conn.executemany(f"DELETE FROM main.{table} WHERE record_id = ?", ((t,) for t in dead))
            for table in ("records", "templates", "thumbnails"):
                conn.execute(f"INSERT INTO main.{table} SELECT * FROM seg.{table}")
            conn.commit()
            conn.execute("DETACH DATABASE seg")
        base_deleted = [t for t in tombstones if t < int(meta["next_record_id"])]
        stage("compact-rows")
        added = conn.execute("SELECT record_id, vector FROM templates WHERE record_id >= ? ORDER BY record_id",
                             (int(meta["next_record_id"]),)).fetchall()
        count = int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
        deleted = int(meta["index_deleted"]) + len(base_deleted)
        if deleted > REBUILD_DELETED_FRACTION * (count + deleted):
            rows = conn.execute("SELECT record_id, vector FROM templates ORDER BY record_id").fetchall()
            hnsw = index.build_index(*index.rows_as_arrays(rows, dim), threads=index_threads)
            deleted = 0
        else:
            hnsw = index.extend(index_storage.load_index(lambda sql, params: conn.execute(sql, params).fetchall(),
                                                         meta["index_scalars"], meta["index_digest"], dim),
                                base_deleted, added, dim, index_threads)
        stage("compact-index")
        scalars, index_digest = index_storage.write_index(conn, hnsw)
        del hnsw
        result = stored_digest(conn, meta["embedder_id"], dim)
        if result != last["content_digest"] or count != int(last["count"]):
            raise SnapshotError(f"Compacting the library did not reproduce version {last['version']} (content "
                                f"{result[:12]}); the segments stay in use.")
        write_meta(conn, {"version": last["version"], "count": str(count), "created_at": last["created_at"],
                          "index_scalars": scalars, "index_digest": index_digest, "index_deleted": str(deleted),
                          "next_record_id": last["next_record_id"], "content_digest": result})
        conn.commit()
    finally:
        conn.close()


def start_compaction(root: Path, key: bytes, mode: str | None = None) -> subprocess.Popen[bytes]:
    """Run ``compact`` for the store at ``root`` in a background process at the lowest CPU priority.

    The key goes through a pipe (never the command line or the environment, which other users can read).
    """
    command = [sys.executable, "-m", "library.compaction", str(root)] + ([f"--mode={mode}"] if mode else [])
    child = subprocess.Popen(command, stdin=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
                             start_new_session=True)
    assert child.stdin is not None
    child.stdin.write(key.hex().encode() + b"\n")
    child.stdin.close()
    return child


def _lowest_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    os.nice(19)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compact a desk library store's segments into a new base.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--mode", choices=("base", "segments"),
                        help="fold into a new base, or merge the segments into one (default: what memory allows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _lowest_priority()
    key = bytes.fromhex(sys.stdin.readline().strip())
    compact(LibraryStore(args.root), key, mode=args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
