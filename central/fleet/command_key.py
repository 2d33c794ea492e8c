"""Central's fleet-command key as its file holds it now: a running central follows a rotation without a restart.

``python -m central devices rotate-command-key`` replaces the key file (``[fleet] command_key``) in one rename.
The ingest signs every ack and peer review outcome, and the announcer every announcement, with the key it
was given at start; desks that accepted the rotation believe only the new key, so an ingest still signing with
the old one would have its acks refused until someone restarted it. :class:`FollowedCommandKey` *is* an
``Ed25519PrivateKey`` that reads the file again whenever it changed (its inode, size or time), checked at each
signature: one ``stat`` call, cheap beside the signature itself. If the file cannot be read at that moment the
key it last read goes on signing (a desk refuses what it does not trust; nothing is signed with a key nobody
chose).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from central.fleet.revoke import load_command_key
from core.errors import CustodyRfrError
from core.fleet import key_fingerprint

logger = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class FollowedCommandKey(Ed25519PrivateKey):
    """The fleet-command key in ``path``, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._key = load_command_key(self._path)  # first: a missing file is told in plain words
        self._stamp = _stamp(self._path)

    @property
    def current(self) -> Ed25519PrivateKey:
        """The key the file holds now (read again if it changed since the last call)."""
        with self._lock:
            try:
                stamp = _stamp(self._path)
                if stamp != self._stamp:
                    key = load_command_key(self._path)
                    if key_fingerprint(key.public_key()) != key_fingerprint(self._key.public_key()):
                        logger.warning("the fleet-command key in %s changed (rotated): now signing with %s instead "
                                       "of %s", self._path, key_fingerprint(key.public_key()),
                                       key_fingerprint(self._key.public_key()))
                    self._key, self._stamp = key, stamp
            except (OSError, CustodyRfrError) as e:
                logger.error("could not read the fleet-command key %s again (%s); still signing with %s", self._path,
                             e, key_fingerprint(self._key.public_key()))
            return self._key

    # --- Ed25519PrivateKey: each call goes to the key the file holds now ---

    def sign(self, data: bytes) -> bytes:
        return self.current.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self.current.public_key()

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        return self.current.private_bytes(encoding, format, encryption_algorithm)

    def private_bytes_raw(self) -> bytes:
        return self.current.private_bytes_raw()

    def __copy__(self) -> Ed25519PrivateKey:
        return self.current

    def __deepcopy__(self, memo: dict[Any, Any]) -> Ed25519PrivateKey:
        return self.current
