"""The desk's key-wrapping key: the X25519 key central wraps library and configuration keys to.

Made on the desk at provisioning, beside its TLS key (``<data_dir>/pki/library-wrap.key``), and
stored like every device secret (``devicekeys.keys``): sealed to the TPM under its PCR and
authorisation policy, or a 0600 file reported as weaker. Only the public half leaves the desk
(``library-wrap.pub``, 64 hex digits), to be registered at central with the desk
(``python -m central devices register --wrap-key``). Whoever holds the private half opens every
library key central wrapped for this desk, so it is never written anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from core.errors import WireFormatError
from core.keywrap import public_key_from_hex, public_key_hex
from devicekeys.errors import KeyProtectionError
from devicekeys.files import write_atomic
from devicekeys.keys import load_or_create_secret, protection
from devicekeys.tpm import Tpm

KEY_NAME = "library-wrap.key"
PUBLIC_SUFFIX = ".pub"


def default_path(data_dir: Path) -> Path:
    """Where provisioning makes the key and the desk looks for it: beside the TLS key in ``pki/``."""
    return Path(data_dir) / "pki" / KEY_NAME


def public_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name.removesuffix(".key") + PUBLIC_SUFFIX)


def _new_key_text() -> bytes:
    return X25519PrivateKey.generate().private_bytes_raw().hex().encode() + b"\n"


def load_or_create_wrapping_key(path: Path, tpm: Tpm | None) -> X25519PrivateKey:
    """The desk's key (made on first use; a file key moves into ``tpm`` if given); its public half is (re)written."""
    secret = load_or_create_secret(Path(path), tpm, _new_key_text)
    try:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(secret.decode().strip()))
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyProtectionError(f"The key-wrapping key {path} is damaged; re-provision the desk.") from e
    text = public_key_hex(key.public_key()) + "\n"
    public = public_path(path)
    if not public.exists() or public.read_text() != text:
        write_atomic(public, text.encode())
    return key


def exists(path: Path) -> bool:
    """Whether a key-wrapping key was made here (in either form)."""
    try:
        protection(path)
    except KeyProtectionError:
        return False
    return True


def read_public_key(path: Path) -> X25519PublicKey:
    """A desk's public key-wrapping key from its ``library-wrap.pub`` (what central registers)."""
    try:
        return public_key_from_hex(Path(path).read_text().strip())
    except OSError as e:
        raise KeyProtectionError(f"Cannot read the key-wrapping public key {path} ({e.strerror}).") from e
    except WireFormatError as e:
        raise KeyProtectionError(f"{path} is not a key-wrapping public key (64 hex digits).") from e
