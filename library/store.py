"""The device's library folder: every installed version, and one pointer saying which is in use.

    <root>/versions/<version>.db   complete, verified base snapshots (SQLCipher)
    <root>/segments/<version>.seg  delta segments (``library.segment``), one per applied delta
    <root>/current                 JSON {"version", "file", "segments", "content_digest", "key_id"}; replaced
                                   atomically. ``file`` is the base, ``segments`` the segment files on top of
                                   it in order; the version is the base plus every segment.

A delta is installed as a new segment: the base and the earlier segments are not
copied or touched, so an update writes about the size of the delta and loads only the
segment's small index. ``library.compaction`` later folds the segments into a new base
in a background process and switches the pointer the same way.

``key_id`` names the content key the current version is encrypted under (``core.keywrap.key_id``):
a re-keyed lineage changes key with a full version, so the pointer and the key move together.
A pointer written before key ids has none; the desk then opens it with its provisioned key.

The pointer is the single commit point. A new version is built or copied
under a temporary name, checked, fsynced and renamed into ``versions/``, and
only then does ``current`` move (temp file, fsync, rename, fsync of the
folder). So ``kill -9`` or a power cut at any moment leaves ``current``
naming either the previous version or the new, complete one; whatever an
interrupted install left behind is removed when the store is next opened.

A delta's segment is built by a child process (``library.apply_process``) at low CPU
priority, so the desk's searches keep the GIL; this process opens the finished segment
once, checks it is the version and content central described, and moves the pointer.

``on_stage`` is a test seam: it is called with the name of each step
("copied", "rows", "index", "written", "renamed", "switched", and compaction's
"compact-*" steps; a delta's first five are relayed from its apply process, which waits
while the hook runs) so a test can kill either process at a known point. Production code
never sets it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlcipher3

from library import cipher, digest, index, memory
from library.apply_process import SegmentBuild
from library.delta import APPLYING_SUFFIX, StageHook, read_delta_info
from library.errors import (
    DeltaBaseMismatchError,
    DeltaResultMismatchError,
    EmbedderMismatchError,
    LibraryStoreError,
    SnapshotError,
    VersionRollbackError,
)
from library.files import copy_ciphertext, durable_replace, durable_write_text
from library.segment import SEGMENT_SUFFIX, Segment
from library.snapshot import Snapshot
from library.version import LibraryVersion, open_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotClaims:
    """What a full snapshot says about itself in its (authenticated) meta table."""

    version: int
    digest: str
    embedder_id: str


def read_meta(path: Path, key: bytes) -> dict[str, str]:
    """A library file's (authenticated) meta table."""
    conn = cipher.connect(path, key, read_only=True)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlcipher3.DatabaseError as e:
        raise SnapshotError(f"{Path(path).name} is not a library snapshot or is damaged ({e}).") from e
    finally:
        conn.close()


def read_snapshot_claims(path: Path, key: bytes) -> SnapshotClaims:
    """A snapshot's version, digest and face model from its meta table alone: no index load (the store loads
    the index once, to verify the file, and the desk then serves that same object)."""
    meta = read_meta(path, key)
    try:
        return SnapshotClaims(int(meta["version"]), meta.get("content_digest", ""), meta["embedder_id"])
    except (KeyError, ValueError) as e:
        raise SnapshotError(f"{Path(path).name} is not a library snapshot ({e}).") from e

POINTER = "current"
_PART_SUFFIX = ".part"
COMPACTING_SUFFIX = ".compacting"
# Past this many segments (or this share of the version's records in segments) the desk compacts.
COMPACT_SEGMENTS = 8
COMPACT_FRACTION = 0.10
COMPACT_MIN_BYTES = 64 * 1024 * 1024  # below this, segments cost too little to be worth a merge
# A compaction into a new base loads a second copy of the base index beside the one the desk serves; it is tried
# only when that copy (``index.memory_bytes``) fits in this share of the memory available. Otherwise the segments
# are merged into one (``library.segment_merge``), which needs memory for the segments' records alone.
COMPACT_MEMORY_SHARE = 0.5
# A desk that can only merge takes central's next full version instead of a delta once its segments hold this
# share of the base's records in changes (``wants_new_base``).
REBASE_FRACTION = 0.10


