"""Rotating central's TUF keys with the offline root keys: a desk holding the old root follows and keeps updating.

Central's real repository served over HTTPS by its own app, and the desk's real updater (python-tuf's
ngclient) provisioned with root version 1 and already checked once. After each change made with
``python -m central.publish rotate-key`` / ``re-sign-root`` the desk walks the root chain, installs a
library published afterwards, and refuses what a rotated-out key signs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from central.publish.__main__ import main
from central.publish.repository import PublishError, TufRepository, init_repository
from tests.updates.conftest import Central
from tests.updates.test_updater import Desk, Publisher, assert_refused, make_desk
from tufrepo.repository import utc_now
from tufrepo.root_signing import next_root

ROLES = ("targets", "snapshot", "timestamp")
REFUSED_SIGNATURE = "is not signed by central's keys"


@pytest.fixture
def publisher(central, make_library, library_key, tmp_path) -> Publisher:
    folder = tmp_path / "deltas"
    folder.mkdir()
    return Publisher(central, make_library, library_key, folder)


@pytest.fixture
def desk(tmp_path, central, publisher, library_key) -> Iterator[Desk]:
    """A desk on library v1 that has checked once: it holds root version 1 in its update metadata."""
    publisher.full(1)
    d = make_desk(tmp_path / "device", central, library_key, publisher.make_library(1))
    assert d.updater.check_now().outcome == "up_to_date"
    assert desk_root(d).version == 1
    yield d
    d.updater.stop()


def offline(central: Central) -> Path:
    """The offline root keys folder init wrote (``tests/updates/conftest.py``)."""
    return central.repo.repo_dir.parent / "offline-root-keys"


def reopen(central: Central) -> TufRepository:
    """Central's repository as the command left it on disk (new root, new keys): what publishes next."""
    central.repo = TufRepository(central.repo.repo_dir)
    return central.repo


def desk_root(desk: Desk) -> Root:
    """The root the desk trusts now (ngclient keeps it as ``root.json`` in its metadata folder)."""
    return Metadata[Root].from_bytes((desk.root / "updates" / "metadata" / "root.json").read_bytes()).signed


def served_root(central: Central, version: int) -> Metadata[Root]:
    return Metadata[Root].from_bytes((central.repo.metadata_dir / f"{version}.root.json").read_bytes())


def cli(central: Central, command: str, *args: str) -> int:
    return main([command, "--repo", str(central.repo.repo_dir), "--root-keys-dir", str(offline(central)), *args])


def assert_installs(desk: Desk, version: int) -> None:
    result = desk.updater.check_now()
    assert (result.outcome, result.installed_version) == ("installed", version), result
    desk.assert_serving(version)


# --- online keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_a_rotated_online_key_is_followed_by_a_desk_on_the_old_root_and_the_old_key_is_refused(
        role, desk, publisher, central, capsys):
    old_key = TufRepository.load_signer(central.repo.repo_dir / "keys" / f"{role}.pem")
    assert cli(central, "rotate-key", "--role", role) == 0
    new_key = TufRepository.load_signer(central.repo.repo_dir / "keys" / f"{role}.pem")
    assert f"The {role} key is now {new_key.public_key.keyid}" in capsys.readouterr().out
    root = served_root(central, 2)
    assert root.signed.roles[role].keyids == [new_key.public_key.keyid]
    assert old_key.public_key.keyid not in root.signed.keys
    assert len(root.signatures) >= root.signed.roles["root"].threshold
    assert sorted(p.name for p in (central.repo.repo_dir / "keys").iterdir()) == [f"{r}.pem" for r in sorted(ROLES)]

    publisher.full(2, repo=reopen(central))
    assert_installs(desk, 2)
    assert desk_root(desk).roles[role].keyids == [new_key.public_key.keyid]
    assert desk_root(desk).version == 2

    forged = TufRepository(central.repo.repo_dir)
    forged._signers[role] = old_key  # whoever still holds the old key signs the next state with it
    publisher.full(3, repo=forged)
    assert_refused(desk, desk.updater.check_now(), "bad_signature", REFUSED_SIGNATURE, version=2)


def test_a_lost_online_key_is_replaced_with_rotate_key(desk, publisher, central, capsys):
    (central.repo.repo_dir / "keys" / "snapshot.pem").unlink()
    assert main(["refresh-timestamp", "--repo", str(central.repo.repo_dir)]) == 1
    assert "A lost online key is replaced with rotate-key" in capsys.readouterr().err
    assert cli(central, "rotate-key", "--role", "snapshot") == 0
    publisher.full(2, repo=reopen(central))
    assert_installs(desk, 2)


def test_a_key_root_no_longer_trusts_names_the_command_that_rotates_it(central):
    other = init_repository(central.repo.repo_dir.parent / "other", central.repo.repo_dir.parent / "other-keys")
    shutil.copy(other.repo_dir / "keys" / "timestamp.pem", central.repo.repo_dir / "keys" / "timestamp.pem")
    with pytest.raises(PublishError, match=r"restore the right key or rotate it with the offline root keys "
                                        r"\(python -m central\.publish rotate-key .* --role timestamp\)"):
        TufRepository(central.repo.repo_dir)


# --- root ------------------------------------------------------------------------------------------


