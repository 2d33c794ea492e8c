"""The desk's updater against central's real repository over HTTPS: installs, and every attack refused.

Each refusal test checks what a technician or auditor could observe: the
result's message and reason, the ``library_update_refused`` audit event, and
that the desk still searches its installed version.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from appliance.services.audit import AuditLog
from appliance.services.library import LibraryHolder
from appliance.settings import UpdateSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.updates.fetcher import ResumingFetcher
from appliance.updates.updater import LibraryUpdater, UpdateResult
from central.publish.describe import describe_delta, describe_full
from central.publish.repository import TufRepository
from core.events import AuditEvent
from core.library_announce import LibraryAnnouncement
from library.delta import make_delta
from library.snapshot import Snapshot
from library.store import LibraryStore
from tests.desk_keys import desk_keyring
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY, FORGER
from tests.updates.conftest import EMBEDDER, Central, members, vector
from tufrepo.repository import utc_now


@dataclass
class Desk:
    updater: LibraryUpdater
    holder: LibraryHolder
    store: LibraryStore
    outbox: Outbox
    root: Path

    def events(self, type: str | None = None) -> list[AuditEvent]:
        events = [AuditEvent.from_bytes(p.payload) for p in self.outbox.pending(limit=1000)]
        return [e for e in events if type is None or e.type == type]

    def assert_serving(self, version: int) -> None:
        """The desk searches ``version``: its newest record is found first."""
        assert self.holder.current.version == version
        assert self.store.current_version() == version
        newest = members(version)[-1]
        top = self.holder.current.search(vector(newest), k=3)
        assert top[0].record.subject_ref == f"SUBJ-{newest:04d}"


class Publisher:
    """Central's side of each test: builds, describes and publishes libraries and deltas."""

    def __init__(self, central: Central, make_library: Callable[..., Path], key: bytes, folder: Path) -> None:
        self.central, self.make_library, self.key, self.folder = central, make_library, key, folder

    def full(self, version: int, repo: TufRepository | None = None, **kw: object) -> str:
        path = self.make_library(version, **kw)
        info = describe_full(path, self.key)
        (repo or self.central.repo).publish(path, info)
        return info.name

    def delta(self, base: int, result: int, base_offset: int = 0) -> str:
        out = self.folder / f"{base}-{base_offset}-{result}.delta"
        a = Snapshot.open(self.make_library(base, offset=base_offset), self.key)
        b = Snapshot.open(self.make_library(result), self.key)
        try:
            make_delta(a, b, out, self.key)
        finally:
            a.close()
            b.close()
        info = describe_delta(out, self.key)
        self.central.repo.publish(out, info)
        return info.name

    def served(self, name: str) -> Path:
        return self.central.repo.target_path(name)


@pytest.fixture
def publisher(central, make_library, library_key, tmp_path) -> Publisher:
    folder = tmp_path / "deltas"
    folder.mkdir()
    return Publisher(central, make_library, library_key, folder)


def make_desk(root: Path, central: Central, key: bytes, first_library: Path, metadata_url: str | None = None,
              targets_url: str | None = None, device_id: str = "desk-test-01", install: bool = True) -> Desk:
    """A provisioned desk: library v1 installed in its store (``install``), the library key wrapped to its own
    key-wrapping key, central's root shipped, no update run yet. Called again on the same ``root`` with
    ``install=False`` it is the same desk restarted."""
    store = LibraryStore(root / "library")
    keys = desk_keyring(root, device_id, key)
    if install:
        store.install_full(first_library, key, expected_embedder=EMBEDDER, key_id=keys.provisioned)
    holder = LibraryHolder(store.open_current(keys.for_current(store), EMBEDDER))
    outbox = Outbox(DeviceDatabase(root))
    updater = LibraryUpdater(
        metadata_url=metadata_url or central.metadata_url, targets_url=targets_url or central.targets_url,
        state_dir=root / "updates", store=store, keys=keys, embedder_id=EMBEDDER, holder=holder,
        audit=AuditLog(device_id, outbox), trusted_root=central.repo.root_bytes, central_key=CENTRAL_PUBLIC,
        fetcher=ResumingFetcher(retry_delay_s=0.01, timeout_s=10, ssl_context=central.desk_tls))
    return Desk(updater, holder, store, outbox, root)


