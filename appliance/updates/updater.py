"""Keep the desk's library up to date from central, installing only what TUF has verified.

One check (``check_now``): refresh the signed metadata with python-tuf's
ngclient (the root shipped at provisioning is the trust anchor), choose the
newest target that fits the installed library (``trust.choose_update``),
make sure the desk holds the content key it is encrypted under (a key it has
not seen is unwrapped from the signed ``keys-<key id>.json`` target, which
central wraps for each trusted desk), download it through the resuming
fetcher, install it through the library store, confirm the result is exactly
what central signed, then swap it into the ``LibraryHolder`` in one step. Any failure leaves the installed library
in place and searchable; refusals are written to the audit log with a reason.

The same check then hands the refreshed, verified metadata to the optional
``ConfigUpdater`` (``appliance/updates/config.py``), which applies central's
signed desk configuration; library and configuration outcomes are independent.

A desk holds several libraries (issue #18). With a ``LibrarySetLike`` wired, the check first applies this
desk's signed authorisation manifest (``appliance/updates/authorisation.py``), then updates every library
the manifest lists (and has not expired), each lineage with its own store, keys and holder: targets are
told apart by the signed ``LibraryTargetInfo.library_id``. A library newly authorised is installed from its
newest full version; a library the manifest does not list is never fetched. The provisioned lineage is
``store``/``keys``/``holder``; the same install code runs for every lineage, bound to it in turn.

Checks run when central's retained MQTT announcement arrives
(``on_announcement``), from an optional polling thread, or on demand; a lock
makes them one at a time, as ngclient requires.
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater

from appliance.settings import UpdateSettings
from appliance.storage.library_folders import is_destroyed, repair_folder, swap_in_repaired
from appliance.storage.library_keys import LibraryKeyring, LibraryKeys
from appliance.updates.audit import ACTOR, AuditLike, RefusalRecord
from appliance.updates.authorisation import AuthorisationUpdater
from appliance.updates.config import ConfigUpdater
from appliance.updates.fetcher import ResumingFetcher
from appliance.updates.trust import (
    DeltaBaseRefusedError,
    InstalledLibrary,
    KeyRefusedError,
    Offer,
    RollbackRefusedError,
    UpdateError,
    UpdateRefusedError,
    UpdateUnavailableError,
    check_claims,
    choose_update,
    explain_tuf_error,
)
from core.desk_config import is_config
from core.errors import SettingsError, WireFormatError
from core.keywrap import KEYS_KIND, MAX_KEYS_DOCUMENT_BYTES, KeysDocument, UnwrapError, keys_target_name
from core.library_announce import DEFAULT_LIBRARY_ID, LibraryAnnouncement, LibraryTargetInfo
from core.library_authorisation import AuthorisationManifest, is_authorisation
from devicekeys.errors import KeyProtectionError
from devicekeys.tls import client_context
from library.compaction import start_compaction
from library.delta import read_delta_info
from library.errors import DeltaApplyError, DeltaBaseMismatchError, SnapshotError, VersionRollbackError
from library.snapshot import Snapshot
from library.store import LibraryStore, read_snapshot_claims, wants_new_base

logger = logging.getLogger(__name__)

MAX_STEPS = 8  # deltas chained in one check before giving the desk back


_LINEAGE = re.compile(r"^library-(?:(?P<id>[a-z0-9][a-z0-9._-]*?)-)?v\d+")


def _announced_lineage(target: str) -> str | None:
    """The library id an announced target name carries (``core.library_announce.target_name``), or None."""
    match = _LINEAGE.match(target)
    return None if match is None else (match.group("id") or DEFAULT_LIBRARY_ID)


_KEEPS_USING = re.compile(r"(?:This|The) desk keeps using library version \d+\.")


def _closed(message: str, library_id: str) -> str:
    """An update failure's words for a damaged library's re-fetch: nothing is served meanwhile."""
    closed = f"Library {library_id!r} stays closed until a sound copy arrives from central."
    replaced = _KEEPS_USING.sub(closed, message)
    return replaced if replaced != message else f"{message} {closed}"


def _is_keys(custom: object) -> bool:
    """Whether a target is a keys document (``core.keywrap``), not a library."""
    return isinstance(custom, dict) and custom.get("kind") == KEYS_KIND


class LibraryHolderLike(Protocol):
    """``appliance.services.library.LibraryHolder``: updates sit below services, so only its shape is used."""

    @property
    def current(self) -> Snapshot: ...

    def swap(self, new: Snapshot) -> Snapshot: ...


class LibrarySetLike(Protocol):
    """``appliance.services.library.LibrarySet``, by shape: the libraries held, one holder each."""

    def holder(self, library_id: str) -> LibraryHolderLike | None: ...

    def add(self, library_id: str, snapshot: Snapshot) -> object: ...

    def manifest(self) -> AuthorisationManifest | None: ...

    def now(self) -> datetime: ...

    def repairing(self) -> set[str]: ...

    def repaired(self, library_id: str, snapshot: Snapshot) -> Snapshot | None: ...


@dataclass(frozen=True)
class _NotHeld:
    """Stands for the installed snapshot of a library not yet held (messages say version 0)."""

    version: int = 0


@dataclass(frozen=True)
class UpdateResult:
    """What one check did; ``installed_version`` is what the desk searches afterwards."""

    outcome: str  # "installed", "up_to_date", "refused" or "unavailable"
    installed_version: int
    message: str
    previous_version: int | None = None
    target: str | None = None
    reason: str | None = None


class LibraryUpdater:
    """Fetches, verifies and installs library updates for one desk."""

    def __init__(self, *, metadata_url: str, targets_url: str, state_dir: Path, store: LibraryStore,
                 keys: LibraryKeys, embedder_id: str, holder: LibraryHolderLike, audit: AuditLike,
                 trusted_root: bytes, central_key: Ed25519PublicKey, fetcher: ResumingFetcher | None = None,
                 config: ConfigUpdater | None = None, authorisation: AuthorisationUpdater | None = None,
                 libraries: LibrarySetLike | None = None, keyring: LibraryKeyring | None = None,
                 store_for: Callable[[str], LibraryStore] | None = None) -> None:
        """``central_key`` is central's fleet-command public key: announcements must carry its signature.

        ``authorisation``, ``libraries``, ``keyring`` and ``store_for`` (a library id's store) make it update
        every library the applied manifest lists; without them only the provisioned lineage is updated.
        """
        self.metadata_url = metadata_url
        self._central_key = central_key
        self.targets_url = targets_url
        self.metadata_dir = Path(state_dir) / "metadata"
        self.download_dir = Path(state_dir) / "downloads"
        self._store = store
        self._keys = keys
        self._embedder_id = embedder_id
        self._holder = holder
        self._audit = audit
        self._trusted_root = trusted_root
        self.fetcher = fetcher or ResumingFetcher()
        self.config = config
        self.authorisation = authorisation
        self._libraries = libraries
        self._keyring = keyring
        self._store_for = store_for
        self._primary = (keys.library_id, store, keys, holder)
        self._lineage_id = keys.library_id
        self._lock = threading.Lock()
        self._retired_by: dict[str, list[Snapshot]] = {}
        #: The background compaction last started (``library.compaction``), if any; one lineage at a time.
        self.compaction: subprocess.Popen[bytes] | None = None
        self._compactions: dict[str, int] = {}  # finished compactions by outcome (completed, failed, stopped)
        self._compaction_lock = threading.Lock()
        self._refusals = RefusalRecord(audit, "library_update_refused", "library update")
        self._lineage_refusals: dict[str, RefusalRecord] = {keys.library_id: self._refusals}
        #: The last result for each other library updated in a check (the provisioned one is the return value).
        self.lineage_results: dict[str, UpdateResult] = {}
        #: Told every check's result (the desk's metrics count update outcomes); never raises into a check.
        self.on_result: Callable[[UpdateResult], None] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: UpdateSettings, *, data_dir: Path, store: LibraryStore, keys: LibraryKeys,
                      embedder_id: str, holder: LibraryHolderLike, audit: AuditLike, central_key: Ed25519PublicKey,
                      config: ConfigUpdater | None = None, authorisation: AuthorisationUpdater | None = None,
                      libraries: LibrarySetLike | None = None, keyring: LibraryKeyring | None = None,
                      store_for: Callable[[str], LibraryStore] | None = None) -> LibraryUpdater:
        """The updater as the appliance runs it: state under ``data_dir/updates``, HTTPS with central's CA."""
        try:
            trusted_root = Path(settings.trusted_root).read_bytes()
        except OSError as e:
            raise SettingsError(f"updates.trusted_root: cannot read {settings.trusted_root} ({e}).") from e
        # Central serves /tuf only to enrolled desks: the fetcher shows the desk's fleet certificate (its key
        # unsealed into memory when it is sealed to the TPM, as for the broker).
        try:
            context = (client_context(settings.ca_file, settings.cert_file, settings.key_file)
                       if settings.cert_file is not None and settings.key_file is not None
                       else ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None))
        except (KeyProtectionError, OSError, ssl.SSLError) as e:
            raise SettingsError(f"updates: the TLS files do not load: {e}") from e
        fetcher = ResumingFetcher(timeout_s=settings.timeout_s, max_resumes=settings.max_resumes,
                                  max_bytes=settings.max_download_mb * 1024 * 1024, ssl_context=context)
        base = settings.central_url.rstrip("/")
        return cls(metadata_url=f"{base}/tuf/metadata/", targets_url=f"{base}/tuf/targets/",
                   state_dir=Path(data_dir) / "updates", store=store, keys=keys,
                   embedder_id=embedder_id, holder=holder, audit=audit, trusted_root=trusted_root,
                   central_key=central_key, fetcher=fetcher, config=config, authorisation=authorisation,
                   libraries=libraries, keyring=keyring, store_for=store_for)

    # --- entry points --------------------------------------------------------------------------

    def check_now(self) -> UpdateResult:
        """Run one check; never raises for update problems (they are in the result and the audit log).

        The configuration, if wired, is checked after the library whatever the library's outcome, on the
        same verified metadata; its outcome is ``self.config.last_result`` and its own audit events.
        """
        with self._lock:
            start = self._installed_version()
            updater: Updater | None = None
            try:
                updater = self._refresh()
                if self.authorisation is not None:
                    self.authorisation.check(updater, self._listed())
                result = (self._check(updater) if self._lineage_id in self._lineages() and self._primary_held()
                          and self._lineage_id not in self._repairing() else
                          UpdateResult("up_to_date", start, f"Library {self._lineage_id!r} is not authorised for "
                                       f"this desk or not held: it is not updated here.", start))
            except UpdateRefusedError as e:
                result = UpdateResult("refused", self._installed_version(), str(e), start, e.target, e.reason)
                self._refusals.record(result.reason, result.target, result.message,
                                      installed_version=result.installed_version)
                if updater is None and self.authorisation is not None:
                    self.authorisation.verification_failed(e)
            except UpdateError as e:
                result = UpdateResult("unavailable", self._installed_version(), str(e), start, None, e.reason)
                logger.warning("library update unavailable: %s", e)
            if updater is not None:
                self._check_others(updater)
            if self.config is not None and updater is not None:
                self.config.check(updater, self._listed())
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:
                    logger.exception("the update result observer failed")
            return result

    def on_announcement(self, payload: bytes) -> UpdateResult | None:
        """Handler for central's retained MQTT announcement: verify central's signature and validate it, then
        check (never trust it: only TUF-verified targets are installed; the signature stops a forged
        announcement from triggering anything).

        With the background thread running this only wakes it and returns ``None`` at once,
        so it is safe to call from the MQTT client's network thread; without it, it checks
        synchronously and returns the result.
        """
        try:
            announcement = LibraryAnnouncement.from_signed(payload, self._central_key)
        except WireFormatError as e:
            logger.warning("ignored a library announcement: %s", e)
            return None
        if announcement.kind == "config":
            if self.config is None or announcement.library_version <= self.config.applied_version():
                logger.info("announcement of configuration v%d: nothing to do", announcement.library_version)
                return None
        elif (_announced_lineage(announcement.target) == self._primary[0]
              and announcement.library_version <= self._primary[3].current.version):
            logger.info("announcement of library v%d: already at v%d", announcement.library_version,
                        self._primary[3].current.version)
            return None
        if self._thread is not None:
            self._wake.set()
            return None
        return self.check_now()

    def start_polling(self, interval_s: float) -> None:
        """Check in a daemon thread every ``interval_s`` seconds (0: only when woken by an announcement)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while True:
                self._wake.wait(interval_s or None)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    self.check_now()
                except Exception:
                    logger.exception("library update check failed unexpectedly")

        self._thread = threading.Thread(target=loop, name="library-updates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self._compaction_lock:
            stopping = self.compaction is not None and self.compaction.poll() is None
        if stopping and self.compaction is not None:
            # Safe at any stage (the previous pointer stays); it starts again after the next delta past the threshold.
            self.compaction.terminate()
            self.compaction.wait(timeout=30)

    # --- one check -----------------------------------------------------------------------------

    def _tuf_updater(self) -> Updater:
        """A fresh ngclient Updater: the shipped root on first use, the cached (possibly rotated) root after."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = None if (self.metadata_dir / "root.json").exists() else self._trusted_root
        return Updater(str(self.metadata_dir), self.metadata_url, str(self.download_dir), self.targets_url,
                       self.fetcher, bootstrap=bootstrap)

    def _installed_version(self) -> int:
        """The provisioned library's version (0 once it is no longer held: retired and destroyed)."""
        return self._primary[3].current.version if self._primary_held() else 0

    def _refresh(self) -> Updater:
        """A refreshed ngclient: signed metadata verified from the trusted root down to targets."""
        start = self._installed_version()
        try:
            updater = self._tuf_updater()
            updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise explain_tuf_error(e, start) from e
        except OSError as e:
            raise UpdateError(f"The desk could not store update metadata ({e}). It keeps using library "
                              f"version {start}. Call the RFR helpdesk.") from e
        return updater

    def _check(self, updater: Updater) -> UpdateResult:
        start = self._holder.current.version
        offers = [o for o in self._offers(updater) if o.info.library_id == self._lineage_id]
        installed_names: list[str] = []
        for _ in range(MAX_STEPS):
            current = self._holder.current
            installed = InstalledLibrary(current.version, current.digest, current.embedder_id,
                                         self._store.current_key_id() or self._keys.provisioned)
            rebase = wants_new_base(current)
            offer = choose_update(installed, offers, prefer_full=rebase)
            if offer is None:
                break
            if rebase and offer.info.kind == "full":
                logger.info("library %s: taking the full version %d rather than a delta, so that a new base "
                            "replaces the segments this desk cannot compact", self._lineage_id, offer.version)
            self._install(updater, offer, current)
            installed_names.append(offer.name)
        now = self._holder.current.version
        if not installed_names:
            return UpdateResult("up_to_date", now, f"Library version {now} is the newest published.", start)
        return UpdateResult("installed", now, f"Library version {now} installed (was {start}).", start,
                            installed_names[-1])

    # --- several libraries -------------------------------------------------------------------

    def _lineages(self) -> list[str]:
        """The libraries to update: every one the applied manifest lists and that has not expired; without a
        manifest (or without a library set wired), the provisioned one as before."""
        manifest = self._libraries.manifest() if self._libraries is not None else None
        if manifest is None or self._libraries is None:
            return [self._primary[0]]
        now = self._libraries.now()
        return [lib.library_id for lib in manifest.libraries if not lib.has_expired(now)]

    def _repairing(self) -> set[str]:
        return self._libraries.repairing() if self._libraries is not None else set()

    def _primary_held(self) -> bool:
        return self._libraries is None or self._libraries.holder(self._primary[0]) is not None

    def _check_others(self, updater: Updater) -> None:
        """Update each listed library other than the provisioned one, each bound in turn; one library's
        failure never stops the others (its refusal is audited under its own target)."""
        if self._libraries is None or self._keyring is None or self._store_for is None:
            return
        for library_id in self._lineages():
            if (library_id == self._primary[0] and self._primary_held()) or library_id in self._repairing():
                continue  # the provisioned one is done; a damaged copy is never a delta's base (``refetch``)
            holder = self._libraries.holder(library_id)
            start = holder.current.version if holder is not None else 0
            refusals = self._lineage_refusals.setdefault(
                library_id, RefusalRecord(self._audit, "library_update_refused", f"library {library_id} update"))
            saved = (self._lineage_id, self._store, self._keys, self._holder, self._refusals)
            try:
                self._lineage_id, self._refusals = library_id, refusals
                self._store, self._keys = self._store_for(library_id), self._keyring.for_library(library_id)
                if holder is None:
                    result = self._install_first(updater, library_id)
                else:
                    self._holder = holder
                    result = self._check(updater)
            except UpdateRefusedError as e:
                result = UpdateResult("refused", start, str(e), start, e.target, e.reason)
                refusals.record(result.reason, result.target, result.message, installed_version=start,
                                library_id=library_id)
            except UpdateError as e:
                result = UpdateResult("unavailable", start, str(e), start, None, e.reason)
                logger.warning("library %s update unavailable: %s", library_id, e)
            except Exception as e:  # never let one library stop the others or the configuration
                logger.exception("library %s update failed unexpectedly", library_id)
                result = UpdateResult("unavailable", start, str(e), start, None, "update_failed")
            finally:
                self._lineage_id, self._store, self._keys, self._holder, self._refusals = saved
            self.lineage_results[library_id] = result

    def _install_first(self, updater: Updater, library_id: str) -> UpdateResult:
        """A library newly authorised for this desk: install its newest full version into its own store."""
        offers = [o for o in self._offers(updater) if o.info.library_id == library_id and o.info.kind == "full"
                  and o.info.embedder_id == self._embedder_id]
        if not offers:
            return UpdateResult("up_to_date", 0, f"No version of library {library_id!r} for this desk's face model "
                                f"is published yet.", 0)
        offer = max(offers, key=lambda o: o.version)
        nothing = _NotHeld()
        target = updater.get_targetinfo(offer.name)
        if target is None:  # pragma: no cover - listed a moment ago from the same trusted metadata
            raise UpdateUnavailableError(f"{offer.name} is no longer offered.")
        path = self.download_dir / offer.name
        try:
            key = self._content_key(updater, offer, nothing)  # type: ignore[arg-type]
            try:
                updater.download_target(target, filepath=str(path))
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise explain_tuf_error(e, 0) from e
            new = self._install_verified(path, offer, nothing, key)  # type: ignore[arg-type]
            assert self._libraries is not None
            self._libraries.add(library_id, new)
        except UpdateError as e:
            e.target = offer.name
            raise
        except OSError as e:
            raise UpdateError(f"The desk could not store {offer.name} ({e}). Call the RFR helpdesk if this "
                              f"persists.") from e
        finally:
            path.unlink(missing_ok=True)
        self._refusals.clear()
        logger.info("library %s v%d installed from %s (first version held)", library_id, new.version, offer.name)
        self._audit.record("library_update", ACTOR, "ok", library_version=new.version, previous_version=None,
                           kind=offer.info.kind, target=offer.name, digest=offer.info.result_digest,
                           library_id=library_id)
        return UpdateResult("installed", new.version, f"Library {library_id!r} version {new.version} installed.",
                            None, offer.name)

    # --- a damaged copy replaced ----------------------------------------------------------------

    def refetch(self, library_id: str) -> UpdateResult:
        """Replace the damaged copy of ``library_id`` with central's newest full version (never older than the
        damaged one), through the same TUF verification as any update; never raises for update problems.

        The local files cannot be trusted, so no delta is used: the full version is installed into a store of
        its own (``library_folders.repair_folder``), verified against central's signed digest, then swapped in
        place of the damaged folder, which is shredded. Until it succeeds the library stays refused.
        """
        if self._libraries is None or self._keyring is None or self._store_for is None:
            return UpdateResult("unavailable", 0, "This desk cannot fetch libraries (no library set).", 0,
                                reason="not_wired")
        holder = self._libraries.holder(library_id)
        held = holder.current.version if holder is not None else 0
        refusals = self._lineage_refusals.setdefault(
            library_id, RefusalRecord(self._audit, "library_update_refused", f"library {library_id} update"))
        with self._lock:
            try:
                updater = self._refresh()
                return self._refetch(updater, library_id, held)
            except UpdateRefusedError as e:
                result = UpdateResult("refused", held, _closed(str(e), library_id), held, e.target, e.reason)
                refusals.record(result.reason, result.target, result.message, installed_version=held,
                                library_id=library_id)
                return result
            except UpdateError as e:
                logger.warning("library %s re-fetch unavailable: %s", library_id, e)
                return UpdateResult("unavailable", held, _closed(str(e), library_id), held, e.target, e.reason)

    def _refetch(self, updater: Updater, library_id: str, held: int) -> UpdateResult:
        assert self._keyring is not None and self._store_for is not None and self._libraries is not None
        offers = [o for o in self._offers(updater) if o.info.library_id == library_id and o.info.kind == "full"
                  and o.info.embedder_id == self._embedder_id and o.version >= held]
        if not offers:
            raise UpdateUnavailableError(f"Central offers no full copy of library {library_id!r} at version {held} "
                                         f"or later yet. The desk asks again later.")
        offer = max(offers, key=lambda o: o.version)
        target = updater.get_targetinfo(offer.name)
        if target is None:  # pragma: no cover - listed a moment ago from the same trusted metadata
            raise UpdateUnavailableError(f"{offer.name} is no longer offered.")
        store = self._store_for(library_id)
        keys = self._primary[2] if library_id == self._primary[0] else self._keyring.for_library(library_id)
        saved = self._keys
        path = self.download_dir / offer.name
        fresh = repair_folder(store.root.parent, library_id)
        try:
            self._keys = keys
            key = self._content_key(updater, offer, _NotHeld(held))  # type: ignore[arg-type]
            try:
                updater.download_target(target, filepath=str(path))
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise explain_tuf_error(e, held) from e
            incoming = read_snapshot_claims(path, key)
            check_claims(offer, incoming.version, incoming.digest, incoming.embedder_id, held)
            if fresh.exists():
                shutil.rmtree(fresh)
            LibraryStore(fresh).install_full(path, key, expected_embedder=self._embedder_id,
                                             expected_digest=offer.info.result_digest, key_id=offer.info.key_id)
            if is_destroyed(store.root.parent, library_id):  # expired or withdrawn while this copy came
                raise UpdateRefusedError(f"Library {library_id!r} was destroyed on this desk meanwhile; the "
                                         f"fresh copy is not installed.")
            swap_in_repaired(store.root.parent, library_id)
            new = self._store_for(library_id).open_current(key, self._embedder_id)
        except UpdateError as e:
            e.target = offer.name
            raise
        except SnapshotError as e:
            raise UpdateRefusedError(f"{offer.name} could not be installed: {e} Library {library_id!r} stays "
                                     f"closed until a sound copy arrives.") from e
        except OSError as e:
            raise UpdateError(f"The desk could not store {offer.name} ({e}). Library {library_id!r} stays closed; "
                              f"call the RFR helpdesk if this persists.") from e
        finally:
            self._keys = saved
            path.unlink(missing_ok=True)
            if fresh.exists():
                shutil.rmtree(fresh, ignore_errors=True)
        old = self._libraries.repaired(library_id, new)
        if old is not None:
            old.close()
        logger.info("library %s v%d re-fetched from %s in place of a damaged copy", library_id, new.version,
                    offer.name)
        self._audit.record("library_update", ACTOR, "ok", library_version=new.version, previous_version=held,
                           kind="repair", target=offer.name, digest=offer.info.result_digest, library_id=library_id)
        return UpdateResult("installed", new.version, f"Library {library_id!r} version {new.version} re-fetched "
                            f"from central in place of the damaged copy.", held, offer.name)

    def _offers(self, updater: Updater) -> list[Offer]:
        """Every target in the verified targets metadata that describes itself as a library."""
        offers = []
        for name in self._listed():
            try:
                target = updater.get_targetinfo(name)
                if (target is None or is_config(target.custom) or _is_keys(target.custom)
                        or is_authorisation(target.custom)):
                    continue  # configurations, manifests: their own updaters; keys: fetched when a library needs them
                info = LibraryTargetInfo.from_dict(target.custom)
                if info.name != name:
                    raise WireFormatError(f"describes itself as {info.name}")
            except WireFormatError as e:
                logger.warning("ignored target %s: %s", name, e)
                continue
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise explain_tuf_error(e, self._installed_version()) from e
            offers.append(Offer(name, target.length, info))
        return offers

    def _listed(self) -> list[str]:
        """Names of the targets in the metadata refresh() just verified.

        ngclient lists no targets; targets.json on disk is the copy refresh() verified and stored, and
        each entry is looked up again through the trusted metadata before use.
        """
        listing = Metadata[Targets].from_bytes((self.metadata_dir / "targets.json").read_bytes())
        return sorted(listing.signed.targets)

    def _install(self, updater: Updater, offer: Offer, current: Snapshot) -> None:
        """Download, verify, install and swap one target; on any failure the current library stays."""
        target = updater.get_targetinfo(offer.name)
        if target is None:  # pragma: no cover - listed a moment ago from the same trusted metadata
            raise UpdateUnavailableError(f"{offer.name} is no longer offered.")
        path = self.download_dir / offer.name
        try:
            key = self._content_key(updater, offer, current)
            try:
                updater.download_target(target, filepath=str(path))
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise explain_tuf_error(e, current.version) from e
            new = self._install_verified(path, offer, current, key)
            try:
                old = self._holder.swap(new)
            except SnapshotError as e:  # the holder refused (not newer, other face model): keep what is searched
                new.close()
                raise UpdateRefusedError(f"{e} The desk keeps using library version {current.version}.") from e
        except UpdateError as e:
            e.target = offer.name
            raise
        except OSError as e:  # disk full, permissions: not central's fault, so not a refusal
            raise UpdateError(f"The desk could not store {offer.name} ({e}). It keeps using library version "
                              f"{current.version}. Call the RFR helpdesk if this persists.") from e
        finally:
            path.unlink(missing_ok=True)
        self._retire(old)
        self._refusals.clear()
        logger.info("library v%d installed from %s", new.version, offer.name)
        self._audit.record("library_update", ACTOR, "ok", library_version=new.version,
                           previous_version=old.version, kind=offer.info.kind, target=offer.name,
                           digest=offer.info.result_digest, library_id=self._lineage_id)

    def _content_key(self, updater: Updater, offer: Offer, current: Snapshot) -> bytes:
        """The key ``offer`` is encrypted under: held already, or unwrapped from central's signed keys target.

        A desk central no longer trusts (revoked before this key was made) finds no entry for itself
        and is refused: the new version stays closed to it.
        """
        kid = offer.info.key_id
        key = self._keys.key(kid)
        if key is not None:
            return key
        keeps = f"The desk keeps using library version {current.version}."
        name = keys_target_name(kid)
        try:
            target = updater.get_targetinfo(name)
            if target is None:
                raise KeyRefusedError(f"{offer.name} is encrypted under library key {kid[:12]}, which central has "
                                      f"not published ({name} is missing). {keeps} Tell the RFR team.")
            if target.length > MAX_KEYS_DOCUMENT_BYTES:
                raise KeyRefusedError(f"{name} is {target.length} bytes, over the limit for a keys document. {keeps}")
            downloaded = Path(updater.download_target(target))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise explain_tuf_error(e, current.version) from e
        try:
            document = KeysDocument.from_bytes(downloaded.read_bytes())
            if document.key_id != kid or document.library_id != self._keys.library_id:
                raise UnwrapError(f"{name} holds key {document.key_id[:12]} of library {document.library_id!r}, not "
                                  f"key {kid[:12]} of {self._keys.library_id!r}.")
            self._keys.add_wrapped(document.for_desk(self._keys.device_id))
        except (WireFormatError, UnwrapError) as e:
            raise KeyRefusedError(f"{offer.name} cannot be opened on this desk: {e} {keeps} "
                                  f"Tell the RFR team if this desk should still receive libraries.") from e
        finally:
            downloaded.unlink(missing_ok=True)
        logger.info("library key %s unwrapped from %s", kid[:12], name)
        return self._keys.require(kid)

    def _install_verified(self, path: Path, offer: Offer, current: Snapshot, key: bytes) -> Snapshot:
        """Check the verified file's own claims, install it through the store, open the result.

        Everything that could refuse the file happens before the store moves its
        ``current`` pointer: the claims here, the base and content digest in the store.
        Each file is opened and authenticated once: the claims come from the file's meta table, a delta
        becomes a segment whose freshly built index is served as it is, and the base and older segments
        are shared with the version being served (``library.version``).
        """
        info = offer.info
        try:
            if info.kind == "delta":
                delta = read_delta_info(path, key)
                check_claims(offer, delta.result_version, delta.result_digest, delta.embedder_id, current.version)
                self._store.install_delta(path, key, expected_embedder=self._embedder_id,
                                          expected_digest=info.result_digest)
                self._maybe_compact(key)
            else:
                incoming = read_snapshot_claims(path, key)  # meta only: the store loads the index once, to verify
                check_claims(offer, incoming.version, incoming.digest, incoming.embedder_id, current.version)
                self._store.install_full(path, key, expected_embedder=self._embedder_id,
                                         expected_digest=info.result_digest, key_id=info.key_id)
            # The parts the desk already serves and what the store just verified are shared, not loaded again.
            return self._store.open_current(key, self._embedder_id, reuse=current)
        except DeltaApplyError as e:  # the desk's own apply process failed, not central's file: try again later
            raise UpdateError(f"{offer.name} could not be installed now: {e} The desk tries again at the next "
                              f"check.") from e
        except DeltaBaseMismatchError as e:
            raise DeltaBaseRefusedError(f"{e} The desk keeps using library version {current.version}.") from e
        except VersionRollbackError as e:
            raise RollbackRefusedError(f"{e} The desk keeps using library version {current.version}.") from e
        except SnapshotError as e:
            raise UpdateRefusedError(f"{offer.name} could not be installed: {e} The desk keeps using library "
                                     f"version {current.version}.") from e

    def _maybe_compact(self, key: bytes) -> None:
        """Past the store's segment threshold, fold the segments into a new base (or, when the base would not fit
        twice in memory, merge them into one) in a background process at the lowest CPU priority
        (``library.compaction``); the desk picks the result up at its next update or start."""
        if self.compaction_status()[0]:
            return  # one at a time
        plan = self._store.compaction_plan(key)
        if plan is not None:
            with self._compaction_lock:
                self.compaction = start_compaction(self._store.root, key, plan)
            logger.info("library compaction (%s) started in the background (pid %d)", plan, self.compaction.pid)

    def compaction_status(self) -> tuple[bool, dict[str, int]]:
        """Whether a background compaction is running, and how the finished ones ended (``completed``,
        ``failed``: it exited with an error, the previous version kept serving; ``stopped``: killed, e.g. at
        shutdown): for the desk's metrics and health. A finished process is reaped here."""
        with self._compaction_lock:
            proc = self.compaction
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                outcome = "completed" if code == 0 else "stopped" if code < 0 else "failed"
                self._compactions[outcome] = self._compactions.get(outcome, 0) + 1
                (logger.info if code == 0 else logger.warning)("library compaction %s (exit %d)", outcome, code)
                self.compaction = proc = None
            return proc is not None, dict(self._compactions)

    def _retire(self, old: Snapshot) -> None:
        """Close the snapshot replaced one update ago (of the same library): searches that held it have long
        finished."""
        for snapshot in self._retired_by.get(self._lineage_id, []):
            snapshot.close()
        self._retired_by[self._lineage_id] = [old]
