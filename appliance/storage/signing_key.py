"""The device's Ed25519 audit signing key, sealed to the TPM or in a 0600 file beside the device database.

The key is stored through ``devicekeys.keys`` (sealed when the desk's key policy gives a
TPM, else a 0600 file reported as weaker in the health heartbeat). The public half is written
next to it (``audit-signing.pub``, PEM) so provisioning can register it with central
(``python -m central devices register``).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit.checkpoint import public_key_pem
from core.audit.errors import KeyFormatError
from devicekeys.keys import load_or_create_secret
from devicekeys.tpm import Tpm

KEY_NAME = "audit-signing.key"
PUBLIC_NAME = "audit-signing.pub"


def _new_key_text() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes_raw().hex().encode() + b"\n"


def load_or_create_signing_key(data_dir: Path, tpm: Tpm | None = None) -> Ed25519PrivateKey:
    """The device's key, made on first use (sealed to ``tpm`` if given); its public half is (re)written."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_NAME
    secret = load_or_create_secret(path, tpm, _new_key_text)
    try:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret.decode().strip()))
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFormatError(f"The audit signing key {path} is damaged: {e}") from e
    public = data_dir / PUBLIC_NAME
    pem = public_key_pem(key.public_key())
    if not public.exists() or public.read_bytes() != pem:
        public.write_bytes(pem)
    return key
