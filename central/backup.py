"""Back up central, and restore it into a fresh directory and database: ``python -m central backup|restore``.

A backup is a folder:

- ``database.sqlite`` (SQLite's online backup API: a consistent copy while central runs) or
  ``database.pgdump`` (``pg_dump --format=custom``, restored with ``pg_restore``): audit events, findings,
  heads, the device registry, heartbeats, peer reviews, accounts and sessions, all in the one database;
- ``tuf-repo/``: the TUF repository's metadata and targets (public: desks download them anyway);
- ``secrets.enc``: the keys, kept apart and encrypted: the repository's online signing keys
  (``repo_dir/keys``), the fleet CA folder (``[fleet] ca_dir``, its private keys included) and the
  fleet-command key. A tar archive sealed with AES-256-GCM under a key derived by scrypt from a passphrase
  read from a file, so the backup can be stored where the database dump is without handing over the keys;
- ``manifest.json``: what is in it, with the SHA-256 of each file; a restore checks every one first.

The offline TUF root keys are not here: they never live on central (``central.publish init``).

``restore`` writes into the places a (new) settings file names and refuses to overwrite anything: the
database must be empty, the repository, CA and key paths must not exist. After a restore central carries
on from where the backup was taken: the audit heads say what each desk's chain holds, so the ingest
stores what desks send next (and counts what it already has as duplicates), and the repository's versions
carry on from the backed-up ones.
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

from central.settings import CentralSettings
from core.errors import CustodyRfrError
from devicekeys.files import write_atomic

FORMAT = 1
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


def _secret_sources(settings: CentralSettings) -> dict[str, Path]:
    """What goes into the encrypted archive, by the name it has there."""
    sources: dict[str, Path] = {}
    if settings.publish.repo_dir is not None and (settings.publish.repo_dir / "keys").is_dir():
        sources["tuf-keys"] = settings.publish.repo_dir / "keys"
    if settings.fleet.ca_dir is not None and settings.fleet.ca_dir.is_dir():
        sources["ca"] = settings.fleet.ca_dir
    if settings.fleet.command_key is not None and settings.fleet.command_key.is_file():
        sources["command-key"] = settings.fleet.command_key
    return sources


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
    archive = io.BytesIO()
    sources = _secret_sources(settings)
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, path in sources.items():
            tar.add(path, arcname=name if path.is_dir() else f"{name}/{path.name}")
            public = path.with_name(path.name + ".pub")
            if name == "command-key" and public.is_file():
                tar.add(public, arcname=f"{name}/{public.name}")
    write_atomic(out / "secrets.enc", seal(archive.getvalue(), passphrase))
    files.append(out / "secrets.enc")
    manifest = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": database.name, "secrets": sorted(sources),
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


def restore(settings: CentralSettings, src: Path, passphrase: bytes, *, pg_bin: Path | None = None) -> dict:
    """Restore the backup in ``src`` into the places ``settings`` names; returns the manifest."""
    src = Path(src)
    manifest = _check(src)
    archive = unseal((src / "secrets.enc").read_bytes(), passphrase)  # before anything is written
    repo, ca, command_key = settings.publish.repo_dir, settings.fleet.ca_dir, settings.fleet.command_key
    _refuse_existing(repo if (src / "tuf-repo").is_dir() else None, "the TUF repository")
    _refuse_existing(ca if "ca" in manifest["secrets"] else None, "the fleet CA folder")
    _refuse_existing(command_key if "command-key" in manifest["secrets"] else None, "the fleet-command key")
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
        for name in manifest["secrets"]:
            _unpack(tar, name, repo, ca, command_key)
    return manifest


def _unpack(tar: tarfile.TarFile, name: str, repo: Path | None, ca: Path | None, command_key: Path | None) -> None:
    """One part of the key archive into its place (0700 folders; files keep their 0600 modes)."""
    place = {"tuf-keys": repo / "keys" if repo else None, "ca": ca,
             "command-key": command_key.parent if command_key else None}.get(name)
    if place is None:
        return
    place.mkdir(parents=True, exist_ok=True, mode=0o700)
    members = [m for m in tar.getmembers() if m.name == name or m.name.startswith(name + "/")]
    with tempfile.TemporaryDirectory(dir=place.parent) as staging:
        tar.extractall(staging, members=members, filter="data")
        for item in (Path(staging) / name).iterdir():
            destination = place / item.name
            if name == "command-key" and command_key is not None:  # under the name the new settings give it
                public = item.name.endswith(".pub")
                destination = command_key.with_name(command_key.name + ".pub") if public else command_key
            shutil.move(str(item), destination)
