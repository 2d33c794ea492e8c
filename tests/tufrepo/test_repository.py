"""The shared signed repository and the TUF error table, checked with python-tuf's own client.

A repository is created on disk, changed, and then read by a real ngclient
``Updater`` through a fetcher that serves the repository folder (the
interface python-tuf's own tests use), so "signed correctly" means "a client
accepts it" and a tampered file means the exception python-tuf really raises.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, Snapshot
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from core.errors import CustodyRfrError
from tufrepo.failures import TufFailure
from tufrepo.repository import OfflineKeys, SignedRepository, SignedRepositoryError, utc_now

BASE = "https://repo.invalid/"


class FolderFetcher(FetcherInterface):
    """Serves ``BASE/<path>`` from a repository folder, 404 for what is not there."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self.repo_dir / url.removeprefix(BASE)
        if not path.is_file():
            raise tuf_errors.DownloadHTTPError(f"{url} not found", 404)
        return iter([path.read_bytes()])


class HandSignedError(CustodyRfrError):
    """The error family of a repository whose targets are signed by people, not the server."""


class HandSigned(SignedRepository):
    error = HandSignedError
    online_roles = ("snapshot", "timestamp")
    kind = "hand-signed repository"
    init_command = "`hand init`"
    key_advice = "Is this the right folder?"


def client(repo: SignedRepository, tmp_path: Path, name: str = "client") -> Updater:
    updater = Updater(str(tmp_path / name / "metadata"), BASE + "metadata/", str(tmp_path / name / "downloads"),
                      BASE + "targets/", FolderFetcher(repo.repo_dir), bootstrap=repo.root_bytes)
    (tmp_path / name / "downloads").mkdir(parents=True, exist_ok=True)
    return updater


def signed(path: Path) -> dict:
    return json.loads(path.read_text())["signed"]


@pytest.fixture
def repo(tmp_path: Path) -> SignedRepository:
    SignedRepository.initialise(tmp_path / "repo", tmp_path / "offline")
    return SignedRepository(tmp_path / "repo")


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"signed payload " * 1000)
    return path


# --- creating ------------------------------------------------------------------------------------


def test_initialise_writes_offline_root_keys_online_keys_and_version_1_of_every_role(repo, tmp_path):
    assert sorted(p.name for p in (tmp_path / "offline").iterdir()) == ["root-1.pem", "root-2.pem", "root-3.pem"]
    assert sorted(p.name for p in (repo.repo_dir / "keys").iterdir()) == ["snapshot.pem", "targets.pem",
                                                                        "timestamp.pem"]
    for key in [*(tmp_path / "offline").iterdir(), *(repo.repo_dir / "keys").iterdir()]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == ["1.root.json", "1.snapshot.json",
                                                                  "1.targets.json", "root.json", "timestamp.json"]
    root = signed(repo.metadata_dir / "1.root.json")
    assert root["consistent_snapshot"] is True
    assert (root["roles"]["root"]["threshold"], len(root["roles"]["root"]["keyids"])) == (2, 3)
    assert repo.versions() == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert repo.root_bytes == (repo.metadata_dir / "root.json").read_bytes()
    assert repo.target_files() == {}


