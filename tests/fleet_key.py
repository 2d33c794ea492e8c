"""Central's fleet-command key for tests: one fixed key, so a test central and its test desks agree.

Central signs its acks, peer review outcomes, announcements and fleet commands with it, and a desk
believes none of them without it (``core.signed``); ``FORGER`` is any other key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

COMMAND_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"custody-rfr test fleet-command key").digest())
CENTRAL_PUBLIC = COMMAND_KEY.public_key()
FORGER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"custody-rfr test forger key").digest())


def write_command_key(directory: Path) -> tuple[Path, Path]:
    """The key as central's ``[fleet] command_key`` file (0600 PEM) and the desk's public half beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "fleet-command.pem", directory / "fleet-command.pem.pub"
    private.write_bytes(COMMAND_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(CENTRAL_PUBLIC.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
