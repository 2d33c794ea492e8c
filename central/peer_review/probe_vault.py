"""Where a peer review's probe waits at central: outside the database, each under a key of its own.

The ingest opens a request's sealed probe with central's review key and puts the JPEG here: encrypted
(AES-256-GCM, the request id as associated data) under a fresh random key, the ciphertext in
``<request_id>.probe`` and the key in ``<request_id>.key``, both 0600 in a 0700 folder. The plaintext
is never written anywhere; the reviewer's page decrypts it in memory for each request.

Why not the database: a row deleted from PostgreSQL lives on in dead tuples and WAL segments until
vacuumed and recycled, and from SQLite in freed pages and its WAL, so its deletion cannot be shown.
Files can be: ``destroy`` overwrites the key and the ciphertext with random bytes, fsyncs, unlinks both
and fsyncs the folder, then checks neither name is there. With the key gone, any copy of the ciphertext
(a backup of this folder, a block the file system did not reuse) can no longer be read.
What no software can prove is that the storage device itself kept no old block (SSD wear levelling,
a journalling file system's copies of the key's 32 bytes); docs/desk-workflow.md says so.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import CustodyRfrError
from core.files import fsync_file

logger = logging.getLogger(__name__)

_NONCE = 12
_AAD = b"rfr-central-review-probe-v1\x00"


class ProbeVaultError(CustodyRfrError):
    """A held probe cannot be read (its files were altered or half-removed) or the folder is unusable."""


@dataclass(frozen=True)
class Destruction:
    """What ``destroy`` did, for the peer review log: which files were overwritten and removed."""

    request_id: str
    removed: tuple[str, ...]

    @property
    def held(self) -> bool:
        return bool(self.removed)

    def describe(self) -> str:
        if not self.removed:
            return "nothing was held"
        return (f"overwritten with random bytes, removed and checked absent: {', '.join(self.removed)}; "
                "the image was never written in plaintext")


def _request_id(value: str) -> str:
    """Request ids name files, so only a canonical UUID is accepted."""
    try:
        if str(uuid.UUID(value)) != value:
            raise ValueError(value)
    except (ValueError, TypeError, AttributeError) as e:
        raise ProbeVaultError(f"{value!r} is not a peer review request id.") from e
    return value


class ProbeVault:
    """The folder of held probes (``[peer_review] probe_dir``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.chmod(0o700)
        except OSError as e:
            raise ProbeVaultError(f"The probe folder {self.folder} cannot be used ({e.strerror}).") from e

    def _paths(self, request_id: str) -> tuple[Path, Path]:
        rid = _request_id(request_id)
        return self.folder / f"{rid}.key", self.folder / f"{rid}.probe"

    def put(self, request_id: str, image: bytes) -> None:
        """Hold ``image`` for the request, encrypted under a new key; a probe already held is kept as it is."""
        key_path, data_path = self._paths(request_id)
        if key_path.exists() and data_path.exists():
            return
        key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(_NONCE)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, image, _AAD + request_id.encode())
        # The ciphertext first, the key last: a crash in between leaves an unreadable file, never a readable one.
        _write_private(data_path, ciphertext)
        _write_private(key_path, key)

    def held(self, request_id: str) -> bool:
        key_path, data_path = self._paths(request_id)
        return key_path.exists() and data_path.exists()

    def get(self, request_id: str) -> bytes | None:
        """The image, decrypted in memory; None if no probe is held for the request (never sent, or destroyed)."""
        key_path, data_path = self._paths(request_id)
        try:
            key, blob = key_path.read_bytes(), data_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], _AAD + request_id.encode())
        except (InvalidTag, ValueError) as e:
            raise ProbeVaultError(f"The held probe of request {request_id} does not decrypt: its files were "
                                  "altered.") from e

    def destroy(self, request_id: str) -> Destruction:
        """Overwrite, remove and check absent both files of the request's probe (safe to repeat)."""
        removed = []
        for path in self._paths(request_id):
            if _shred(path):
                removed.append(path.name)
        fsync_file(self.folder)  # the folder's entry list: the unlinks are durable
        left = [p.name for p in self._paths(request_id) if p.exists()]
        if left:
            raise ProbeVaultError(f"The probe files {', '.join(left)} are still present after removal.")
        return Destruction(request_id, tuple(removed))

    def request_ids(self) -> list[str]:
        """Every request with a file in the folder (whole or half-written), for the sweep; a temporary file
        left by a crash mid-write is overwritten and removed here."""
        for leftover in self.folder.glob("*.tmp"):
            _shred(leftover)
        names = {p.stem for p in self.folder.iterdir() if p.suffix in (".key", ".probe")}
        out = []
        for name in sorted(names):
            try:
                out.append(_request_id(name))
            except ProbeVaultError:
                logger.warning("ignoring %s in the probe folder: not a request's file", name)
        return out


def _write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file in full and fsync it (the name appears only once the bytes are there)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _shred(path: Path) -> bool:
    """Overwrite the file's bytes in place with random bytes, fsync, then unlink; False if it was not there."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        _write_all(fd, secrets.token_bytes(os.fstat(fd).st_size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
