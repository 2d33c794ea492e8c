"""The desk's runtime, wired in one place: keys, device database, audit chain, library, services, MQTT link.

``open_desk`` builds everything a running desk holds and returns it as a ``Desk``; ``Desk.start``
starts its background work (the MQTT link, library update polling, the hourly retention purge) and
``Desk.close`` stops it. The web layer (``appliance.web.create_app``) only puts pages on a desk, and
``python -m appliance retention purge`` opens just the part it writes to (``open_records``), so every
process that touches the device builds it the same way.

This module sits at the top of the appliance beside ``web``: it imports the services, comms, storage
and updates layers to wire them, and nothing below it imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.comms.mqtt import CentralLink
from appliance.services.accounts import AccountService
from appliance.services.audit import AuditLog
from appliance.services.cases import CaseService
from appliance.services.clock_guard import ClockGuard, ClockNotedAudit
from appliance.services.fleet_commands import command_router
from appliance.services.health import HealthReporter
from appliance.services.integrity import LibraryIntegrity
from appliance.services.library import LibraryHolder, LibrarySet, PrimaryLibrary
from appliance.services.library_expiry import LibraryExpiry
from appliance.services.library_repair import LibraryRepair
from appliance.services.peer_review import (
    CentralPeerReviewChannel,
    LocalPeerReviewChannel,
    PeerReviewChannel,
    load_review_key,
)
from appliance.services.rekey import RekeyService
from appliance.services.resend import ResendService
from appliance.services.retention import RetentionService
from appliance.services.search_authority import SearchAuthority
from appliance.services.wipe import WITHDRAWN_MESSAGE, DeskWithdrawnError, WipeService, load_command_key
from appliance.settings import ApplianceSettings
from appliance.storage.accounts import AccountStore, SessionStore
from appliance.storage.authorisation import AuthorisationStore
from appliance.storage.cases import CaseStore
from appliance.storage.central_key import TrustedCentralKey
from appliance.storage.clock_readings import TrustedReadingStore
from appliance.storage.desk_config import DeskConfigStore
from appliance.storage.device_db import DeviceDatabase, desk_tpm
from appliance.storage.library_folders import finish_repairs, held_ids, is_destroyed, library_folder, migrate_legacy
from appliance.storage.library_keys import LibraryKeyring, open_library_keys
from appliance.storage.outbox import Outbox
from appliance.storage.peer_review_outbox import PeerReviewOutbox
from appliance.storage.peer_reviews import PeerReviewStore
from appliance.storage.service_lock import ServiceLock
from appliance.storage.signing_key import KEY_NAME as SIGNING_KEY_NAME
from appliance.storage.signing_key import load_or_create_signing_key
from appliance.updates.authorisation import AuthorisationUpdater
from appliance.updates.config import ConfigUpdater
from appliance.updates.updater import LibraryUpdater
from core.display_time import zone
from core.topics import fleet_command_topic, library_announce_topic, peer_review_outcome_topic
from devicekeys.keys import AUTH_FILE_NAME
from devicekeys.tpm import Tpm
from library.errors import SnapshotError
from library.store import LibraryStore
from models.pipeline import FacePipeline
from websession.manager import SessionManager

logger = logging.getLogger(__name__)


@dataclass
class DeviceRecords:
    """The encrypted device database and the audit chain in it: what every process that writes to the device opens."""

    db: DeviceDatabase
    outbox: Outbox
    audit: AuditLog


def open_records(settings: ApplianceSettings, tpm: Tpm | None = None) -> DeviceRecords:
    """The device database and its audit log, keys through ``devicekeys.keys``: sealed to the TPM when the
    ``[keys]`` protection allows one (docs/fleet.md), the same TPM for the database key and the signing key."""
    tpm = tpm if tpm is not None else desk_tpm(settings)
    db = DeviceDatabase(settings.data_dir, tpm)
    outbox = Outbox(db, load_or_create_signing_key(settings.data_dir, tpm))
    return DeviceRecords(db, outbox, AuditLog(settings.device_id, outbox))


@dataclass
class Desk:
    """Everything a running desk holds; the web layer and the tests reach the device through it."""

    settings: ApplianceSettings
    pipeline: FacePipeline
    library_store: LibraryStore
    library: PrimaryLibrary  # the provisioned lineage, for single-library callers
    libraries: LibrarySet  # every library held, and which may be searched (the authorisation manifest)
    authorisation: AuthorisationStore
    db: DeviceDatabase
    outbox: Outbox
    audit: AuditLog
    desk_config: DeskConfigStore
    updater: LibraryUpdater | None
    health: HealthReporter
    wipe: WipeService
    mqtt: CentralLink
    accounts: AccountService
    sessions: SessionManager
    cases: CaseService
    retention: RetentionService
    service_lock: ServiceLock
    expiry: LibraryExpiry  # temporary libraries past expiry and retired ones destroyed, with proof
    clock_guard: ClockGuard | None = None
    library_integrity: LibraryIntegrity | None = None
    library_repair: LibraryRepair | None = None  # a damaged library refused and re-fetched from central
    central_key: TrustedCentralKey | None = None  # central's fleet-command key as trusted now (after any rekey)
    rekey: RekeyService | None = None

    def start(self) -> None:
        """Start the background work: the MQTT link, library update polling and the hourly retention purge."""
        self.mqtt.start()
        if self.updater is not None and self.settings.updates is not None:
            self.updater.start_polling(self.settings.updates.poll_interval_s)
        self.retention.start()
        self.expiry.start()
        if self.library_integrity is not None:
            self.library_integrity.start()

    def close(self) -> None:
        """Stop the background work, then close the library and the device database and release the lock."""
        self.mqtt.stop()
        if self.updater is not None:
            self.updater.stop()
        self.retention.stop()
        self.expiry.stop()
        if self.library_integrity is not None:
            self.library_integrity.stop()
        if self.library_repair is not None:
            self.library_repair.stop()
        self.libraries.close()
        self.db.close()
        self.service_lock.release()


def newest_signed(authorisation: AuthorisationStore, desk_config: DeskConfigStore) -> float | None:
    """The newest time central signed a document this desk holds at: true time is no earlier (a clock behind)."""
    times = [applied.config.issued_at.timestamp() for applied in [desk_config.applied()] if applied is not None]
    manifest = authorisation.manifest()
    if manifest is not None:
        times.append(manifest.issued_at.timestamp())
    return max(times, default=None)


def open_desk(settings: ApplianceSettings, *, pipeline: FacePipeline | None = None,
              clock: Callable[[], datetime] | None = None) -> Desk:
    """Wire the desk from its settings: the library first (nothing is created on disk if it does not open),
    then the device's records, the services and the MQTT link. Background work waits for ``Desk.start``.

    ``pipeline`` lets tests share one compiled pipeline across desks; the service loads its own. ``clock`` is
    the desk's clock for library authorisation (expiry, review dates): injectable, as the retention purge's is;
    by default the clock guard's wall clock (the one whose jumps it watches).
    """
    pipeline = pipeline or FacePipeline.load(embedder=settings.models.embedder)
    tpm = desk_tpm(settings)
    keys = open_library_keys(settings, tpm)  # the key-wrapping key unsealed once; library keys unwrapped
    # Each library lives in its own versioned store (data_dir/library/<library_id>/); the file named in settings
    # is the one shipped at provisioning, installed on first start. Updates from central then move each forward.
    keyring = LibraryKeyring(keys)
    root, primary_id = settings.library_store_dir, settings.library.library_id
    migrate_legacy(root, primary_id)  # a desk from before several libraries: its store moves into its folder
    finish_repairs(root)  # a damaged library's replacement cut by a restart is finished (or asked for again)
    stores: dict[str, LibraryStore] = {}

    def store_for(library_id: str) -> LibraryStore:
        if library_id not in stores or not stores[library_id].versions.is_dir():  # (again, after a destruction)
            stores[library_id] = LibraryStore(library_folder(root, library_id))
        return stores[library_id]

    store = store_for(primary_id)
    holders: dict[str, LibraryHolder] = {}
    destroyed = is_destroyed(root, primary_id)  # a retired provisioned library is never installed again from files
    if store.current_version() is None and keys.provisioned is not None and not destroyed:
        store.install_full(settings.library.path, keys.require(keys.provisioned),
                           expected_embedder=pipeline.embedder_id, key_id=keys.provisioned)
    if not destroyed or store.current_version() is not None:  # (or central authorised it again since)
        holders[primary_id] = LibraryHolder(store.open_current(keys.for_current(store),
                                                               expected_embedder=pipeline.embedder_id))
    for library_id in held_ids(root):
        other = store_for(library_id)
        if library_id == primary_id or other.current_version() is None:
            continue
        try:
            holders[library_id] = LibraryHolder(other.open_current(keyring.for_library(library_id).for_current(other),
                                                                   expected_embedder=pipeline.embedder_id))
        except SnapshotError as e:  # one library that does not open never stops the desk serving the others
            logger.error("library %s does not open and is not served: %s", library_id, e)
    # Signs everything central tells the desk: appliance.toml's key, or the one central rotated to since (a rekey).
    central_key = TrustedCentralKey(load_command_key(settings.fleet_command_public_key), settings.data_dir)
    records = open_records(settings, tpm)
    db, outbox, audit = records.db, records.outbox, records.audit
    # The clock is judged against the log (its newest time, a doubt still standing) now, against itself while
    # running, and against central's signed acks; a doubt is recorded in the chain and holds the retention purge back.
    authorisation = AuthorisationStore(db)  # central's signed library authorisation, once one is applied
    desk_config = DeskConfigStore(db)  # central's signed configuration, once one is applied
    clock_guard = ClockGuard.from_log(outbox, signed_at=newest_signed(authorisation, desk_config),
                                      readings=TrustedReadingStore(db))
    audit.watch_clock(clock_guard.check)
    if clock is None:  # under a doubt, the guard's estimate (see ClockGuard.limits_now); none: refused below
        clock = lambda: datetime.fromtimestamp(clock_guard.limits_now() or clock_guard.wall(), UTC)  # noqa: E731
    libraries = LibrarySet(holders, authorisation.manifest, primary=primary_id, clock=clock,
                           clock_doubt=clock_guard.unbounded_doubt)
    library = libraries.primary
    expiry = LibraryExpiry(libraries, authorisation, keyring, root, db, audit, data_dir=settings.data_dir,
                           store_for=store_for, download_dir=settings.data_dir / "updates" / "downloads",
                           provisioned_files=[settings.library.path, *filter(None, [settings.library.wrapped_key])],
                           clock=clock, clock_doubt=lambda: clock_guard.doubt)
    update_audit = ClockNotedAudit(audit, lambda: clock_guard.doubt)  # TUF's expiry checks read the desk's clock
    granted = AuthorisationUpdater(authorisation, update_audit, settings.device_id)

    def on_manifest(_manifest: object) -> None:
        expiry.sweep()  # a retirement takes effect at once
        expiry.reschedule()  # and the next sweep waits for the new earliest expiry

    granted.on_applied = on_manifest
    updater = None
    if settings.updates is not None:
        updater = LibraryUpdater.from_settings(settings.updates, data_dir=settings.data_dir, store=store,
                                               keys=keys, embedder_id=pipeline.embedder_id,
                                               holder=library, audit=update_audit, central_key=central_key,
                                               config=ConfigUpdater(desk_config, update_audit, keys),
                                               authorisation=granted, libraries=libraries, keyring=keyring,
                                               store_for=store_for)
    handlers = {library_announce_topic(): updater.on_announcement} if updater else {}
    # Peer review: the offline fallback on the device, or central's team over MQTT ([peer_review] channel).
    reviews, case_store = PeerReviewStore(db), CaseStore(db)
    channel: PeerReviewChannel = LocalPeerReviewChannel(reviews)
    central_reviews: CentralPeerReviewChannel | None = None
    if settings.peer_review.channel == "central":
        channel = central_reviews = CentralPeerReviewChannel(
            settings.device_id, reviews, PeerReviewOutbox(db), case_store, libraries, pipeline.embedder_manifest,
            central_key=central_key, resend_after_s=settings.peer_review.resend_after_s,
            review_key=load_review_key(settings.peer_review.central_review_key))
        handlers[peer_review_outcome_topic(settings.device_id)] = central_reviews.handle_outcome
    senders = [central_reviews.drain] if central_reviews else []
    # Every key the heartbeat reports on, the library's included: the key-wrapping key opens every library key.
    key_paths = [db.key_path, settings.data_dir / SIGNING_KEY_NAME, settings.wrapping_key_path]
    if settings.mqtt.key_file is not None:
        key_paths.append(settings.mqtt.key_file)
    last_ack: list[CentralLink] = []  # the publisher, once made (the reporter is one of its senders)
    health = HealthReporter(settings.device_id, settings.data_dir, outbox, libraries,
                            interval_s=settings.health.interval_s, key_paths=key_paths,
                            insecure_keys=lambda: keys.insecure,
                            last_ack_at=lambda: last_ack[0].last_ack_at if last_ack else None)
    senders.append(health.send)
    senders.append(lambda _publish, _session: audit.check_clock())  # a jump is told even on a quiet desk
    wipe = WipeService(settings.device_id, central_key, audit, outbox, db,
                       secrets=[*key_paths[1:], settings.data_dir / AUTH_FILE_NAME,
                                *filter(None, [settings.library.insecure_plain_key_file])],
                       trees=[root, keys.folder],
                       files=[settings.library.path, *filter(None, [settings.library.wrapped_key])],
                       clock_doubt=lambda: clock_guard.doubt, wall=clock_guard.wall, monotonic=clock_guard.monotonic)
    if wipe.resume_pending():  # a wipe accepted before a crash or power cut: nothing may be served
        libraries.close()
        raise DeskWithdrawnError(WITHDRAWN_MESSAGE)
    # Central's signed commands: a wipe, a request to resend the events logged since a moment (after a restore), or
    # a rekey (central's fleet-command key rotated: every service above verifies with the new key from then on).
    resend = ResendService(settings.device_id, central_key, audit, outbox, settings.data_dir)
    rekey = RekeyService(settings.device_id, central_key, audit, settings.data_dir)
    handlers[fleet_command_topic(settings.device_id)] = command_router(wipe.handle, resend.handle, rekey.handle)
    senders.append(wipe.drain)  # last: after it runs the database is closed
    publisher = CentralLink(settings.mqtt, settings.device_id, outbox, central_key=central_key, handlers=handlers,
                            senders=senders, on_central_time=clock_guard.observe_central)
    last_ack.append(publisher)
    wipe.on_withdrawn(publisher.request_stop)
    if updater is not None:
        wipe.on_withdrawn(updater.stop)
    # Accounts, sessions and the custody-case workflow (all in the encrypted device database).
    # Timed on the monotonic clock too, so a clock set back keeps no session alive; under a clock doubt a session
    # whose age this process did not see is ended (audited), never kept on the wall clock's word.
    sessions = SessionManager(SessionStore(db), idle_s=settings.auth.idle_timeout_minutes * 60,
                              absolute_s=settings.auth.absolute_timeout_hours * 3600, clock=clock_guard.wall,
                              monotonic=clock_guard.monotonic, clock_doubt=lambda: clock_guard.doubt,
                              on_ended=lambda data, why: audit.record(
                                  "logout", str(data.get("username", "unknown")), "session_ended", reason=why,
                                  clock=clock_guard.doubt))
    accounts = AccountService(AccountStore(db), settings.auth)
    # Authorised RFR Users: the desk's own clock and time zone decide whether an authorisation has lapsed.
    # Under a clock doubt, the guard's estimate of the time decides; with none, no authorisation is current.
    authority = SearchAuthority(accounts.authorisation, audit, zone(settings.web.time_zone),
                                clock=lambda: clock_guard.limits_now() or clock_guard.wall(),
                                clock_doubt=clock_guard.unbounded_doubt)
    case_service = CaseService(case_store, reviews, channel, pipeline, libraries, audit,
                               lambda: desk_config.top_k(settings.search.top_k), authority=authority)
    if central_reviews is not None:
        central_reviews.bind(case_service.apply_peer_review)
    sessions.purge()
    # Central's retention period for viable matches: enforced now, then hourly (appliance.services.retention).
    # The lock tells ``python -m appliance retention purge`` that this process purges by itself.
    service_lock = ServiceLock(settings.data_dir)
    if not service_lock.acquire():
        logger.warning("%s is held by another process (a retention purge run by hand?)", service_lock.path)
    retention = RetentionService(case_store, desk_config, audit, clock_doubt=lambda: clock_guard.doubt)
    wipe.on_withdrawn(retention.stop)
    wipe.on_withdrawn(expiry.stop)
    try:
        retention.purge()
    except Exception:
        logger.exception("retention purge at start failed; it is tried again in the background")
    if db.damage.damaged:  # reported in the chain too, if the damaged page leaves the log writable
        try:
            audit.record("device_fault", "system", "database_damaged", problems=db.damage.problems[:5])
        except Exception:
            logger.exception("could not record the device database's damage in the audit log")
    primary = libraries.snapshot(primary_id)
    audit.record("library_loaded", "system", "ok", library_version=primary.version if primary else None,
                 records=primary.count if primary else None, embedder=pipeline.embedder_id,
                 libraries=[{"library_id": i, "version": v} for i, v in libraries.held()])
    # Temporary libraries past their expiry (the desk's clock) and retired ones go now, then hourly.
    try:
        expiry.sweep()
    except Exception:
        logger.exception("library expiry sweep at start failed; it is tried again in the background")

    def library_files() -> list[tuple[str, Path, bytes]]:
        """Every held library's files (base and delta segments) and key, for the page check; a library already
        being repaired is not checked again."""
        files = []
        repairing = libraries.repairing()
        for library_id, _version in libraries.held():
            if library_id in repairing:
                continue
            held = store_for(library_id)
            ring = keys if library_id == primary_id else keyring.for_library(library_id)
            key = ring.for_current(held)
            files.extend((library_id, path, key) for path in [held.current_path(), *held.segment_paths()])
        return files

    repair = LibraryRepair(libraries, updater.refetch if updater is not None else None, audit,
                           retry_s=settings.updates.repair_retry_s if settings.updates is not None else 30)

    integrity = LibraryIntegrity(library_files, audit, on_damage=repair.damaged)
    case_service.on_library_damage = integrity.check_soon  # a damaged page met by a search or a candidate's view
    return Desk(settings=settings, pipeline=pipeline, library_store=store, library=library, libraries=libraries,
                authorisation=authorisation, db=db, outbox=outbox,
                audit=audit, desk_config=desk_config, updater=updater, health=health, wipe=wipe, mqtt=publisher,
                accounts=accounts, sessions=sessions, cases=case_service, retention=retention,
                service_lock=service_lock, expiry=expiry, clock_guard=clock_guard,
                library_integrity=integrity,
                library_repair=repair, central_key=central_key, rekey=rekey)
