"""Central signs each desk's authorisation manifest into the library repository; a TUF client verifies it.

A real repository served by central's Flask app over HTTPS to an enrolled desk's certificate, read with
python-tuf's own ``Updater``: the manifest a desk downloads is the signed one, parses with the desk's
``AuthorisationManifest.parse``, names that desk, and replaces the older one (which is no longer offered).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tuf.ngclient import Updater

from appliance.updates.fetcher import ResumingFetcher
from central.fleet.registry_store import RegistryStore
from central.libraries.service import Actor, LibraryRequest, LibraryService
from central.libraries.store import LibraryStore
from central.publish.__main__ import main as publish_main
from central.publish.announcer import ANNOUNCEMENT_FILE
from central.publish.repository import TufRepository
from core.library_announce import LibraryAnnouncement
from core.library_authorisation import AuthorisationManifest, AuthorisationTargetInfo, manifest_target_name
from tests.updates.conftest import Central

DESK = "desk-test-01"  # the enrolled desk of the ``fleet`` fixture
ALICE = Actor("alice", frozenset({"library_authoriser"}))
BOB = Actor("bob", frozenset({"library_authoriser"}))


def _govern(database: str) -> LibraryService:
    registry = RegistryStore(database)
    registry.register_device(DESK, "00" * 32)
    registry.register_device("desk-other-02", "11" * 32)
    registry.close()
    service = LibraryService(LibraryStore(database))
    for library_id, kind in (("national-custody", "substantive"), ("temp-op-kestrel", "temporary")):
        expires = datetime.now(UTC) + timedelta(days=14) if kind == "temporary" else None
        service.request(ALICE, LibraryRequest(library_id, library_id.title(), kind, "Custody identification.",
                                              "PACE 1984 s.64A.", "RFR-AUTH-7", expires))
        service.authorise(BOB, library_id, authoriser_name="B. Hughes", authoriser_rank="Superintendent",
                          review_due=date.today() + timedelta(days=180))
    service.grant(BOB, "national-custody", "*")
    service.grant(BOB, "temp-op-kestrel", DESK)
    return service


def _publish(central: Central, capsys) -> str:  # type: ignore[no-untyped-def]
    assert publish_main(["publish-authorisations", "--repo", str(central.repo.repo_dir),
                         "--database", central.database, "--actor", "ops"]) == 0
    return str(capsys.readouterr().out)


def _download(central: Central, tmp_path: Path, name: str) -> bytes | None:
    client = tmp_path / f"client-{name}"
    updater = Updater(str(client), central.metadata_url, str(tmp_path / f"dl-{name}"), central.targets_url,
                      fetcher=ResumingFetcher(ssl_context=central.desk_tls), bootstrap=central.repo.root_bytes)
    updater.refresh()
    info = updater.get_targetinfo(name)
    if info is None:
        return None
    assert AuthorisationTargetInfo.from_dict(info.custom).name == name
    return Path(updater.download_target(info)).read_bytes()


def test_a_desk_downloads_its_signed_manifest_and_the_newer_one_replaces_it(central: Central, tmp_path: Path,
                                                                          capsys) -> None:  # type: ignore[no-untyped-def]
    service = _govern(central.database)
    out = _publish(central, capsys)
    assert f"Published {manifest_target_name(DESK, 1)}" in out and "desk-other-02" in out

    first = AuthorisationManifest.parse(_download(central, tmp_path, manifest_target_name(DESK, 1)) or b"")
    assert first.device_id == DESK and first.version == 1
    assert {lib.library_id for lib in first.libraries} == {"national-custody", "temp-op-kestrel"}
    other = _download(central, tmp_path, manifest_target_name("desk-other-02", 1))
    assert other is not None and [lib.library_id for lib in AuthorisationManifest.parse(other).libraries] == \
        ["national-custody"]
    announced = LibraryAnnouncement.from_bytes((central.repo.repo_dir / ANNOUNCEMENT_FILE).read_bytes())
    assert announced.kind == "authorisation"

    # Nothing changed: nothing is signed again.
    assert "up to date" in _publish(central, capsys)

    service.retire(ALICE, "temp-op-kestrel", "Operation closed.")
    out = _publish(central, capsys)
    assert f"Published {manifest_target_name(DESK, 2)}" in out and "desk-other-02" not in out
    second = AuthorisationManifest.parse(_download(central, tmp_path, manifest_target_name(DESK, 2)) or b"")
    assert second.version == 2 and second.retired == ["temp-op-kestrel"]
    assert [lib.library_id for lib in second.libraries] == ["national-custody"]
    # The older manifest is no longer offered: the repository holds one per desk.
    assert _download(central, tmp_path, manifest_target_name(DESK, 1)) is None
    repo = TufRepository(central.repo.repo_dir)
    assert sorted(repo.published_authorisations()) == [manifest_target_name("desk-other-02", 1),
                                                       manifest_target_name(DESK, 2)]
    assert repo.published() == {}  # manifests are not libraries
    log = LibraryStore(central.database)
    published = [e.detail for e in log.log("*manifests*")]
    log.close()
    assert [(d["device_id"], d["version"]) for d in published] == [
        ("desk-other-02", 1), (DESK, 1), (DESK, 2)]
    assert json.loads(AuthorisationManifest.parse(
        _download(central, tmp_path, manifest_target_name(DESK, 2)) or b"").to_bytes())["device_id"] == DESK