@pytest.fixture
def desk(tmp_path, central, publisher, library_key) -> Iterator[Desk]:
    """A desk on library v1, which central has published and the desk has already checked once."""
    publisher.full(1)
    d = make_desk(tmp_path / "device", central, library_key, publisher.make_library(1))
    assert d.updater.check_now().outcome == "up_to_date"
    yield d
    d.updater.stop()


def assert_refused(desk: Desk, result: UpdateResult, reason: str, phrase: str, version: int = 1) -> None:
    assert (result.outcome, result.reason, result.installed_version) == ("refused", reason, version), result
    assert phrase in result.message
    assert f"keeps using library version {version}" in result.message
    refused = desk.events("library_update_refused")
    assert refused and refused[-1].details["reason"] == reason and refused[-1].outcome == "refused"
    assert refused[-1].details["message"] == result.message
    desk.assert_serving(version)


# --- installing ------------------------------------------------------------------------------------


def test_full_update_installs_v2_atomically_and_reports_it(desk, publisher):
    publisher.full(2)
    result = desk.updater.check_now()
    assert (result.outcome, result.installed_version, result.previous_version, result.target) == (
        "installed", 2, 1, "library-v000002.db")
    desk.assert_serving(2)
    event = desk.events("library_update")[-1]
    assert (event.outcome, event.details["library_version"], event.details["previous_version"],
            event.details["kind"]) == ("ok", 2, 1, "full")
    assert list((desk.root / "updates" / "downloads").iterdir()) == []
    for path in (desk.root / "library").rglob("*"):
        if path.is_file() and path.suffix == ".db":
            assert b"SUBJ-" not in path.read_bytes() and b"SQLite format" not in path.read_bytes()
    assert desk.updater.check_now().outcome == "up_to_date"


def test_delta_is_preferred_and_chained_deltas_reach_the_newest(desk, publisher):
    publisher.full(2)
    publisher.delta(1, 2)
    publisher.delta(2, 3)
    result = desk.updater.check_now()
    assert (result.outcome, result.installed_version, result.target) == (
        "installed", 3, "library-v000002-to-v000003.delta")
    assert [e.details["kind"] for e in desk.events("library_update")] == ["delta", "delta"]
    desk.assert_serving(3)
    assert desk.holder.current.digest == Snapshot.open(publisher.make_library(3), publisher.key).digest


@pytest.mark.parametrize("memory", ["enough", "too-little"])
def test_deltas_become_segments_and_a_background_compaction_folds_them(desk, publisher, central, library_key,
                                                                      monkeypatch, memory: str):
    """Each delta is stored as a segment beside the untouched base; past the threshold the updater starts a
    compaction process, after which a restarted desk serves the same version from one base. When the kernel
    says the base index would not fit twice (a 20M library on a 32 GB desk), the compaction merges the
    segments into one instead and leaves the base file as it was."""
    monkeypatch.setattr("library.store.COMPACT_SEGMENTS", 2)
    if memory == "too-little":
        monkeypatch.setattr("library.memory.available_bytes", lambda: 1024)  # a few KB: even this base won't fit
    base = desk.store.current_path()
    before = base.read_bytes()
    publisher.full(2)
    publisher.delta(1, 2)
    publisher.delta(2, 3)
    assert desk.updater.check_now().installed_version == 3
    assert desk.holder.current.base.path.name == base.name  # served from the base it already had loaded
    assert desk.updater.compaction_status() == (True, {})
    assert desk.updater.compaction is not None and desk.updater.compaction.wait(timeout=120) == 0
    assert desk.updater.compaction_status() == (False, {"completed": 1})  # what the desk's metrics report
    assert before == base.read_bytes() and desk.store.current_version() == 3
    merged = ["0000000003-merged.seg"] if memory == "too-little" else []
    assert [p.name for p in desk.store.segment_paths()] == merged
    assert (desk.store.current_path() == base) == (memory == "too-little")
    desk.assert_serving(3)  # the version loaded before the compaction keeps serving
    for path in (desk.root / "library").rglob("*"):
        if path.is_file() and path.suffix in (".db", ".seg"):
            assert b"SUBJ-" not in path.read_bytes() and b"SQLite format" not in path.read_bytes()
    restarted = make_desk(desk.root, central, library_key, base, install=False)
    assert len(restarted.holder.current.segments) == len(merged) and restarted.holder.current.version == 3
    restarted.assert_serving(3)
    assert restarted.holder.current.digest == desk.holder.current.digest


