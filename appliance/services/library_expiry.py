"""Temporary libraries expire by themselves, and retired ones go: the desk destroys its copy and proves it.

A Temporary Image Reference Library is authorised for one investigation until ``expires_at``; central may
also retire any library (``retired`` in the desk's authorisation manifest). The sweep here runs when the
desk starts, every hour, and after each manifest is applied, on the desk's own clock (injectable, as the
retention purge's is): a desk offline at the moment of expiry destroys its copy all the same, because the
manifest it holds says when.

Destroying a library (``destroy``):

1. a pending row is written first (``AuthorisationStore.begin_destruction``), so a crash or power cut
   mid-way is finished at the next start;
2. the library leaves the set (no search can start on it) and its snapshot is closed;
3. its files are overwritten with zeros, fsynced and removed: every version in its store, its index and
   thumbnails (they live in the snapshot file), partial downloads of its targets, its wrapped keys (and for
   the provisioned library the shipped file and wrapped key settings name); its keys leave memory;
4. the proof, as for a probe (decrypted pages and WAL scanned): before destroying, markers are taken from
   the library (its content keys, slices of thumbnails and templates, slices of its ciphertext pages); after,
   every SQLCipher file the desk still holds (the device database and its WAL, every other library) is
   decrypted page by page, and every other file under the data folder read as stored, and searched for
   them. The proof (files and bytes overwritten, keys destroyed, pages scanned, markers found: 0) is the
   ``library_destroyed`` audit event's ``proof``; outcome ``destroyed``, or ``incomplete`` if anything was
   found or left.

The event carries no biometric data: names, counts and key ids only.

While the desk's clock is in doubt (``ClockGuard.doubt``) an expiry is *held*, not carried out: a clock set
forwards would destroy a library before its time, and nothing brings it back. A retirement is central's word,
not the clock's, so it goes on. The hold is audited once (``library_destroyed``, outcome ``held``), and the
library is refused for searches meanwhile (``LibrarySet``). When the clock is trusted, the sweep runs within a
minute of the earliest expiry: the wait to the next sweep is the time to the earliest expiry, never more than
an hour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.services.audit import AuditLog
from appliance.services.library import LibrarySet
from appliance.services.periodic import Periodic
from appliance.storage.authorisation import AuthorisationStore
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.library_folders import ShreddedFile, held_ids, mark_destroyed, shred, shred_file
from appliance.storage.library_keys import LibraryKeyring
from appliance.storage.page_scan import PAGE, RESERVE, ScanReport, scan_database, scan_plain
from library.snapshot import Snapshot
from library.store import LibraryStore

logger = logging.getLogger(__name__)

ACTOR = "system"
SWEEP_INTERVAL_S = 3600.0
#: A sweep never runs sooner than this after the previous one (a library just past expiry still waiting).
MIN_WAIT_S = 1.0
#: How often a held expiry is looked at again (is the clock trusted yet?).
HELD_RECHECK_S = 60.0
_SAMPLE_RECORDS = 8
_SLICE = 32


@dataclass(frozen=True)
class Destroyed:
    library_id: str
    kind: str
    version: int | None
    reason: str  # "expired" | "retired"
    proof: dict[str, Any]

    @property
    def proven(self) -> bool:
        return self.proof.get("scan", {}).get("found") == 0 and not self.proof.get("left_on_disk")


def _markers(snapshot: Snapshot | None, keys: Iterable[bytes]) -> list[bytes]:
    """Byte strings that exist only in this library: its keys, and slices of its content and ciphertext."""
    markers = [k for k in keys if k]
    if snapshot is None:
        return markers
    try:
        for n, record in enumerate(snapshot.records()):
            if n >= _SAMPLE_RECORDS or record.record_id is None:
                break
            thumb = snapshot.thumbnail(record.record_id)
            if len(thumb) >= 3 * _SLICE:
                markers.append(thumb[len(thumb) // 2:len(thumb) // 2 + _SLICE])
            markers.append(np.asarray(snapshot.template(record.record_id), dtype="<f4").tobytes()[:_SLICE])
        data = Path(snapshot.path).read_bytes()
        pages = len(data) // PAGE
        for page in sorted({1, pages // 2, pages - 1} - {0}) if pages > 1 else []:
            start = page * PAGE + 100
            if start + 2 * _SLICE < (page + 1) * PAGE - RESERVE:
                markers.append(data[start:start + 2 * _SLICE])
    except Exception:  # a damaged file still has to go; its keys are markers enough
        logger.exception("could not read markers from %s", snapshot.path)
    return markers


class LibraryExpiry:
    """Finds libraries past their expiry or retired, and destroys them with a proof of deletion."""

    def __init__(self, libraries: LibrarySet, authorisation: AuthorisationStore, keyring: LibraryKeyring,
                 store_root: Path, db: DeviceDatabase, audit: AuditLog, *, data_dir: Path,
                 store_for: Callable[[str], LibraryStore], download_dir: Path,
                 provisioned_files: Iterable[Path] = (),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock_doubt: Callable[[], str | None] = lambda: None) -> None:
        """``clock_doubt`` (``ClockGuard.doubt``): while it names a reason, expiries are held (see the module)."""
        self._libraries = libraries
        self._authorisation = authorisation
        self._keyring = keyring
        self._root = Path(store_root)
        self._db = db
        self._audit = audit
        self._data_dir = Path(data_dir)
        self._store_for = store_for
        self._downloads = Path(download_dir)
        self._provisioned_files = [Path(p) for p in provisioned_files]
        self._clock = clock
        self._clock_doubt = clock_doubt
        self._held: set[str] = set()  # expiries held on a doubtful clock, audited once each
        self._lock = threading.Lock()
        self._periodic = Periodic("library-expiry", self.sweep, next_in=self.next_sweep_in)

    def next_sweep_in(self, now: datetime | None = None) -> float:
        """Seconds until the next sweep: to the earliest expiry still ahead of a held library, at most an hour;
        a minute while an expiry is held on a doubtful clock, so it follows soon after the clock is trusted."""
        now = now or self._clock()
        manifest = self._authorisation.manifest()
        held = {library_id for library_id, _ in self._libraries.held()}
        wait = HELD_RECHECK_S if self._held else SWEEP_INTERVAL_S
        for entry in manifest.libraries if manifest is not None else []:
            if entry.library_id in held and entry.expires_at is not None and entry.expires_at > now:
                wait = min(wait, (entry.expires_at - now).total_seconds())
        return max(wait, MIN_WAIT_S)

    def reschedule(self) -> None:
        """A new manifest (a new or changed expiry): work out the wait to the next sweep again."""
        self._periodic.reschedule()

    def due(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """(library_id, reason) of every library on this desk that must be destroyed now."""
        now = now or self._clock()
        manifest = self._authorisation.manifest()
        if manifest is None:
            return []
        on_desk = {library_id for library_id, _ in self._libraries.held()} | {
            library_id for library_id in held_ids(self._root) if self._has_content(self._root / library_id)}
        retired = set(manifest.retired)
        due = []
        for library_id in sorted(on_desk):
            entry = manifest.library(library_id)
            if library_id in retired:
                due.append((library_id, "retired"))
            elif entry is not None and entry.has_expired(now):
                due.append((library_id, "expired"))
        return due

    @staticmethod
    def _has_content(folder: Path) -> bool:
        """A store folder holding a version or a pointer (an empty one is only what opening a store makes)."""
        return (folder / "current").exists() or any((folder / "versions").glob("*"))

    def sweep(self, now: datetime | None = None) -> list[Destroyed]:
        """Destroy every library due (and finish any destruction a crash interrupted)."""
        with self._lock:
            done = []
            pending = {p[0]: p for p in self._authorisation.pending_destructions()}
            doubt = self._clock_doubt() if now is None else None
            held = set()
            for library_id, reason in self.due(now):
                if reason == "expired" and doubt is not None and library_id not in pending:
                    held.add(library_id)
                    continue
                pending.pop(library_id, None)
                done.append(self._destroy(library_id, reason))
            for library_id in sorted(held - self._held):
                logger.warning("library %s looks expired, but the desk's clock is doubtful (%s): its destruction "
                               "is held until the clock is trusted", library_id, doubt)
                self._audit.record("library_destroyed", ACTOR, "held", library_id=library_id, reason="expired",
                                   held_because="clock_doubtful", clock=doubt)
            self._held = held
            for library_id, _kind, _version, reason in pending.values():
                done.append(self._destroy(library_id, reason))
            return done

    def _destroy(self, library_id: str, reason: str) -> Destroyed:
        entry = self._authorisation.last_entry(library_id)
        kind = entry.kind if entry is not None else "unknown"
        snapshot = self._libraries.snapshot(library_id)
        keys = self._keyring.for_library(library_id)
        store = self._root / library_id
        opened: Snapshot | None = None
        if snapshot is None and (store / "current").exists():  # on disk, not held (a crash after install)
            try:
                opened = snapshot = self._store_for(library_id).open_current(keys.for_current(
                    self._store_for(library_id)))
            except Exception:
                logger.warning("library %s does not open; destroying its files without content markers", library_id)
        version = snapshot.version if snapshot is not None else None
        markers = _markers(snapshot, (keys.require(k) for k in keys.known()))
        now = self._clock()
        self._authorisation.begin_destruction(library_id, kind, version, reason, now.timestamp())
        mark_destroyed(self._root, library_id, reason)
        # No search starts on it from here; the few in flight hold their own reference and finish first.
        removed = self._libraries.remove(library_id)
        for s in {id(x): x for x in (removed, opened) if x is not None}.values():
            s.close()
        files: list[ShreddedFile] = shred(store, self._data_dir)
        for download in sorted(self._downloads.glob(f"*library-{library_id}-*")) if self._downloads.is_dir() else []:
            files += filter(None, [shred_file(download, self._data_dir)])
        for wrapped in self._keyring.wrapped_files(library_id):
            files += filter(None, [shred_file(wrapped, self._data_dir)])
        if library_id == self._keyring.provisioned.library_id:
            files += filter(None, (shred_file(p, self._data_dir) for p in self._provisioned_files))
        elif self._keyring.folder_of(library_id).is_dir():
            files += shred(self._keyring.folder_of(library_id), self._data_dir)
        key_ids = self._keyring.forget(library_id)
        proof = self._prove(library_id, markers, files, key_ids)
        outcome = "destroyed" if proof["scan"]["found"] == 0 and not proof["left_on_disk"] else "incomplete"
        self._audit.record("library_destroyed", ACTOR, outcome, library_id=library_id, kind=kind, version=version,
                           reason=reason, proof=proof)
        self._authorisation.finish_destruction(library_id, proof, self._clock().timestamp())
        (logger.info if outcome == "destroyed" else logger.error)(
            "library %s (%s) destroyed: %s, %d files, markers found %d", library_id, reason, outcome, len(files),
            proof["scan"]["found"])
        return Destroyed(library_id, kind, version, reason, proof)

    def _prove(self, library_id: str, markers: list[bytes], files: list[ShreddedFile],
               key_ids: list[str]) -> dict[str, Any]:
        """Search everything the desk still holds for the library's markers, decrypting what is encrypted."""
        report = ScanReport()
        with self._db.lock:
            self._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            scan_database(report, self._db.path, self._db.page_key(), markers)
        skip = [self._db.path, Path(str(self._db.path) + "-wal"), Path(str(self._db.path) + "-shm")]
        for other, _version in self._libraries.held():
            snapshot = self._libraries.snapshot(other)
            key = self._keyring.for_library(other).key(self._store_for(other).current_key_id() or "") or (
                self._keyring.provisioned.key(self._keyring.provisioned.provisioned or "")
                if other == self._keyring.provisioned.library_id else None)
            if snapshot is not None and key is not None:
                scan_database(report, snapshot.path, key, markers)
        scan_plain(report, self._data_dir, markers, skip=skip)
        left = [str(p.relative_to(self._data_dir)) for p in [self._root / library_id,
                                                              self._keyring.folder_of(library_id)]
                if p.exists() and p != self._keyring.folder and self._data_dir in p.parents]
        left += [f.name for f in files if (self._data_dir / f.name).exists()]
        return {"files": [{"name": f.name, "bytes": f.bytes} for f in files], "files_overwritten": len(files),
                "bytes_overwritten": sum(f.bytes for f in files), "keys_destroyed": [k[:16] for k in key_ids],
                "markers": len(markers), "left_on_disk": left, "scan": report.as_dict()}

    # --- background --------------------------------------------------------------------------

    def start(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        """Sweep every ``interval_s`` seconds in a daemon thread (the run at start is the caller's)."""
        self._periodic.start(interval_s)

    def stop(self) -> None:
        self._periodic.stop()
