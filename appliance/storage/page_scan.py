"""Decrypt every page of a SQLCipher 4 file (and its WAL) and search them for bytes that must be gone.

The proof that data was destroyed cannot be a search of the raw files: everything the desk keeps is
encrypted, so the bytes would never be found there even if they were still present. This reads each
page as SQLCipher wrote it (raw key, AES-256-CBC, 4096-byte pages with an 80-byte reserve holding the IV
and HMAC; page 1 starts with the 16-byte salt) and decrypts it, live rows, freed pages and slack alike,
the same pages the probe-deletion tests search (tests/appliance/sqlcipher_scan.py), so a deleted row that was not wiped
would be found. Used by the desk itself when it destroys a library (``services.library_expiry``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAGE = 4096
RESERVE = 80
WAL_HEADER, FRAME_HEADER = 32, 24


def _decrypt(page: bytes, key: bytes, first: bool) -> bytes:
    iv = page[PAGE - RESERVE:PAGE - RESERVE + 16]
    body = page[16 if first else 0:PAGE - RESERVE]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(body) + decryptor.finalize()


def database_pages(path: Path, key: bytes) -> list[bytes]:
    data = Path(path).read_bytes() if Path(path).exists() else b""
    return [_decrypt(data[i:i + PAGE], key, i == 0) for i in range(0, len(data) - PAGE + 1, PAGE)]


def wal_pages(path: Path, key: bytes) -> list[bytes]:
    data = Path(path).read_bytes() if Path(path).exists() else b""
    out, i = [], WAL_HEADER
    while i + FRAME_HEADER + PAGE <= len(data):
        page_no = int.from_bytes(data[i:i + 4], "big")
        out.append(_decrypt(data[i + FRAME_HEADER:i + FRAME_HEADER + PAGE], key, page_no == 1))
        i += FRAME_HEADER + PAGE
    return out


@dataclass
class ScanReport:
    """What a scan looked at and how many markers it found (a proof needs ``found == 0``)."""

    databases: int = 0
    pages: int = 0
    wal_frames: int = 0
    plain_files: int = 0
    plain_bytes: int = 0
    found: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _hits(blob: bytes, markers: Iterable[bytes]) -> int:
    return sum(1 for m in markers if m and m in blob)


def scan_database(report: ScanReport, path: Path, key: bytes, markers: list[bytes]) -> None:
    """Decrypted pages of ``path`` and of its ``-wal``, searched for every marker."""
    pages = database_pages(path, key)
    wal = wal_pages(Path(str(path) + "-wal"), key)
    report.databases += 1
    report.pages += len(pages)
    report.wal_frames += len(wal)
    report.found += _hits(b"".join(pages), markers) + _hits(b"".join(wal), markers)


def scan_plain(report: ScanReport, folder: Path, markers: list[bytes], skip: Iterable[Path] = ()) -> None:
    """Every file under ``folder`` as stored (a leftover copy of a ciphertext, a download, a key file)."""
    skipped = {Path(p).resolve() for p in skip}
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.is_symlink() or path.resolve() in skipped:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        report.plain_files += 1
        report.plain_bytes += len(data)
        report.found += _hits(data, markers)
