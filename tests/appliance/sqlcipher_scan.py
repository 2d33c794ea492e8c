"""Decrypt every page of a SQLCipher 4 file (and its WAL) to search them for leftover bytes.

The device database is encrypted, so searching the raw file for probe bytes
would prove nothing: they are never there in plaintext. This reads each page
as SQLCipher wrote it (raw key, AES-256-CBC, 4096-byte pages with an 80-byte
reserve holding the IV and HMAC; page 1 starts with the 16-byte salt) and
decrypts it, live rows, freed pages and slack alike, so a deleted row that
was not wiped would be found.
"""

from __future__ import annotations

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


def database_plaintext(path: Path, key: bytes) -> bytes:
    data = Path(path).read_bytes() if Path(path).exists() else b""
    return b"".join(_decrypt(data[i:i + PAGE], key, i == 0) for i in range(0, len(data) - PAGE + 1, PAGE))


def wal_plaintext(path: Path, key: bytes) -> bytes:
    data = Path(path).read_bytes() if Path(path).exists() else b""
    out, i = [], WAL_HEADER
    while i + FRAME_HEADER + PAGE <= len(data):
        page_no = int.from_bytes(data[i:i + 4], "big")
        out.append(_decrypt(data[i + FRAME_HEADER:i + FRAME_HEADER + PAGE], key, page_no == 1))
        i += FRAME_HEADER + PAGE
    return b"".join(out)
