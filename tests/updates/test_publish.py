"""Central's TUF repository and its command-line tool: keys, roles, expiry, targets, serving."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.ngclient import Updater

from central.fleet.registry_store import RegistryStore
from central.publish.__main__ import main
from central.publish.describe import describe_delta, describe_full
from central.publish.repository import PublishError, TufRepository, init_repository
from central.publish.settings import PublishSettings
from central.web import close_stores, create_app
from core.keywrap import key_id, public_key_hex
from core.library_announce import LibraryAnnouncement
from library.delta import make_delta
from library.snapshot import Snapshot, write_key_file
from tests.updates.conftest import EMBEDDER, Central
from tufrepo.repository import utc_now


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_init_creates_offline_root_keys_and_online_keys_apart(tmp_path):
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    root = read_json(repo.metadata_dir / "1.root.json")["signed"]
    assert root["consistent_snapshot"] is True
    assert root["roles"]["root"]["threshold"] == 2 and len(root["roles"]["root"]["keyids"]) == 3
    assert all(root["roles"][r]["threshold"] == 1 for r in ("targets", "snapshot", "timestamp"))
    assert sorted(p.name for p in (tmp_path / "offline").iterdir()) == ["root-1.pem", "root-2.pem", "root-3.pem"]
    assert sorted(p.name for p in (repo.repo_dir / "keys").iterdir()) == ["snapshot.pem", "targets.pem",
                                                                        "timestamp.pem"]
    for key in [*(tmp_path / "offline").iterdir(), *(repo.repo_dir / "keys").iterdir()]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(repo.repo_dir.rglob("root-*.pem"))
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == ["1.root.json", "1.snapshot.json",
                                                                  "1.targets.json", "root.json", "timestamp.json"]
    assert repo.versions() == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}


def test_expiry_of_each_role_follows_the_settings(tmp_path):
    before = utc_now()
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    expires = {role: when - before for role, when in repo.expires().items()}
    for role, period in {"root": timedelta(days=365), "targets": timedelta(days=90),
                         "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}.items():
        assert period <= expires[role] <= period + timedelta(minutes=1), role


def test_init_refuses_root_keys_inside_the_repository_and_a_second_init(tmp_path):
    with pytest.raises(PublishError, match="outside the repository"):
        init_repository(tmp_path / "repo", tmp_path / "repo" / "root-keys")
    init_repository(tmp_path / "repo", tmp_path / "offline")
    with pytest.raises(PublishError, match="already holds a repository"):
        init_repository(tmp_path / "repo", tmp_path / "offline2")


def test_threshold_above_key_count_is_a_settings_error():
    with pytest.raises(ValueError, match="root_threshold 4 is more than root_keys 3"):
        PublishSettings(root_threshold=4)


def test_publish_full_signs_a_hash_named_target_with_custom_info(tmp_path, make_library, library_key):
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    library = make_library(1)
    info = describe_full(library, library_key)
    repo.publish(library, info)

    snapshot = Snapshot.open(library, library_key)
    assert (info.kind, info.library_version, info.embedder_id, info.result_digest) == (
        "full", 1, EMBEDDER, snapshot.digest)
    snapshot.close()
    targets = read_json(repo.metadata_dir / "2.targets.json")["signed"]["targets"]
    entry = targets["library-v000001.db"]
    assert entry["custom"] == {"kind": "full", "library_version": 1, "embedder_id": EMBEDDER,
                               "result_digest": info.result_digest, "key_id": key_id(library_key)}
    served = repo.targets_dir / f"{entry['hashes']['sha256']}.library-v000001.db"
    assert served.read_bytes() == library.read_bytes() and entry["length"] == library.stat().st_size
    assert repo.versions() == {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
    timestamp = read_json(repo.metadata_dir / "timestamp.json")["signed"]
    assert timestamp["meta"]["snapshot.json"]["version"] == 2 and "sha256" in timestamp["meta"]["snapshot.json"][
        "hashes"]
    with pytest.raises(PublishError, match="already published"):
        repo.publish(library, info)


def test_publish_delta_records_base_and_result(tmp_path, make_library, library_key):
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    v1, v2 = Snapshot.open(make_library(1), library_key), Snapshot.open(make_library(2), library_key)
    make_delta(v1, v2, tmp_path / "d.delta", library_key)
    info = describe_delta(tmp_path / "d.delta", library_key)
    repo.publish(tmp_path / "d.delta", info)
    custom = repo.published()["library-v000001-to-v000002.delta"]
    assert (custom.kind, custom.base_version, custom.base_digest, custom.library_version, custom.result_digest) == (
        "delta", 1, v1.digest, 2, v2.digest)
    v1.close()
    v2.close()


def test_repository_refuses_an_online_key_root_does_not_trust(tmp_path):
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    (repo.repo_dir / "keys" / "snapshot.pem").write_bytes(CryptoSigner.generate_ed25519().private_bytes)
    with pytest.raises(PublishError, match=r"keys/snapshot\.pem is not the snapshot key that root trusts"):
        TufRepository(repo.repo_dir)


def registry_with_desk(tmp_path: Path) -> str:
    """Central's database with one registered desk that has a key-wrapping key: publishing wraps keys for it."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    registry = RegistryStore(url)
    registry.register_device("desk-a", "00" * 32,
                             wrap_public_key_hex=public_key_hex(X25519PrivateKey.generate().public_key()))
    registry.close()
    return url


