"""Back up central, and restore it into a fresh directory and database: ``python -m central backup|restore``.

A backup is a folder:

- ``database.sqlite`` (SQLite's online backup API: a consistent copy while central runs) or
  ``database.pgdump`` (``pg_dump --format=custom``, restored with ``pg_restore``): audit events, findings,
  heads, the device registry, heartbeats, peer reviews, accounts and sessions, all in the one database;
- ``tuf-repo/``: the TUF repository's metadata and targets (public: desks download them anyway);
- ``secrets.enc``: every secret central's settings name (``central.backup_secrets``): the repository's
  online signing keys (``repo_dir/keys``), the fleet CA folder (``[fleet] ca_dir``, its private keys
  included), the fleet-command key, the peer review key, the library lineage keys (with the retired keys a
  re-key leaves) and the TLS keys and certificates of the web server and the broker client. A tar archive
  sealed with AES-256-GCM under a key derived by scrypt from a passphrase read from a file, so the backup
  can be stored where the database dump is without handing over the keys;
- ``manifest.json``: what is in it, with the SHA-256 of each file; a restore checks every one first.

The offline TUF root keys are not here: they never live on central (``central.publish init``); what else is
left out, and why, is ``central.backup_secrets.NOT_BACKED_UP``.

``restore`` writes into the places a (new) settings file names, each secret to the path the new file gives
the same setting, and refuses to overwrite anything: the database must be empty, the repository, CA and key
paths must not exist, and the new settings must name a place for every secret the backup holds. After a
restore central carries on from where the backup was taken: the audit heads say what each desk's chain
holds, so the ingest stores what desks send next (and counts what it already has as duplicates), and the
repository's versions carry on from the backed-up ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from central.backup_secrets import SecretPlace, secret_places
from central.settings import CentralSettings
from core.errors import CustodyRfrError
from devicekeys.files import write_atomic

FORMAT = 2  # 1 sealed only the TUF keys, the CA and the command key, under other names
MAGIC = b"RFR-BACKUP-SECRETS-1\n"
MIN_PASSPHRASE = 16
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class BackupError(CustodyRfrError):
    """A backup or restore could not be made; the message says what to do."""


def read_passphrase(path: Path) -> bytes:
    """The passphrase's first line; at least 16 characters, so the key archive is not guessable."""
    try:
        text = Path(path).read_text(encoding="utf-8").splitlines()[0].strip() if Path(path).stat().st_size else ""
    except OSError as e:
        raise BackupError(f"cannot read the passphrase file {path}: {e}") from e
    if len(text) < MIN_PASSPHRASE:
        raise BackupError(f"the passphrase in {path} is shorter than {MIN_PASSPHRASE} characters")
    return text.encode()


def _key(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(passphrase)


def seal(data: bytes, passphrase: bytes) -> bytes:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    return MAGIC + salt + nonce + AESGCM(_key(passphrase, salt)).encrypt(nonce, data, MAGIC)


def unseal(blob: bytes, passphrase: bytes) -> bytes:
    if not blob.startswith(MAGIC):
        raise BackupError("secrets.enc is not a custody-rfr key archive")
    body = blob[len(MAGIC):]
    salt, nonce, sealed = body[:16], body[16:28], body[28:]
    try:
        return AESGCM(_key(passphrase, salt)).decrypt(nonce, sealed, MAGIC)
    except InvalidTag as e:
        raise BackupError("the key archive does not open with this passphrase (or it was altered)") from e


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tool(name: str, pg_bin: Path | None) -> str:
    if pg_bin is not None:
        return str(Path(pg_bin) / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not on PATH: install the PostgreSQL client or give --pg-bin")
    return found


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-500:]}")


def _seal_secrets(settings: CentralSettings) -> tuple[bytes, dict[str, dict[str, object]], list[str]]:
    """The key archive (a tar, not yet sealed), what it holds by setting, and the settings whose file is missing.

    Each secret is stored under its setting's name (``fleet.command_key/fleet-command.pem`` and its ``.pub``), so
    a restore can put it where the new settings give that setting. A file two settings name is stored once.
    """
    archive = io.BytesIO()
    held: dict[str, dict[str, object]] = {}
    missing: list[str] = []
    stored: dict[Path, str] = {}
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for place in secret_places(settings):
            if not place.path.exists():
                missing.append(place.setting)
                continue
            same = stored.get(place.path.resolve())
            if same is not None:
                held[place.setting] = {"same_as": same, "file": held[same]["file"]}
                continue
            stored[place.path.resolve()] = place.setting
            tar.add(place.path, arcname=place.setting if place.is_dir else f"{place.setting}/{place.path.name}")
            for sibling in place.sibling_files():
                tar.add(sibling, arcname=f"{place.setting}/{sibling.name}")
            held[place.setting] = {"dir": place.is_dir, "file": place.path.name}
    return archive.getvalue(), held, missing


