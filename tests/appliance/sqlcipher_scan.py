"""Every decrypted page of a SQLCipher file (and its WAL) as one byte string, for tests that search for leftovers.

The decryption is the desk's own (``appliance.storage.page_scan``, which proves a library's destruction), so
the probe-deletion tests and the desk's proof read pages the same way.
"""

from __future__ import annotations

from pathlib import Path

from appliance.storage.page_scan import database_pages, wal_pages


def database_plaintext(path: Path, key: bytes) -> bytes:
    return b"".join(database_pages(path, key))


def wal_plaintext(path: Path, key: bytes) -> bytes:
    return b"".join(wal_pages(path, key))