def test_default_expiry_is_a_year_a_quarter_a_week_and_a_day(tmp_path):
    before = utc_now()
    SignedRepository.initialise(tmp_path / "repo", tmp_path / "offline")
    expires = {role: when - before for role, when in SignedRepository(tmp_path / "repo").expires().items()}
    for role, period in {"root": timedelta(days=365), "targets": timedelta(days=90),
                         "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}.items():
        assert period <= expires[role] <= period + timedelta(minutes=1), role


@pytest.mark.parametrize("where, message", [
    ("repo/root", "The root keys folder must be outside the repository"),
    ("repo", "The root keys folder must be outside the repository"),
    ("full", r"full is not empty; give a new folder for the root keys\."),
])
def test_initialise_refuses_key_folders_inside_the_repository_or_in_use(tmp_path, where, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.pem").write_bytes(b"")
    with pytest.raises(SignedRepositoryError, match=message):
        SignedRepository.initialise(tmp_path / "repo", tmp_path / where)
    assert not (tmp_path / "repo" / "metadata").exists()


def test_initialise_refuses_a_second_repository_and_an_unreachable_threshold(repo, tmp_path):
    with pytest.raises(SignedRepositoryError, match="already holds a repository"):
        SignedRepository.initialise(repo.repo_dir, tmp_path / "offline-2")
    with pytest.raises(SignedRepositoryError, match="Each threshold must be between 1 and its number of keys"):
        SignedRepository.initialise(tmp_path / "other", tmp_path / "offline-3", root_keys=2, root_threshold=3)


def test_offline_targets_keys_go_to_their_own_folder_and_role(tmp_path):
    people = OfflineKeys(tmp_path / "people", count=3, threshold=2, prefix="signer", what="signer keys")
    with pytest.raises(HandSignedError, match="Root keys and signer keys must be in different folders"):
        HandSigned.initialise(tmp_path / "repo", tmp_path / "people", targets_keys=people)
    HandSigned.initialise(tmp_path / "repo", tmp_path / "offline", targets_keys=people)
    repo = HandSigned(tmp_path / "repo")
    assert sorted(p.name for p in (tmp_path / "people").iterdir()) == ["signer-1.pem", "signer-2.pem",
                                                                      "signer-3.pem"]
    assert sorted(p.name for p in (repo.repo_dir / "keys").iterdir()) == ["snapshot.pem", "timestamp.pem"]
    root = signed(repo.metadata_dir / "root.json")
    assert (root["roles"]["targets"]["threshold"], len(root["roles"]["targets"]["keyids"])) == (2, 3)
    assert len(json.loads((repo.metadata_dir / "1.targets.json").read_text())["signatures"]) == 2


# --- opening -------------------------------------------------------------------------------------


def test_opening_an_incomplete_repository_says_how_to_create_one(tmp_path):
    with pytest.raises(SignedRepositoryError, match=r"is not a complete TUF repository \(.*root\.json is missing\); "
                                                    r"create one with init\."):
        SignedRepository(tmp_path / "nowhere")
    with pytest.raises(HandSignedError, match=r"not a complete hand-signed repository .* create one with `hand init`"):
        HandSigned(tmp_path / "nowhere")


def test_opening_refuses_unreadable_metadata_and_keys_in_the_subclass_family(repo):
    (repo.repo_dir / "keys" / "timestamp.pem").write_bytes(b"not a key")
    with pytest.raises(SignedRepositoryError, match=r"timestamp\.pem is not an unencrypted PEM private key"):
        SignedRepository(repo.repo_dir)
    (repo.repo_dir / "keys" / "timestamp.pem").unlink()
    with pytest.raises(HandSignedError, match=r"timestamp\.pem does not exist\. Is this the right folder\?$"):
        HandSigned.load_signer(repo.repo_dir / "keys" / "timestamp.pem")
    snapshot = Metadata[Snapshot].from_bytes((repo.metadata_dir / "1.snapshot.json").read_bytes())
    del snapshot.signed.meta["targets.json"]
    (repo.metadata_dir / "1.snapshot.json").write_bytes(snapshot.to_bytes())
    with pytest.raises(SignedRepositoryError, match=r"cannot be read .* restore it from backup"):
        SignedRepository(repo.repo_dir)


def test_opening_refuses_an_online_key_root_does_not_trust(repo, tmp_path):
    SignedRepository.initialise(tmp_path / "other", tmp_path / "other-offline")
    (repo.repo_dir / "keys" / "snapshot.pem").write_bytes((tmp_path / "other" / "keys" / "snapshot.pem").read_bytes())
    with pytest.raises(SignedRepositoryError, match=r"keys/snapshot\.pem is not the snapshot key that root trusts"):
        SignedRepository(repo.repo_dir)


# --- changing ------------------------------------------------------------------------------------


def test_a_target_is_stored_by_hash_signed_with_its_custom_info_and_accepted_by_a_client(repo, payload, tmp_path):
    target = repo.add_target(payload, "thing-v1.bin", {"version": 1})
    sha256 = hashlib.sha256(payload.read_bytes()).hexdigest()
    served = repo.targets_dir / f"{sha256}.thing-v1.bin"
    assert served.read_bytes() == payload.read_bytes() and repo.target_path("thing-v1.bin") == served
    assert stat.S_IMODE(served.stat().st_mode) == 0o644
    assert (target.length, target.hashes, target.custom) == (payload.stat().st_size, {"sha256": sha256},
                                                            {"version": 1})
    assert repo.versions() == {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
    snapshot_bytes = (repo.metadata_dir / "2.snapshot.json").read_bytes()
    assert signed(repo.metadata_dir / "timestamp.json")["meta"]["snapshot.json"] == {
        "version": 2, "length": len(snapshot_bytes), "hashes": {"sha256": hashlib.sha256(snapshot_bytes).hexdigest()}}
    assert not list(repo.targets_dir.glob(".*.tmp"))

    updater = client(repo, tmp_path)
    updater.refresh()
    info = updater.get_targetinfo("thing-v1.bin")
    assert info is not None and info.custom == {"version": 1}
    assert Path(updater.download_target(info)).read_bytes() == payload.read_bytes()


def test_a_reopened_repository_continues_the_versions(repo, payload):
    repo.add_target(payload, "thing-v1.bin", {"version": 1})
    again = SignedRepository(repo.repo_dir)
    assert again.versions() == repo.versions() and list(again.target_files()) == ["thing-v1.bin"]
    again.remove_target("thing-v1.bin")
    assert again.versions() == {"root": 1, "targets": 3, "snapshot": 3, "timestamp": 3}
    assert SignedRepository(repo.repo_dir).target_files() == {}


def test_missing_files_and_unknown_targets_are_refused(repo, tmp_path):
    with pytest.raises(SignedRepositoryError, match=r"absent\.bin does not exist or is not a file\."):
        repo.add_target(tmp_path / "absent.bin", "absent.bin", {})
    with pytest.raises(SignedRepositoryError, match=r"^thing-v9\.bin is not published\.$"):
        repo.remove_target("thing-v9.bin")
    assert repo.versions() == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}


def test_offline_targets_are_signed_only_by_the_signers_given(tmp_path, payload):
    people = OfflineKeys(tmp_path / "people", count=3, threshold=2, prefix="signer", what="signer keys")
    HandSigned.initialise(tmp_path / "repo", tmp_path / "offline", targets_keys=people)
    repo = HandSigned(tmp_path / "repo")
    with pytest.raises(HandSignedError, match="needs the keys of the people who sign them"):
        repo.add_target(payload, "thing-v1.bin", {})
    signers = [HandSigned.load_signer(tmp_path / "people" / f"signer-{i}.pem") for i in (1, 3)]
    repo.add_target(payload, "thing-v1.bin", {"version": 1}, signers)
    updater = client(repo, tmp_path)
    updater.refresh()
    assert updater.get_targetinfo("thing-v1.bin") is not None


def test_refresh_resigns_timestamp_always_and_the_rest_once_half_their_time_has_gone(repo):
    assert repo.refresh() == ["timestamp"]
    later = SignedRepository(repo.repo_dir, clock=lambda: utc_now() + timedelta(days=5))
    assert later.refresh() == ["snapshot", "timestamp"]
    much_later = SignedRepository(repo.repo_dir, clock=lambda: utc_now() + timedelta(days=60))
    assert much_later.refresh() == ["targets", "snapshot", "timestamp"]
    assert much_later.versions() == {"root": 1, "targets": 2, "snapshot": 3, "timestamp": 4}


def test_refresh_never_resigns_targets_without_its_key(tmp_path):
    people = OfflineKeys(tmp_path / "people", count=1, threshold=1, prefix="signer", what="signer keys")
    HandSigned.initialise(tmp_path / "repo", tmp_path / "offline", targets_keys=people)
    much_later = HandSigned(tmp_path / "repo", clock=lambda: utc_now() + timedelta(days=60))
    assert much_later.refresh() == ["snapshot", "timestamp"]
    assert much_later.versions()["targets"] == 1


def test_expiry_comes_from_the_repository_settings(tmp_path):
    def expiry(role: str) -> timedelta:
        return timedelta(hours=2) if role == "timestamp" else timedelta(days=30)

    before = utc_now()
    SignedRepository.initialise(tmp_path / "repo", tmp_path / "offline", expiry=expiry)
    repo = SignedRepository(tmp_path / "repo", expiry=expiry)
    repo.refresh()
    assert timedelta(hours=2) <= repo.expires()["timestamp"] - before <= timedelta(hours=2, minutes=1)
    assert timedelta(days=30) <= repo.expires()["root"] - before <= timedelta(days=30, minutes=1)


# --- changing trust with the offline root keys ----------------------------------------------------


class PowerLost(Exception):
    """The server stops right after the new root is written: before the rotated key is in place."""


class StopsAfterRoot(SignedRepository):
    def _write_root(self, root: Metadata[Root]) -> None:
        super()._write_root(root)
        raise PowerLost


def test_a_rotation_interrupted_after_its_root_is_finished_by_opening_and_refreshing(repo, payload, tmp_path):
    repo.add_target(payload, "thing-v1.bin", {"version": 1})
    client(repo, tmp_path).refresh()
    with pytest.raises(PowerLost):
        StopsAfterRoot(repo.repo_dir).rotate_online_key("targets", tmp_path / "offline")
    assert (repo.repo_dir / "keys" / "targets.pem.next").exists()

    reopened = SignedRepository(repo.repo_dir)  # the key root version 2 names is moved into place
    assert sorted(p.name for p in (repo.repo_dir / "keys").iterdir()) == ["snapshot.pem", "targets.pem",
                                                                        "timestamp.pem"]
    assert reopened.versions()["root"] == 2
    assert reopened.refresh() == ["targets", "snapshot", "timestamp"]  # targets is still signed by the old key
    updater = client(reopened, tmp_path)
    updater.refresh()
    assert updater.get_targetinfo("thing-v1.bin") is not None
    assert signed(tmp_path / "client" / "metadata" / "root.json")["version"] == 2


def test_a_root_json_without_its_versioned_copy_is_completed_on_opening(repo, tmp_path):
    repo.re_sign_root(tmp_path / "offline")
    (repo.metadata_dir / "2.root.json").unlink()
    SignedRepository(repo.repo_dir)
    assert (repo.metadata_dir / "2.root.json").read_bytes() == (repo.metadata_dir / "root.json").read_bytes()
    updater = client(repo, tmp_path)
    updater.refresh()
    assert signed(tmp_path / "client" / "metadata" / "root.json")["version"] == 2


def test_only_a_key_held_on_the_server_is_rotated_there(tmp_path):
    people = OfflineKeys(tmp_path / "people", count=1, threshold=1, prefix="signer", what="signer keys")
    HandSigned.initialise(tmp_path / "repo", tmp_path / "offline", targets_keys=people)
    with pytest.raises(HandSignedError, match="'targets' has no key on this server to rotate; the roles signed "
                                              "here are snapshot, timestamp"):
        HandSigned(tmp_path / "repo").rotate_online_key("targets", tmp_path / "offline")
    key_id = HandSigned(tmp_path / "repo").rotate_online_key("timestamp", tmp_path / "offline")
    assert signed(tmp_path / "repo" / "metadata" / "2.root.json")["roles"]["timestamp"]["keyids"] == [key_id]
    assert HandSigned(tmp_path / "repo").versions() == {"root": 2, "targets": 1, "snapshot": 1, "timestamp": 2}


# --- what a client's TUF errors mean -------------------------------------------------------------


def explain(error: Exception) -> TufFailure:
    return TufFailure.of(error, listing="thing list", download="thing")  # type: ignore[arg-type]


def test_a_client_refusing_an_altered_target_is_explained(repo, payload, tmp_path):
    repo.add_target(payload, "thing-v1.bin", {"version": 1})
    repo.target_path("thing-v1.bin").write_bytes(b"X" + payload.read_bytes()[1:])
    updater = client(repo, tmp_path)
    updater.refresh()
    info = updater.get_targetinfo("thing-v1.bin")
    assert info is not None
    with pytest.raises(tuf_errors.RepositoryError) as raised:
        updater.download_target(info)
    failure = explain(raised.value)
    assert (failure.reason, failure.refused) == ("altered_download", True)
    assert failure.message.startswith("A downloaded file does not match what central signed (")


def test_a_client_refusing_expired_metadata_is_explained(repo, tmp_path):
    SignedRepository(repo.repo_dir, clock=lambda: utc_now() - timedelta(days=2)).refresh()
    with pytest.raises(tuf_errors.RepositoryError) as raised:
        client(repo, tmp_path).refresh()
    failure = explain(raised.value)
    assert (failure.reason, failure.refused) == ("expired_metadata", True)
    assert failure.message.startswith("Central's signed thing list has expired (")
    assert "(a freeze). Nothing was installed." in failure.message


def test_a_client_that_cannot_reach_the_repository_is_told_to_wait(repo, tmp_path):
    updater = client(repo, tmp_path)
    (repo.metadata_dir / "timestamp.json").unlink()
    with pytest.raises(tuf_errors.DownloadError) as raised:
        updater.refresh()
    failure = explain(raised.value)
    assert (failure.reason, failure.refused) == ("unavailable", False)
    assert failure.message == f"Could not download the thing from central ({raised.value})."


@pytest.mark.parametrize("error, reason", [
    (tuf_errors.ExpiredMetadataError("timestamp.json is expired"), "expired_metadata"),
    (tuf_errors.EqualVersionNumberError("same"), "metadata_rollback"),
    (tuf_errors.BadVersionNumberError("new 2 < old 3"), "metadata_rollback"),
    (tuf_errors.UnsignedMetadataError("targets"), "bad_signature"),
    (tuf_errors.LengthOrHashMismatchError("hash"), "altered_download"),
    (tuf_errors.DownloadLengthMismatchError("long"), "oversized_download"),
    (tuf_errors.RepositoryError("odd"), "bad_metadata"),
])
def test_every_repository_error_is_a_refusal_naming_the_list_and_python_tufs_words(error, reason):
    failure = explain(error)
    assert (failure.reason, failure.refused) == (reason, True)
    assert f"({error})" in failure.message and "{" not in failure.message


def test_only_python_tuf_errors_have_a_row():
    with pytest.raises(TypeError, match="not a python-tuf"):
        explain(OSError("disk full"))