def test_a_desk_that_can_only_merge_takes_a_full_version_once_its_segments_hold_enough_changes(
        desk, publisher, monkeypatch):
    """Merging never drops the base's removed records, so a desk whose base cannot be compacted (too big for
    its memory) takes central's full version instead of the delta once its segments' changes pass
    ``REBASE_FRACTION`` of the base; with memory to compact, the delta still wins."""
    publisher.full(2)
    publisher.delta(1, 2)
    assert desk.updater.check_now().installed_version == 2
    assert len(desk.store.segment_paths()) == 1  # the delta became a segment
    publisher.full(3)
    publisher.delta(2, 3)
    monkeypatch.setattr("library.store.REBASE_FRACTION", 0.0)
    monkeypatch.setattr("library.memory.available_bytes", lambda: 1024)  # a few KB: even this base won't fit
    assert desk.updater.check_now().installed_version == 3
    assert desk.store.segment_paths() == [] and desk.store.current_path().name == "0000000003.db"
    desk.assert_serving(3)


def test_a_desk_with_memory_to_compact_keeps_taking_deltas(desk, publisher, monkeypatch):
    publisher.full(2)
    publisher.delta(1, 2)
    assert desk.updater.check_now().installed_version == 2
    publisher.full(3)
    publisher.delta(2, 3)
    monkeypatch.setattr("library.store.REBASE_FRACTION", 0.0)
    assert desk.updater.check_now().installed_version == 3
    assert len(desk.store.segment_paths()) == 2 and desk.store.current_path().name == "0000000001.db"


def test_announcement_triggers_a_check_and_malformed_unsigned_and_forged_ones_are_ignored(desk, publisher):
    name = publisher.full(2)
    digest = publisher.central.repo.published()[name].result_digest
    body = LibraryAnnouncement.now(2, name, "full", digest).to_bytes()
    assert desk.updater.on_announcement(b'{"v": 1, "library_version": "two"}') is None
    assert desk.updater.on_announcement(body) is None  # unsigned: triggers nothing, though v2 is there
    assert desk.updater.on_announcement(LibraryAnnouncement.seal(body, FORGER)) is None
    desk.assert_serving(1)
    result = desk.updater.on_announcement(LibraryAnnouncement.seal(body, COMMAND_KEY))
    assert result is not None and result.installed_version == 2
    assert desk.updater.on_announcement(LibraryAnnouncement.seal(body, COMMAND_KEY)) is None


def test_polling_thread_installs_without_an_announcement(desk, publisher):
    publisher.full(2)
    desk.updater.start_polling(0.05)
    wait_for_version(desk.holder, 2)
    desk.updater.stop()
    desk.assert_serving(2)