def test_re_signed_root_has_a_new_expiry_that_a_desk_follows(desk, publisher, central, capsys):
    assert desk_root(desk).expires - utc_now() < timedelta(days=366)
    assert cli(central, "re-sign-root", "--expiry-days", "700") == 0
    assert "Root version 2 written (2.root.json), valid until" in capsys.readouterr().out
    publisher.full(2, repo=reopen(central))
    assert_installs(desk, 2)
    assert desk_root(desk).version == 2
    assert timedelta(days=699) < desk_root(desk).expires - utc_now() <= timedelta(days=700)

    assert cli(central, "re-sign-root") == 0  # the period of [publish] root_expiry_days
    publisher.full(3, repo=reopen(central))
    assert_installs(desk, 3)
    assert desk_root(desk).version == 3
    assert timedelta(days=364) < desk_root(desk).expires - utc_now() <= timedelta(days=365)


def test_a_replaced_root_key_can_no_longer_make_a_root_the_desk_accepts(desk, publisher, central, capsys):
    folder = offline(central)
    replaced, kept = (TufRepository.load_signer(folder / f"root-{i}.pem") for i in (1, 2))
    assert main(["status", "--repo", str(central.repo.repo_dir)]) == 0
    assert replaced.public_key.keyid in capsys.readouterr().out  # where the operator finds the key id

    assert cli(central, "re-sign-root", "--replace-root-key", replaced.public_key.keyid) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["root-1.pem.retired", "root-2.pem", "root-3.pem",
                                                       "root-4.pem"]
    new = TufRepository.load_signer(folder / "root-4.pem")
    assert f"New root key {new.public_key.keyid} in {folder / 'root-4.pem'}" in out
    assert "root-1.pem.retired is a replaced root key that no longer signs root: destroy it." in out
    root = served_root(central, 2)
    assert replaced.public_key.keyid not in root.signed.roles["root"].keyids
    assert {replaced.public_key.keyid, new.public_key.keyid} <= set(root.signatures)  # old and new keys signed
    publisher.full(2, repo=reopen(central))
    assert_installs(desk, 2)
    assert desk_root(desk).version == 2

    # Whoever holds the replaced key and one kept signs a root (lowering its threshold too): two signatures,
    # enough for root version 1, but root version 2, which the desk now holds, trusts only one of them.
    forged = next_root(served_root(central, 2), utc_now() + timedelta(days=365))
    forged.signed.roles["root"].threshold = 1
    forged.sign(replaced, append=True)
    forged.sign(kept, append=True)
    assert served_root(central, 1).signed.get_verification_result("root", forged.signed_bytes, forged.signatures)
    (central.repo.metadata_dir / "3.root.json").write_bytes(forged.to_bytes())
    assert_refused(desk, desk.updater.check_now(), "bad_signature", REFUSED_SIGNATURE, version=2)
    assert desk_root(desk).version == 2

    (central.repo.metadata_dir / "3.root.json").unlink()
    assert cli(central, "re-sign-root") == 0  # the kept keys and the new one sign the next root
    assert set(served_root(central, 3).signatures) == set(served_root(central, 2).signed.roles["root"].keyids)
    publisher.full(3, repo=reopen(central))
    assert_installs(desk, 3)
    assert desk_root(desk).version == 3


# --- mistakes --------------------------------------------------------------------------------------


def test_missing_or_wrong_offline_keys_and_an_unknown_role_are_told_plainly(tmp_path, capsys):
    repo = init_repository(tmp_path / "repo", tmp_path / "offline")
    written = sorted(p.name for p in repo.metadata_dir.iterdir())
    run = subprocess.run([sys.executable, "-m", "central.publish", "rotate-key", "--repo", str(repo.repo_dir),
                          "--root-keys-dir", str(tmp_path / "nowhere"), "--role", "timestamp"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"publish: The offline root keys folder {tmp_path / 'nowhere'} does not exist")

    def refused(*args: str, keys: Path = tmp_path / "offline") -> str:
        assert main([*args, "--repo", str(repo.repo_dir), "--root-keys-dir", str(keys)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("publish: ") and err.count("\n") == 1
        return err

    init_repository(tmp_path / "other", tmp_path / "other-keys")
    assert "holds 0 of the root keys this repository's root trusts, but 2 of its 3 must sign a new root" in refused(
        "re-sign-root", keys=tmp_path / "other-keys")
    (tmp_path / "one").mkdir()
    shutil.copy(tmp_path / "offline" / "root-1.pem", tmp_path / "one")
    assert "holds 1 of the root keys" in refused("rotate-key", "--role", "targets", keys=tmp_path / "one")
    assert "is not one of the root key ids" in refused("re-sign-root", "--replace-root-key", "deadbeefdeadbeef")
    assert "--expiry-days 5 is outside 30 to 1095" in refused("re-sign-root", "--expiry-days", "5")
    with pytest.raises(SystemExit) as exit_:
        main(["rotate-key", "--repo", str(repo.repo_dir), "--root-keys-dir", str(tmp_path / "offline"),
              "--role", "root"])
    assert exit_.value.code == 2 and "invalid choice: 'root'" in capsys.readouterr().err
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == written  # nothing was signed
    assert TufRepository(repo.repo_dir).versions()["root"] == 1
