"""Private signing keys of TUF roles on disk: written owner-only, read back as signers.

Every repository built on ``tufrepo.repository.SignedRepository`` (central's
library repository, the firmware release repository) keeps its role keys this
way; ``SignedRepository.load_signer`` wraps ``SigningKeyError`` in the
repository's own error family with advice for its own operators.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from core.errors import CustodyRfrError
from core.files import atomic_write


class SigningKeyError(CustodyRfrError):
    """A key file is missing or is not an unencrypted PEM private key."""


def write_private_key(path: Path, signer: CryptoSigner) -> None:
    """Write the key readable by its owner only, in a folder only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    atomic_write(path, signer.private_bytes, mode=0o600)


def load_signer(path: Path) -> CryptoSigner:
    """A signer from a PEM (PKCS#8) key file written by ``write_private_key``."""
    try:
        return CryptoSigner(load_pem_private_key(Path(path).read_bytes(), None))
    except FileNotFoundError as e:
        raise SigningKeyError(f"Key file {path} does not exist.") from e
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"Key file {path} is not an unencrypted PEM private key: {e}") from e