def wait_for_version(holder: LibraryHolder, version: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while holder.current.version != version and time.monotonic() < deadline:
        time.sleep(0.05)


def test_from_settings_and_an_announcement_wakes_the_background_thread(tmp_path, central, publisher, library_key):
    publisher.full(1)
    (tmp_path / "1.root.json").write_bytes(central.repo.root_bytes)
    settings = UpdateSettings(central_url=central.url, trusted_root=tmp_path / "1.root.json", poll_interval_s=0,
                              **central.desk_settings)
    store = LibraryStore(tmp_path / "device" / "library")
    store.install_full(publisher.make_library(1), library_key, expected_embedder=EMBEDDER)
    holder = LibraryHolder(store.open_current(library_key, EMBEDDER))
    updater = LibraryUpdater.from_settings(
        settings, data_dir=tmp_path / "device", store=store, keys=desk_keyring(tmp_path / "device", "desk-test-01",
                                                                               library_key), embedder_id=EMBEDDER,
        holder=holder, audit=AuditLog("desk-test-01", Outbox(DeviceDatabase(tmp_path / "device"))),
        central_key=CENTRAL_PUBLIC)
    updater.start_polling(settings.poll_interval_s)
    try:
        name = publisher.full(2)
        digest = central.repo.published()[name].result_digest
        signed = LibraryAnnouncement.seal(LibraryAnnouncement.now(2, name, "full", digest).to_bytes(), COMMAND_KEY)
        assert updater.on_announcement(signed) is None
        wait_for_version(holder, 2)
    finally:
        updater.stop()
    assert holder.current.version == 2 and store.current_version() == 2
    assert (tmp_path / "device" / "updates" / "metadata" / "root_history" / "1.root.json").exists()


def test_download_resumes_after_the_connection_is_cut(tmp_path, central, publisher, library_key):
    publisher.full(1)
    name = publisher.full(2)
    proxy = central.cutting_proxy(cut_after=publisher.served(name).stat().st_size // 2)
    try:
        url = f"https://127.0.0.1:{proxy.port}"
        desk = make_desk(tmp_path / "device", central, library_key, publisher.make_library(1),
                         f"{url}/tuf/metadata/", f"{url}/tuf/targets/")
        result = desk.updater.check_now()
    finally:
        proxy.close()
    assert (result.outcome, result.installed_version) == ("installed", 2)
    assert desk.updater.fetcher.resumes == 1
    assert any(b"Range: bytes=" in r and name.encode() in r for r in proxy.requests)
    desk.assert_serving(2)


def test_unreachable_central_is_not_a_refusal(tmp_path, central, publisher, library_key):
    publisher.full(1)
    desk = make_desk(tmp_path / "device", central, library_key, publisher.make_library(1),
                     "http://127.0.0.1:9/tuf/metadata/", "http://127.0.0.1:9/tuf/targets/")
    result = desk.updater.check_now()
    assert (result.outcome, result.reason) == ("unavailable", "unavailable")
    assert "Could not download the library update from central" in result.message
    assert desk.events("library_update_refused") == []
    desk.assert_serving(1)


# --- attacks and mistakes: each refused, the installed library keeps serving ------------------------


def test_rollback_to_an_older_version_is_refused(desk, publisher):
    name = publisher.full(2)
    assert desk.updater.check_now().installed_version == 2
    publisher.central.repo.withdraw(name)  # validly re-signed; newest offered is now version 1
    assert_refused(desk, desk.updater.check_now(), "rollback",
                   "Central offers library version 1 at most, older than the installed version 2", version=2)


def test_replayed_older_metadata_is_refused(desk, publisher):
    old_timestamp = (publisher.central.repo.metadata_dir / "timestamp.json").read_bytes()
    publisher.full(2)
    assert desk.updater.check_now().installed_version == 2
    (publisher.central.repo.metadata_dir / "timestamp.json").write_bytes(old_timestamp)
    assert_refused(desk, desk.updater.check_now(), "metadata_rollback",
                   "older than one this desk has already seen", version=2)


def test_freeze_with_an_expired_timestamp_is_refused(desk, publisher, central):
    stale = TufRepository(central.repo.repo_dir, clock=lambda: utc_now() - timedelta(days=2))
    publisher.full(2, repo=stale)
    assert_refused(desk, desk.updater.check_now(), "expired_metadata", "Central's signed library list has expired")


def test_tampered_target_of_the_same_length_is_refused(desk, publisher):
    served = publisher.served(publisher.full(2))
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    assert_refused(desk, desk.updater.check_now(), "altered_download",
                   "A downloaded file does not match what central signed")


def test_longer_target_is_refused_and_the_download_stopped(desk, publisher):
    served = publisher.served(publisher.full(2))
    served.write_bytes(served.read_bytes() + b"\0" * 100_000)
    assert_refused(desk, desk.updater.check_now(), "oversized_download",
                   "A download was larger than central signed for")
    assert list((desk.root / "updates" / "downloads").iterdir()) == []


def test_truncated_target_is_refused(desk, publisher):
    served = publisher.served(publisher.full(2))
    served.write_bytes(served.read_bytes()[: served.stat().st_size // 2])
    assert_refused(desk, desk.updater.check_now(), "altered_download",
                   "A downloaded file does not match what central signed")


def test_target_list_signed_by_the_wrong_key_is_refused(desk, publisher):
    publisher.central.repo._signers["targets"] = CryptoSigner.generate_ed25519()  # an attacker's key
    publisher.full(2)
    assert_refused(desk, desk.updater.check_now(), "bad_signature", "is not signed by central's keys")


def test_mix_and_match_of_old_snapshot_with_new_timestamp_is_refused(desk, publisher):
    publisher.full(2)
    meta = publisher.central.repo.metadata_dir
    (meta / "3.snapshot.json").write_bytes((meta / "2.snapshot.json").read_bytes())
    assert_refused(desk, desk.updater.check_now(), "altered_download",
                   "mixed with files from another publication")


def test_delta_for_another_version_is_refused(desk, publisher):
    publisher.delta(2, 3)
    assert_refused(desk, desk.updater.check_now(), "delta_base_mismatch",
                   "changes library version 2")


def test_delta_for_other_content_under_the_same_version_is_refused(desk, publisher):
    publisher.delta(1, 2, base_offset=7)  # central's "version 1" is not what this desk holds
    result = desk.updater.check_now()
    assert_refused(desk, result, "delta_base_mismatch", "but this desk has version 1 (content")


def test_library_for_another_face_model_is_refused(desk, publisher):
    publisher.full(2, embedder="other-embedder@9")
    assert_refused(desk, desk.updater.check_now(), "wrong_face_model",
                   "was built for face model other-embedder@9")


def test_a_lasting_refusal_is_audited_once_and_recovery_installs(desk, publisher):
    served = publisher.served(publisher.full(2))
    good = served.read_bytes()
    served.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert desk.updater.check_now().outcome == "refused"
    assert desk.updater.check_now().outcome == "refused"
    assert len(desk.events("library_update_refused")) == 1
    served.write_bytes(good)
    assert desk.updater.check_now().installed_version == 2
    desk.assert_serving(2)


def test_a_killed_apply_process_is_a_plain_failure_and_the_next_check_installs(desk, publisher):
    """The delta is applied by a child process (``library.apply_process``); killed half-way, the desk reports a
    plain failure in its own words (not a refusal of central's file, not a success), keeps serving version 1
    with nothing left behind, and the next check installs the same delta."""
    publisher.full(2)
    publisher.delta(1, 2)

    def kill_apply(name: str) -> None:
        if name == "index" and desk.store.building is not None:
            os.kill(desk.store.building.pid, signal.SIGKILL)

    desk.store._stage = kill_apply  # the store's test seam, as the crash tests use it
    result = desk.updater.check_now()
    assert (result.outcome, result.reason, result.installed_version) == ("unavailable", "update_failed", 1), result
    assert "was killed by signal 9 before it finished" in result.message
    assert "tries again at the next check" in result.message
    assert desk.events("library_update_refused") == []
    assert list(desk.store.segments.iterdir()) == []
    desk.assert_serving(1)
    desk.store._stage = lambda _name: None
    assert desk.updater.check_now().installed_version == 2
    desk.assert_serving(2)
