"""One library version as the desk searches it: an immutable base snapshot plus its delta segments.

``LibraryVersion`` has the shape of ``library.snapshot.Snapshot`` that the desk uses
(``version``, ``digest``, ``embedder_id``, ``count``, ``search``, ``record``,
``thumbnail``, ``template``, ``records``, ``close``), so the holder, the case service and
the self-test do not need to know whether a version came whole or as base + segments.

A search queries the base and every segment, each with hnswlib's ``filter`` rejecting
the version's tombstoned labels during the walk, and merges the top k by score. Parts are
shared between versions: the version after an update holds the same base and segment
objects as the one before plus the new segment, so an update loads nothing it already has
("open once"). Each part is closed when the last version holding it is closed.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from pathlib import Path

import hnswlib
import numpy as np

from library import index
from library.errors import EmbedderMismatchError, SnapshotError
from library.records import Candidate, ReferenceRecord
from library.segment import Segment, live_digests
from library.snapshot import Snapshot

_refs_lock = threading.Lock()
_refs: dict[int, int] = {}


def _acquire(part: Snapshot) -> None:
    with _refs_lock:
        _refs[id(part)] = _refs.get(id(part), 0) + 1


def _release(part: Snapshot) -> None:
    with _refs_lock:
        left = _refs.get(id(part), 1) - 1
        if left:
            _refs[id(part)] = left
            return
        _refs.pop(id(part), None)
    part.close()


class LibraryVersion:
    """A base snapshot and its segments, checked to form one chain of versions; searchable from many threads."""

    def __init__(self, base: Snapshot, segments: list[Segment]) -> None:
        previous_version, previous_digest = base.version, base.digest
        for segment in segments:
            if (segment.base_version, segment.base_digest) != (previous_version, previous_digest):
                raise SnapshotError(f"The library segment {segment.path.name} does not follow version "
                                    f"{previous_version}: the installed library is inconsistent. Reinstall the "
                                    f"full library from central.")
            if (segment.embedder_id, segment.dim) != (base.embedder_id, base.dim):
                raise SnapshotError(f"The library segment {segment.path.name} is for another face model.")
            previous_version, previous_digest = segment.version, segment.digest
        self.base, self.segments = base, list(segments)
        self.parts: list[Snapshot] = [base, *segments]
        for part in self.parts:
            _acquire(part)
        last = self.parts[-1]
        self.path = base.path
        self.embedder_id, self.dim = base.embedder_id, base.dim
        self.version, self.digest, self.count = last.version, last.digest, last.count
        self.created_at = last.created_at
        self.meta = base.meta
        tombs = np.concatenate([s.tombstones for s in segments]) if segments else np.empty(0, np.int64)
        self.tombstones = frozenset(int(t) for t in tombs)
        self._keep = (lambda label: label not in self.tombstones) if self.tombstones else None
        base_next = int(base.meta.get("next_record_id", "0"))
        # Live records per part (hnswlib raises when asked for more than it can return).
        self._live = [base.count - int(np.count_nonzero(tombs < base_next))]
        self._live += [s.added - int(np.count_nonzero((tombs >= s.first_label) & (tombs < s.next_record_id)))
                       for s in segments]
        self._closed = False

    @property
    def index(self) -> hnswlib.Index:
        """The base's HNSW index (benchmarks)."""
        return self.base.index

    def _part_of(self, record_id: int) -> Snapshot | None:
        if record_id in self.tombstones:
            return None
        for segment in reversed(self.segments):
            if segment.holds(record_id):
                return segment
        return self.base if record_id < int(self.base.meta.get("next_record_id", "0")) else None

    def search(self, vector: np.ndarray, k: int = 10) -> list[Candidate]:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise EmbedderMismatchError(
                f"The probe template has {vector.shape[0]} dimensions; this library uses {self.dim}.")
        hits: list[tuple[float, int, int]] = []
        for position, (part, live) in enumerate(zip(self.parts, self._live, strict=True)):
            if live <= 0 or part.index is None:
                continue
            with part._lock:
                labels, scores = index.search(part.index, vector, k, live=live, keep=self._keep)
            hits.extend((float(s), int(lab), position) for lab, s in zip(labels, scores, strict=True))
        top = heapq.nlargest(k, hits)
        records: dict[int, ReferenceRecord] = {}
        for position in {p for _, _, p in top}:
            records.update(self.parts[position]._records([lab for _, lab, p in top if p == position]))
        return [Candidate(rank=rank, score=score, record=records[label])
                for rank, (score, label, _) in enumerate(top, start=1)]

    def _owner(self, record_id: int) -> Snapshot:
        part = self._part_of(record_id)
        if part is None:
            raise SnapshotError(f"Record {record_id} is not in this library.")
        return part

    def record(self, record_id: int) -> ReferenceRecord:
        return self._owner(record_id).record(record_id)

    def thumbnail(self, record_id: int) -> bytes:
        return self._owner(record_id).thumbnail(record_id)

    def template(self, record_id: int) -> np.ndarray:
        return self._owner(record_id).template(record_id)

    def records(self) -> Iterator[ReferenceRecord]:
        """Every live record's metadata in record order (the base's labels come before every segment's)."""
        for part in self.parts:
            for record in part.records():
                if record.record_id not in self.tombstones:
                    yield record

    def _labelled(self, part: Snapshot) -> Iterator[tuple[str, bytes, int]]:
        from library.segment import labelled_digests

        return labelled_digests(part._fetch)

    def record_digests(self) -> Iterator[tuple[str, bytes]]:
        """(source, record digest) of the live records in source order: what the content digest covers."""
        return live_digests([self._labelled(part) for part in self.parts], self.tombstones)

    def entries(self) -> Iterator[tuple[ReferenceRecord, np.ndarray, bytes, bytes]]:
        def live(part: Snapshot) -> Iterator[tuple[str, tuple[ReferenceRecord, np.ndarray, bytes, bytes]]]:
            for entry in part.entries():
                if entry[0].record_id not in self.tombstones:
                    yield entry[0].source, entry

        for _, entry in heapq.merge(*(live(part) for part in self.parts), key=lambda item: item[0]):
            yield entry

    def entry(self, source: str) -> tuple[ReferenceRecord, np.ndarray, bytes]:
        for part in reversed(self.parts):
            try:
                record, template, thumbnail = part.entry(source)
            except SnapshotError:
                continue
            if record.record_id not in self.tombstones:
                return record, template, thumbnail
        raise SnapshotError(f"The image {source} is not in this library.")

    def describe(self) -> dict[str, str | int]:
        return {"version": self.version, "count": self.count, "embedder_id": self.embedder_id,
                "created_at": self.created_at, "content_digest": self.digest, "segments": len(self.segments)}

    def close(self) -> None:
        """Release this version's parts; a part still used by a newer version stays open for it."""
        if self._closed:
            return
        self._closed = True
        for part in self.parts:
            _release(part)


def open_version(base_path: Path, segment_paths: list[Path], key: bytes, expected_embedder: str | None = None,
                 *, reuse: dict[str, Snapshot] | None = None) -> LibraryVersion:
    """Open base and segments, taking already-open parts from ``reuse`` (by file name) instead of loading them."""
    reuse = reuse or {}
    opened: list[Snapshot] = []
    try:
        base = reuse.get(Path(base_path).name) or Snapshot.open(base_path, key, expected_embedder)
        if base.embedder_id != expected_embedder and expected_embedder is not None:
            raise EmbedderMismatchError(f"This library was built with face model {base.embedder_id}, but this "
                                        f"device uses {expected_embedder}. Install a library built for "
                                        f"{expected_embedder}.")
        if Path(base_path).name not in reuse:
            opened.append(base)
        segments = []
        for path in segment_paths:
            segment = reuse.get(Path(path).name)
            if segment is None:
                segment = Segment(path, key, expected_embedder)
                opened.append(segment)
            segments.append(segment)  # type: ignore[arg-type]
        return LibraryVersion(base, segments)  # type: ignore[arg-type]
    except BaseException:
        for part in opened:
            part.close()
        raise