def base_fits_twice(count: int, dim: int, memory_available: int | None = None) -> bool:
    """Whether a second copy of a base index of ``count`` templates fits in ``COMPACT_MEMORY_SHARE`` of the
    memory available (the kernel's ``MemAvailable`` unless given)."""
    available = memory.available_bytes() if memory_available is None else memory_available
    return index.memory_bytes(count, dim) <= COMPACT_MEMORY_SHARE * available


def wants_new_base(version: object, memory_available: int | None = None) -> bool:
    """Whether the desk should take central's next full version rather than a delta: its base cannot be
    compacted here (too big to load twice), and the changes kept on top of it (records added and removed by
    its segments, merged or not) have passed ``REBASE_FRACTION`` of the base's records. Merging alone would
    let the merged segment and the base's removed records grow without end."""
    if not isinstance(version, LibraryVersion) or not version.segments:
        return False
    base = version.base
    if base_fits_twice(base.count, base.dim, memory_available):
        return False
    changes = sum(s.added + len(s.tombstones) for s in version.segments)
    return changes > REBASE_FRACTION * base.count


class LibraryStore:
    """Installs full libraries and deltas so that versions only move forward and a crash never breaks one."""

    def __init__(self, root: Path, *, keep: int = 2, on_stage: StageHook | None = None) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.versions.mkdir(parents=True, exist_ok=True)
        self.segments = self.root / "segments"
        self.segments.mkdir(exist_ok=True)
        self.keep = max(keep, 1)
        # Segments this store built, with the index it built for them: open_current serves them as they are.
        self._built: dict[str, Segment] = {}
        #: The child process building a segment while ``install_delta`` runs (``library.apply_process``).
        self.building: SegmentBuild | None = None
        self._stage = on_stage or (lambda _name: None)
        with self._locked():
            self._recover()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One installer at a time per folder (an update and an operator's manual install could race)."""
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _pointer(self) -> dict[str, object] | None:
        try:
            data = json.loads((self.root / POINTER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as e:  # cannot happen through this class: the pointer is replaced atomically
            raise LibraryStoreError(f"The library pointer {self.root / POINTER} is unreadable ({e}).") from e
        return data if isinstance(data, dict) else None

    def _recover(self) -> None:
        """Remove what an interrupted install left: temp files, and versions the pointer never reached."""
        (self.root / (POINTER + ".tmp")).unlink(missing_ok=True)
        pointer = self._pointer()
        base = None if pointer is None else str(pointer["file"])
        base_version = None if base is None else int(Path(base).stem)
        listed = set(self.segment_files(pointer))
        for path in self.versions.iterdir():
            leftover = path.name.endswith((APPLYING_SUFFIX, _PART_SUFFIX, COMPACTING_SUFFIX))
            # A base newer than the pointer's: an install or a compaction that never switched.
            never_switched = (path.suffix == ".db" and path.stem.isdigit() and path.name != base
                              and (base_version is None or int(path.stem) > base_version))
            if leftover or never_switched:
                logger.warning("removing %s left by an interrupted library install", path.name)
                path.unlink()
        for path in self.segments.iterdir():
            if path.name not in listed:
                logger.warning("removing segment %s, which the current library does not use", path.name)
                path.unlink()

    @staticmethod
    def segment_files(pointer: dict[str, object] | None) -> list[str]:
        names = [] if pointer is None else pointer.get("segments", [])
        return [str(n) for n in names] if isinstance(names, list) else []

    def current_version(self) -> int | None:
        pointer = self._pointer()
        return None if pointer is None else int(pointer["version"])  # type: ignore[call-overload]

    def current_key_id(self) -> str | None:
        """The key id the current version needs, or None (nothing installed, or installed before key ids)."""
        pointer = self._pointer()
        key_id = None if pointer is None else pointer.get("key_id")
        return key_id if isinstance(key_id, str) else None

    def current_path(self) -> Path:
        pointer = self._pointer()
        if pointer is None:
            raise LibraryStoreError(f"No library is installed in {self.root}; install a full library first.")
        path = self.versions / str(pointer["file"])
        if not path.exists():
            raise LibraryStoreError(f"The installed library {path} is missing; reinstall a full library.")
        return path

    def segment_paths(self) -> list[Path]:
        return [self.segments / name for name in self.segment_files(self._pointer())]

    def open_current(self, key: bytes, expected_embedder: str | None = None, *,
                     reuse: object | None = None) -> LibraryVersion:
        """The current version, searchable. Parts already open in ``reuse`` (the version the desk serves now)
        and segments this store has just built are shared, not loaded again: an update opens each file once."""
        parts: dict[str, Snapshot] = dict(self._built)
        if isinstance(reuse, LibraryVersion):
            parts.update({part.path.name: part for part in reuse.parts})
        elif isinstance(reuse, Snapshot):
            parts[reuse.path.name] = reuse
        base = self.current_path()
        if base.name in parts and parts[base.name].path.resolve() != base.resolve():
            del parts[base.name]  # same name, other folder (a snapshot installed from elsewhere)
        try:
            return open_version(base, self.segment_paths(), key, expected_embedder, reuse=parts)
        finally:
            self._built.clear()

    def _target(self, version: int) -> Path:
        return self.versions / f"{version:010d}.db"

    def _check_forward(self, version: int) -> None:
        current = self.current_version()
        if current is not None and version <= current:
            raise VersionRollbackError(
                f"Library version {version} is not newer than the installed version {current}; it was not installed."
            )

    def install_full(self, src: Path, key: bytes, *, expected_embedder: str | None = None,
                     expected_digest: str | None = None, key_id: str | None = None) -> int:
        """Copy a complete snapshot in and switch to it; returns the new version."""
        with self._locked():
            version = read_snapshot_claims(Path(src), key).version
            self._check_forward(version)
            target = self._target(version)
            part = target.with_name(target.name + _PART_SUFFIX)
            try:
                copy_ciphertext(Path(src), part)
                self._stage("copied")
                snapshot = self._verify(part, key, expected_embedder, expected_digest)
                try:
                    durable_replace(part, target)
                except BaseException:
                    snapshot.close()
                    raise
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            snapshot.path = target  # the open connection follows the renamed file
            self._built = {target.name: snapshot}
            self._stage("renamed")
            content = snapshot.digest
            self._switch(target, version, content, key_id)
            return version

    def install_delta(self, delta: Path, key: bytes, *, expected_embedder: str | None = None,
                      expected_digest: str | None = None, index_threads: int = 1) -> int:
        """Apply a delta to the current version and switch to the result; returns the new version.

        A delta never changes the content key (a re-key is always a full version), so the key id stays.
        """
        with self._locked():
            base = self.current_path()
            current = self.current_version()
            info = read_delta_info(delta, key)
            self._check_forward(info.result_version)
            if info.base_version != current:
                raise DeltaBaseMismatchError(
                    f"This update changes library version {info.base_version}, but version {current} is installed. "
                    f"It was not applied; install the full library version {info.result_version} instead."
                )
            if expected_embedder is not None and info.embedder_id != expected_embedder:
                raise EmbedderMismatchError(f"This update is for {info.embedder_id} libraries; this device uses "
                                            f"{expected_embedder}. It was not applied.")
            if expected_digest is not None and expected_digest != info.result_digest:
                raise SnapshotError("The update's content digest is not the one central published; not installed.")
            pointer = self._pointer() or {}
            chain = [base, *self.segment_paths()]
            target = self.segments / f"{info.result_version:010d}{SEGMENT_SUFFIX}"
            # The child proves the parts add up to the signed result digest before it renames the segment in;
            # this process only opens the finished segment (once) and moves the pointer.
            self.building = SegmentBuild(chain, delta, key, target, index_threads=index_threads)
            try:
                self.building.wait(self._stage)
            finally:
                self.building = None
            try:
                segment = Segment(target, key, expected_embedder)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            try:
                if (segment.version, segment.digest) != (info.result_version, info.result_digest):
                    raise DeltaResultMismatchError(
                        f"The library segment built for version {info.result_version} does not hold the content "
                        f"central described. It was not installed; the installed library stays in use.")
                segments = [*self.segment_files(pointer), target.name]
                self._switch(base, info.result_version, info.result_digest, self.current_key_id(), segments)
            except BaseException:
                segment.close()
                if self.current_version() != info.result_version:
                    target.unlink(missing_ok=True)
                raise
            self._built = {target.name: segment}
            return info.result_version

    def _verify(self, path: Path, key: bytes, expected_embedder: str | None, expected_digest: str | None
                ) -> Snapshot:
        """The file opens, its index loads, and its records add up to the digest it claims (and central's).

        The opened snapshot is returned, so the desk serves it without loading its index a second time.
        """
        snapshot = Snapshot.open(path, key, expected_embedder)
        try:
            actual = digest.content_digest(snapshot)
            if actual != snapshot.digest or (expected_digest is not None and actual != expected_digest):
                raise SnapshotError(f"Library version {snapshot.version} does not hold the content it should "
                                    f"(digest {actual[:12]}); it was not installed.")
            return snapshot
        except BaseException:
            snapshot.close()
            raise

    def _switch(self, target: Path, version: int, content_digest: str, key_id: str | None,
                segments: list[str] | None = None, stage: str = "switched") -> None:
        pointer = {"version": version, "file": target.name, "segments": segments or [],
                   "content_digest": content_digest, "key_id": key_id}
        durable_write_text(self.root / POINTER, json.dumps(pointer) + "\n")
        self._stage(stage)
        logger.info("library version %d is now current (%d segments)", version, len(segments or []))
        self._prune(int(target.stem), segments or [])

    def _prune(self, base: int, segments: list[str]) -> None:
        """Keep the current base and ``keep - 1`` before it, and only the segments in use; a process still
        reading a removed file keeps its open descriptor (and a segment's index is in its memory)."""
        installed = sorted(int(p.stem) for p in self.versions.glob("*.db") if p.stem.isdigit())
        for version in [v for v in installed if v < base][: max(len(installed) - self.keep, 0)]:
            os.unlink(self._target(version))
        for path in self.segments.glob(f"*{SEGMENT_SUFFIX}"):
            if path.name not in segments:
                path.unlink()

    # --- compaction -------------------------------------------------------------------------------

    def needs_compaction(self) -> bool:
        """At ``COMPACT_SEGMENTS`` segments, or when segment files pass ``COMPACT_FRACTION`` of the base's bytes
        (and ``COMPACT_MIN_BYTES``)."""
        pointer = self._pointer()
        names = self.segment_files(pointer)
        if len(names) >= COMPACT_SEGMENTS:
            return True
        if not names or pointer is None:
            return False
        size = sum((self.segments / n).stat().st_size for n in names if (self.segments / n).exists())
        return size > max(COMPACT_FRACTION * self.current_path().stat().st_size, COMPACT_MIN_BYTES)

    def compaction_mode(self, key: bytes, memory_available: int | None = None) -> str:
        """``"base"`` when a second copy of the base index fits in ``COMPACT_MEMORY_SHARE`` of the memory
        available (the kernel's ``MemAvailable`` unless given), else ``"segments"``."""
        meta = read_meta(self.current_path(), key)
        fits = base_fits_twice(int(meta.get("count", 0)), int(meta.get("dim", 0)), memory_available)
        return "base" if fits else "segments"

    def compaction_plan(self, key: bytes, memory_available: int | None = None) -> str | None:
        """What the desk should compact now, if anything: ``"base"`` past ``needs_compaction``'s thresholds
        when the base index fits twice in memory; ``"segments"`` (merge them into one, base untouched) at
        ``COMPACT_SEGMENTS`` segments when it does not."""
        names = self.segment_files(self._pointer())
        if not names:
            return None
        if self.compaction_mode(key, memory_available) == "base":
            return "base" if self.needs_compaction() else None
        return "segments" if len(names) >= COMPACT_SEGMENTS else None

    @contextmanager
    def locked(self) -> Iterator[dict[str, object] | None]:
        """The installer's lock with the pointer as it stands (compaction switches under it)."""
        with self._locked():
            yield self._pointer()

    def switch_compacted(self, new_base: Path, version: int, remaining: list[str], content_digest: str,
                         key_id: str | None) -> None:
        """Make ``new_base`` (already renamed into ``versions/``) the base; the caller holds ``locked()``."""
        self._switch(new_base, version, content_digest, key_id, remaining, stage="compact-switched")

    def switch_segments(self, segments: list[str], version: int, content_digest: str, key_id: str | None) -> None:
        """Keep the base and serve ``segments`` (a merge's result, already in ``segments/``, then the segments
        installed meanwhile) on top of it; the caller holds ``locked()``."""
        self._switch(self.current_path(), version, content_digest, key_id, segments, stage="compact-switched")
