"""Open SQLCipher databases with a raw 256-bit key.

A raw key (``x'..'``) skips PBKDF2, so opening a large library takes
milliseconds instead of seconds; the key is random, so stretching adds
nothing. SQLCipher authenticates every page with HMAC-SHA512, so a file
edited without the key fails to read instead of yielding altered data.

The page size and HMAC algorithm are set explicitly (they equal SQLCipher 4's
defaults) so a future SQLCipher whose defaults change still reads our files;
docs/library-format.md explains each setting.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import sqlcipher3

from library.errors import SnapshotError, SnapshotKeyError
from library.files import copy_ciphertext, durable_replace

KEY_BYTES = 32
PAGE_SIZE = 4096
HMAC_ALGORITHM = "HMAC_SHA512"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key_file(path: Path, key: bytes) -> None:
    """Store a key as hex, readable by its owner only (file fallback until keys are sealed to a TPM)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    os.chmod(path, 0o600)


def read_key_file(path: Path) -> bytes:
    try:
        text = Path(path).read_text().strip()
        key = bytes.fromhex(text)
    except FileNotFoundError as e:
        raise SnapshotKeyError(f"The library key file {path} does not exist.") from e
    except ValueError as e:
        raise SnapshotKeyError(f"The library key file {path} is not a hex key.") from e
    if len(key) != KEY_BYTES:
        raise SnapshotKeyError(f"The library key in {path} is {len(key)} bytes; {KEY_BYTES} are needed.")
    return key


def connect(path: Path, key: bytes, *, create: bool = False, read_only: bool = False) -> sqlcipher3.Connection:
    """A connection whose first read proves the key is right, or a SnapshotKeyError.

    ``read_only`` opens the file read-only at the OS level (SQLite's
    ``mode=ro``): a serving snapshot is never written, so a bug or a stray
    statement cannot change it under the desk.
    """
    path = Path(path)
    if not create and not path.exists():
        raise SnapshotError(f"The library file {path} does not exist.")
    if len(key) != KEY_BYTES:
        raise SnapshotKeyError(f"A library key must be {KEY_BYTES} bytes.")
    if read_only:
        conn = sqlcipher3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlcipher3.connect(str(path), check_same_thread=False)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA cipher_page_size = {PAGE_SIZE}")
    conn.execute(f"PRAGMA cipher_hmac_algorithm = {HMAC_ALGORITHM}")
    # Wipe freed memory and deleted pages; sorting and temp tables stay in RAM, never in temp files.
    conn.execute("PRAGMA cipher_memory_security = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as e:
        conn.close()
        raise SnapshotKeyError(
            f"The library file {path.name} cannot be opened with this key: the key is wrong "
            f"or the file is damaged. Reinstall the library from central."
        ) from e
    return conn


def rekey_copy(src: Path, dst: Path, old_key: bytes, new_key: bytes) -> None:
    """``dst``: a copy of ``src`` re-encrypted under ``new_key`` (SQLCipher ``PRAGMA rekey``); ``src`` is untouched.

    The copy is made and re-keyed under a temporary name and renamed into place only once it opens with the
    new key, so a crash leaves either no ``dst`` or a complete one. Every page is rewritten, so nothing of the
    copy opens with ``old_key`` afterwards.
    """
    dst = Path(dst)
    part = dst.with_name(dst.name + ".rekey")
    try:
        copy_ciphertext(Path(src), part)
        conn = connect(part, old_key)
        try:
            conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
        finally:
            conn.close()
        connect(part, new_key, read_only=True).close()
        durable_replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