def test_cli_init_publish_refresh_status(tmp_path, make_library, library_key, capsys):
    repo_dir, key_file = tmp_path / "repo", tmp_path / "lib.key"
    write_key_file(key_file, library_key)
    database = registry_with_desk(tmp_path)
    assert main(["init", "--repo", str(repo_dir), "--root-keys-dir", str(tmp_path / "offline"),
                 "--root-keys", "5", "--root-threshold", "3"]) == 0
    assert "Move" in capsys.readouterr().out
    assert read_json(repo_dir / "metadata" / "root.json")["signed"]["roles"]["root"]["threshold"] == 3
    assert main(["publish", "--repo", str(repo_dir), "--file", str(make_library(1)), "--kind", "full",
                 "--key-file", str(key_file)]) == 1
    assert "needs central's device registry" in capsys.readouterr().err
    assert main(["publish", "--repo", str(repo_dir), "--file", str(make_library(1)), "--kind", "full",
                 "--key-file", str(key_file), "--database", database]) == 0
    out = capsys.readouterr().out
    assert "Published library-v000001.db (library version 1)" in out and "wrapped for 1 desk(s)" in out
    announcement = LibraryAnnouncement.from_bytes((repo_dir / "announcement.json").read_bytes())
    assert (announcement.library_version, announcement.target, announcement.kind) == (1, "library-v000001.db",
                                                                                        "full")
    assert main(["refresh-timestamp", "--repo", str(repo_dir)]) == 0
    assert capsys.readouterr().out.startswith("Re-signed timestamp; timestamp valid until")
    assert main(["status", "--repo", str(repo_dir)]) == 0
    out = capsys.readouterr().out
    assert "timestamp version    4" in out and "library-v000001.db  full v1" in out
    assert f"keys-{key_id(library_key)}.json  library key" in out


def test_cli_prints_one_actionable_line_on_errors(tmp_path, make_library, capsys):
    assert main(["publish", "--repo", str(tmp_path / "nowhere"), "--file", "x", "--kind", "full",
                 "--key-file", "k"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a complete TUF repository" in err and "create one with init" in err
    main(["init", "--repo", str(tmp_path / "repo"), "--root-keys-dir", str(tmp_path / "offline")])
    write_key_file(tmp_path / "wrong.key", bytes(32))
    capsys.readouterr()
    assert main(["publish", "--repo", str(tmp_path / "repo"), "--file", str(make_library(1)), "--kind", "full",
                 "--key-file", str(tmp_path / "wrong.key"), "--database", registry_with_desk(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("publish: ") and "cannot be opened with this key" in err


# --- serving ---------------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def test_central_serves_metadata_and_ranges_of_targets(central: Central, make_library, library_key):
    library = make_library(1)
    central.repo.publish(library, describe_full(library, library_key))
    status, headers, body = get(central.metadata_url + "timestamp.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == (central.repo.metadata_dir / "timestamp.json").read_bytes()
    assert headers["Cache-Control"] == "no-store"
    name = central.repo.target_path("library-v000001.db").name
    status, headers, body = get(central.targets_url + name, {"Range": "bytes=1000-"})
    assert status == 206 and body == library.read_bytes()[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{library.stat().st_size - 1}/{library.stat().st_size}"
    status, headers, body = get(central.targets_url + name)
    assert status == 200 and body == library.read_bytes() and headers["Accept-Ranges"] == "bytes"
    status, headers, _ = get(central.targets_url + name, {"Range": f"bytes={library.stat().st_size}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{library.stat().st_size}"


@pytest.mark.parametrize("path", [
    "/tuf/targets/..%2Fkeys%2Ftargets.pem", "/tuf/metadata/..%2Fkeys%2Ftimestamp.pem",
    "/tuf/targets/../keys/targets.pem", "/tuf/keys/targets.pem", "/tuf/metadata/.hidden", "/tuf/metadata/2.root.json",
])
def test_central_serves_nothing_outside_metadata_and_targets(central: Central, path):
    status, _, body = get(central.url + path)
    assert status == 404 and b"PRIVATE KEY" not in body


def test_without_a_repository_central_serves_no_updates(tmp_path, monkeypatch):
    monkeypatch.delenv("RFR_CENTRAL_TUF_REPO", raising=False)
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                                  "DATABASE": str(tmp_path / "central.db")})
    response = app.test_client().get("/tuf/metadata/timestamp.json")
    close_stores(app)
    assert response.status_code == 404
    assert "does not publish library updates" in response.get_data(as_text=True)


def test_a_tuf_client_verifies_what_central_publishes(central: Central, make_library, library_key, tmp_path):
    library = make_library(1)
    central.repo.publish(library, describe_full(library, library_key))
    updater = Updater(str(tmp_path / "client"), central.metadata_url, str(tmp_path / "dl"), central.targets_url,
                      bootstrap=central.repo.root_bytes)
    updater.refresh()
    info = updater.get_targetinfo("library-v000001.db")
    assert info is not None and info.custom["library_version"] == 1
    assert Path(updater.download_target(info)).read_bytes() == library.read_bytes()
