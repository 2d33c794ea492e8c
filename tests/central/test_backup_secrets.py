"""Every secret central's settings name comes back from a backup byte for byte, where the new settings say.

The keys central needs to carry on: the TUF online keys, the fleet CA folder, the fleet-command key, the peer
review key, the library lineage keys (one a re-key has rotated, so with its retired key; one named by the
report and the peer review settings both), central's HTTPS key and its broker client key (inside the CA
folder). A restore into new paths reproduces each file exactly; a wrong passphrase, or new settings that
name no place for one of them, restores nothing. And no path-valued setting is forgotten: each is either
sealed or listed in ``NOT_BACKED_UP`` with the reason.
"""

from __future__ import annotations

import shutil
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from central.__main__ import main as central_main
from central.audit.store import AuditStore
from central.backup import BackupError, back_up, restore
from central.backup_secrets import NOT_BACKED_UP, secret_places
from central.peer_review.review_key import make_review_key
from central.publish.__main__ import main as publish_main
from central.settings import CentralSettings
from library.snapshot import new_key, write_key_file
from provisioning.ca import CaLayout
from tests.fleet_tls import FleetPki

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"
PASSPHRASE = b"correct horse battery staple for backups"


def settings_for(root: Path, ca_dir: Path, web: tuple[Path, Path], *, review_key: bool = True) -> CentralSettings:
    """Central's settings with every secret in a place of its own under ``root`` (except what the CA folder holds)."""
    lineage = root / "lineage"
    layout = CaLayout(ca_dir)
    return CentralSettings.model_validate({
        "data_dir": root / "data",
        "mqtt": {"host": "127.0.0.1", "port": 18830, "ca_file": layout.bundle, "cert_file": layout.central_cert,
                 "key_file": layout.central_key},
        "web": {"secret_key": SECRET, "cert_file": web[0], "key_file": web[1]},
        "publish": {"repo_dir": root / "repo", "lineage_keys": [lineage / "national.key"]},
        "fleet": {"command_key": root / "keys" / "fleet-command.pem", "ca_dir": ca_dir},
        "peer_review": {"review_key": root / "keys" / "review.key" if review_key else None,
                        "libraries": [{"path": root / "libs" / "regional.db", "key_file": lineage / "regional.key"}]},
        "reports": {"libraries": [{"name": "Regional", "path": root / "libs" / "regional.db",
                                   "key_file": lineage / "regional.key"}]},
    })


def every_file(settings: CentralSettings) -> list[Path]:
    """Each secret file the settings name, its companions, and every file of each secret folder."""
    files: list[Path] = []
    for place in secret_places(settings):
        files += sorted(p for p in place.path.rglob("*") if p.is_file()) if place.is_dir else [place.path]
        files += place.sibling_files()
    return files


@pytest.fixture
def old(tmp_path: Path) -> CentralSettings:
    root = tmp_path / "old"
    pki = FleetPki.create(root / "fleet")
    settings = settings_for(root, pki.ca_dir, (pki.server_cert, pki.server_key))
    assert central_main(["devices", "command-key", "--out", str(settings.fleet.command_key)]) == 0
    assert publish_main(["init", "--repo", str(root / "repo"), "--root-keys-dir", str(tmp_path / "offline")]) == 0
    make_review_key(settings.peer_review.review_key)
    national = settings.publish.lineage_keys[0]
    national.parent.mkdir(mode=0o700)
    write_key_file(national.with_name("national.key.retired-0a1b2c"), new_key())  # what a re-key leaves
    command_key = settings.fleet.command_key
    for left in ("fleet-command.pem.next", "fleet-command.pem.retired-9f8e7d"):  # a rotation cut short leaves these
        shutil.copy(command_key, command_key.with_name(left))
    write_key_file(national, new_key())
    write_key_file(settings.reports.libraries[0].key_file, new_key())
    AuditStore(settings.database_url).close()
    return settings