def back_up(settings: CentralSettings, out: Path, passphrase: bytes, *, pg_bin: Path | None = None) -> dict:
    """Write a backup of ``settings``'s central into the new folder ``out``; returns the manifest."""
    out = Path(out)
    try:
        out.mkdir(parents=True)
    except FileExistsError as e:
        raise BackupError(f"{out} already exists: give a new folder for each backup") from e
    os.chmod(out, 0o700)
    url = settings.database_url
    if url.startswith(("postgresql://", "postgres://")):
        database = out / "database.pgdump"
        _run([_tool("pg_dump", pg_bin), "--format=custom", "--no-owner", "--file", str(database), url])
    else:
        database = out / "database.sqlite"
        source = sqlite3.connect(url.removeprefix("sqlite:///"))
        target = sqlite3.connect(database)
        try:
            source.backup(target)  # a consistent copy, even while central writes
        finally:
            target.close()
            source.close()
    files = [database]
    if settings.publish.repo_dir is not None and settings.publish.repo_dir.is_dir():
        shutil.copytree(settings.publish.repo_dir, out / "tuf-repo", ignore=shutil.ignore_patterns("keys"))
        files += sorted(p for p in (out / "tuf-repo").rglob("*") if p.is_file())
    archive, held, missing = _seal_secrets(settings)
    write_atomic(out / "secrets.enc", seal(archive, passphrase))
    files.append(out / "secrets.enc")
    manifest = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": database.name, "secrets": held, "missing": missing,
                "files": {str(p.relative_to(out)): _sha256(p) for p in files}}
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def _check(src: Path) -> dict:
    try:
        manifest = json.loads((src / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{src} holds no readable manifest.json: not a backup, or an unfinished one") from e
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src} is backup format {manifest.get('format')!r}; this software restores {FORMAT}")
    for name, digest in manifest["files"].items():
        path = src / name
        if not path.is_file() or _sha256(path) != digest:
            raise BackupError(f"{name} in {src} is missing or damaged (SHA-256 differs): nothing was restored")
    return manifest


def _refuse_existing(path: Path | None, what: str) -> None:
    if path is not None and path.exists():
        raise BackupError(f"{what} {path} already exists: restore into a fresh place (nothing was restored)")


def _plan(settings: CentralSettings, manifest: dict) -> list[tuple[str, dict[str, object], SecretPlace]]:
    """Each secret the backup holds with the place the new settings give its setting; refuses before any write
    if a place is missing or already taken (a file inside a folder the restore itself writes is fine)."""
    places = {place.setting: place for place in secret_places(settings)}
    plan = []
    for setting, entry in manifest["secrets"].items():
        place = places.get(setting)
        if place is None:
            raise BackupError(f"the backup holds the secret of setting {setting}, but the new settings name no place "
                              f"for it: set it (to a path that does not exist yet) and restore again (nothing was "
                              f"restored)")
        plan.append((setting, entry, place))
    folders = [place.path for _s, entry, place in plan if entry.get("dir")]
    for setting, entry, place in plan:
        inside = not entry.get("dir") and any(place.path.is_relative_to(folder) for folder in folders)
        if not inside:
            _refuse_existing(place.path, f"the place for {setting},")
    return sorted(plan, key=lambda item: not item[1].get("dir"))  # folders first, then the files in them


def restore(settings: CentralSettings, src: Path, passphrase: bytes, *, pg_bin: Path | None = None) -> dict:
    """Restore the backup in ``src`` into the places ``settings`` names; returns the manifest."""
    src = Path(src)
    manifest = _check(src)
    archive = unseal((src / "secrets.enc").read_bytes(), passphrase)  # before anything is written
    repo = settings.publish.repo_dir
    _refuse_existing(repo if (src / "tuf-repo").is_dir() else None, "the TUF repository")
    plan = _plan(settings, manifest)
    url = settings.database_url
    if manifest["database"] == "database.pgdump":
        if not url.startswith(("postgresql://", "postgres://")):
            raise BackupError("this backup is of a PostgreSQL database: set database = \"postgresql://...\"")
        _run([_tool("pg_restore", pg_bin), "--no-owner", "--exit-on-error", "--single-transaction",
              "--dbname", url, str(src / "database.pgdump")])
    else:
        if url.startswith(("postgresql://", "postgres://")):
            raise BackupError("this backup is of an SQLite database: restore it with an SQLite database setting")
        target = Path(url.removeprefix("sqlite:///"))
        _refuse_existing(target, "the database")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "database.sqlite", target)
    if (src / "tuf-repo").is_dir() and repo is not None:
        shutil.copytree(src / "tuf-repo", repo)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        for setting, entry, place in plan:
            _unpack(tar, str(entry.get("same_as", setting)), entry, place)
    return manifest


def _unpack(tar: tarfile.TarFile, member: str, entry: dict[str, object], place: SecretPlace) -> None:
    """One secret of the key archive into its new place (0700 folders; files keep their 0600 modes); a key file's
    companions (``.pub``, ``.retired-<id>``) follow it under its new name."""
    place.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    members = [m for m in tar.getmembers() if m.name == member or m.name.startswith(member + "/")]
    with tempfile.TemporaryDirectory(dir=place.path.parent) as staging:
        tar.extractall(staging, members=members, filter="data")
        if entry.get("dir"):
            shutil.move(str(Path(staging) / member), place.path)
            os.chmod(place.path, 0o700)
            return
        original = str(entry["file"])
        for item in sorted((Path(staging) / member).iterdir()):
            suffix = item.name[len(original):] if item.name.startswith(original) else ""
            destination = place.path.with_name(place.path.name + suffix)
            if destination.exists():  # written already: inside a restored folder, or a file two settings name
                if destination.read_bytes() != item.read_bytes():
                    raise BackupError(f"{destination} was restored twice with different contents: check that the "
                                      f"new settings do not give two secrets one path")
                continue
            shutil.move(str(item), destination)
