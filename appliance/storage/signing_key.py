"""The device's Ed25519 audit signing key, in a 0600 file beside the device database.

A file is the stand-in until the fleet work seals the key to a TPM; the public
half is written next to it (``audit-signing.pub``, PEM) so provisioning can
register it with central (``python -m central devices register``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit.checkpoint import public_key_pem
from core.audit.errors import KeyFormatError

KEY_NAME = "audit-signing.key"
PUBLIC_NAME = "audit-signing.pub"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # atomic: a crash never leaves half a key


def load_or_create_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The device's key, made on first use; its public half is (re)written for provisioning."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_NAME
    if path.exists():
        try:
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
        except ValueError as e:
            raise KeyFormatError(f"The audit signing key {path} is damaged: {e}") from e
    else:
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes_raw()
        _write_private(path, raw.hex().encode() + b"\n")
    public = data_dir / PUBLIC_NAME
    pem = public_key_pem(key.public_key())
    if not public.exists() or public.read_bytes() != pem:
        public.write_bytes(pem)
    return key