def test_restore_reproduces_every_secret_byte_for_byte_at_the_new_paths(tmp_path, old):
    back_up(old, tmp_path / "backup", PASSPHRASE)
    sealed = (tmp_path / "backup" / "secrets.enc").read_bytes()
    before = {path: path.read_bytes() for path in every_file(old)}
    assert all(content not in sealed for content in before.values())  # sealed, not stored
    new_root = tmp_path / "new"
    new = settings_for(new_root, new_root / "pki" / "ca",
                       (new_root / "web" / "server.crt", new_root / "web" / "server.key"))
    restore(new, tmp_path / "backup", PASSPHRASE)
    pairs = list(zip(every_file(old), every_file(new), strict=True))
    assert len(pairs) > 20
    for was, now in pairs:
        assert now.read_bytes() == before[was], (was, now)
        if was.stat().st_mode & 0o077 == 0:  # a private key stays private
            assert now.stat().st_mode & 0o077 == 0, now
    names = {p.name for p in every_file(new)}
    assert {"review.key", "review.key.pub", "fleet-command.pem.pub", "national.key.retired-0a1b2c", "server.key",
            "central.key", "regional.key", "fleet-command.pem.next", "fleet-command.pem.retired-9f8e7d"} <= names
    assert not (new_root / "offline").exists()  # the offline root keys never go into a backup


def test_a_wrong_passphrase_or_a_missing_place_restores_nothing(tmp_path, old):
    back_up(old, tmp_path / "backup", PASSPHRASE)
    new_root = tmp_path / "new"
    new = settings_for(new_root, new_root / "pki" / "ca", (new_root / "web" / "s.crt", new_root / "web" / "s.key"))
    with pytest.raises(BackupError, match="does not open with this passphrase"):
        restore(new, tmp_path / "backup", b"not the passphrase it was sealed with")
    assert not new_root.exists()
    no_review = settings_for(new_root, new_root / "pki" / "ca", (new_root / "web" / "s.crt",
                                                                  new_root / "web" / "s.key"), review_key=False)
    with pytest.raises(BackupError, match=r"peer_review\.review_key"):
        restore(no_review, tmp_path / "backup", PASSPHRASE)
    assert not new_root.exists()


def test_the_backup_command_fails_loudly_when_a_named_key_is_missing(tmp_path, old, capsys):
    old.peer_review.review_key.unlink()
    config = tmp_path / "old.toml"
    config.write_text(f'data_dir = "{old.data_dir}"\n[mqtt]\nhost = "127.0.0.1"\nport = 18830\n'
                      f'[web]\nsecret_key = "{SECRET}"\n[peer_review]\nreview_key = "{old.peer_review.review_key}"\n'
                      f'[fleet]\ncommand_key = "{old.fleet.command_key}"\n')
    (tmp_path / "pass").write_text(PASSPHRASE.decode())
    assert central_main(["backup", "--config", str(config), "--out", str(tmp_path / "b"), "--passphrase-file",
                         str(tmp_path / "pass")]) == 1
    assert "peer_review.review_key names a key file or folder that does not exist" in capsys.readouterr().err


def _path_settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted names of every setting whose value is a path (or paths), lists of tables included."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        kinds = _kinds(field.annotation)
        if Path in kinds:
            found.add(prefix + name)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _path_settings(kind, f"{prefix}{name}.")
    return found


def _kinds(annotation: object) -> set[object]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        return set().union(*(_kinds(a) for a in args))
    return {annotation}


def test_every_path_setting_is_sealed_or_left_out_with_a_reason(old):
    sealed = {place.setting.replace("/keys", "") for place in secret_places(old)}
    sealed = {".".join(part for part in name.split(".") if not part.isdigit()) for name in sealed}
    copied = {"publish.repo_dir"}  # metadata and targets in tuf-repo/, its keys sealed
    paths = _path_settings(CentralSettings)
    assert "fleet.command_key" in paths and "reports.libraries.key_file" in paths
    forgotten = paths - sealed - copied - set(NOT_BACKED_UP)
    assert not forgotten, f"say whether a backup carries these: {sorted(forgotten)}"
    assert {"web.secret_key", "publish.root_keys", "database"} <= set(NOT_BACKED_UP)
