"""The device's library folder: every installed version, and one pointer saying which is in use.

    <root>/versions/<version>.db   complete, verified snapshots (SQLCipher)
    <root>/current                 JSON {"version", "file", "content_digest", "key_id"}; replaced atomically

``key_id`` names the content key the current version is encrypted under (``core.keywrap.key_id``):
a re-keyed lineage changes key with a full version, so the pointer and the key move together.
A pointer written before key ids has none; the desk then opens it with its provisioned key.

The pointer is the single commit point. A new version is built or copied
under a temporary name, checked, fsynced and renamed into ``versions/``, and
only then does ``current`` move (temp file, fsync, rename, fsync of the
folder). So ``kill -9`` or a power cut at any moment leaves ``current``
naming either the previous version or the new, complete one; whatever an
interrupted install left behind is removed when the store is next opened.

``on_stage`` is a test seam: it is called with the name of each step
("copied", "rows", "index", "written", "renamed", "switched") so a test can
kill the process at a known point. Production code never sets it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from library import digest
from library.delta import APPLYING_SUFFIX, StageHook, apply_delta, read_delta_info
from library.errors import (
    DeltaBaseMismatchError,
    EmbedderMismatchError,
    LibraryStoreError,
    SnapshotError,
    VersionRollbackError,
)
from library.files import copy_ciphertext, durable_replace, durable_write_text
from library.snapshot import Snapshot

logger = logging.getLogger(__name__)

POINTER = "current"
_PART_SUFFIX = ".part"


class LibraryStore:
    """Installs full libraries and deltas so that versions only move forward and a crash never breaks one."""

    def __init__(self, root: Path, *, keep: int = 2, on_stage: StageHook | None = None) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.versions.mkdir(parents=True, exist_ok=True)
        self.keep = max(keep, 1)
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
        current = self.current_version()
        for path in self.versions.iterdir():
            leftover = path.name.endswith((APPLYING_SUFFIX, _PART_SUFFIX))
            never_switched = path.suffix == ".db" and path.stem.isdigit() and (current is None
                                                                               or int(path.stem) > current)
            if leftover or never_switched:
                logger.warning("removing %s left by an interrupted library install", path.name)
                path.unlink()

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

    def open_current(self, key: bytes, expected_embedder: str | None = None) -> Snapshot:
        return Snapshot.open(self.current_path(), key, expected_embedder)

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
            snapshot = Snapshot.open(src, key, expected_embedder)
            version = snapshot.version
            snapshot.close()
            self._check_forward(version)
            target = self._target(version)
            part = target.with_name(target.name + _PART_SUFFIX)
            try:
                copy_ciphertext(Path(src), part)
                self._stage("copied")
                content = self._verify(part, key, expected_embedder, expected_digest)
                durable_replace(part, target)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            self._stage("renamed")
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
            target = self._target(info.result_version)
            # apply_delta has already proved the rows add up to the signed result digest, from the file it wrote;
            # opening it again here would load a third copy of the index for nothing.
            apply_delta(base, delta, key, target, on_stage=self._stage, index_threads=index_threads)
            self._switch(target, info.result_version, info.result_digest, self.current_key_id())
            return info.result_version

    def _verify(self, path: Path, key: bytes, expected_embedder: str | None, expected_digest: str | None) -> str:
        """The file opens, its index loads, and its records add up to the digest it claims (and central's)."""
        snapshot = Snapshot.open(path, key, expected_embedder)
        try:
            actual = digest.content_digest(snapshot)
            if actual != snapshot.digest or (expected_digest is not None and actual != expected_digest):
                raise SnapshotError(f"Library version {snapshot.version} does not hold the content it should "
                                    f"(digest {actual[:12]}); it was not installed.")
            return actual
        finally:
            snapshot.close()

    def _switch(self, target: Path, version: int, content_digest: str, key_id: str | None) -> None:
        pointer = {"version": version, "file": target.name, "content_digest": content_digest, "key_id": key_id}
        durable_write_text(self.root / POINTER, json.dumps(pointer) + "\n")
        self._stage("switched")
        logger.info("library version %d is now current", version)
        self._prune(version)

    def _prune(self, current: int) -> None:
        """Keep the current version and ``keep - 1`` before it; a process still reading a removed one keeps it open."""
        installed = sorted(int(p.stem) for p in self.versions.glob("*.db") if p.stem.isdigit())
        for version in [v for v in installed if v < current][: max(len(installed) - self.keep, 0)]:
            os.unlink(self._target(version))
