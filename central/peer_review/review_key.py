"""Central's review key: the X25519 key desks seal a peer review's probe to (``core.review_probe``).

Made once on central (``python -m central.peer_review review-key --out PATH``): the private half in a
0600 file, read only by the ingest, which opens each probe as it arrives; the public half (``PATH.pub``,
64 hex digits) is copied to every desk as ``[peer_review] central_review_key``. The web processes never
need it: they read probes from the vault, where each is under a key of its own.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from core.errors import SettingsError
from core.keywrap import public_key_hex
from devicekeys.files import write_atomic

PUBLIC_SUFFIX = ".pub"


def public_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + PUBLIC_SUFFIX)


def make_review_key(path: Path) -> X25519PrivateKey:
    """A new key at ``path`` (0600) and its public half at ``path.pub``; an existing key is never replaced,
    since every desk seals to its public half."""
    path = Path(path)
    if path.exists():
        raise SettingsError(f"{path} exists already: a new review key would leave every desk sealing to the old "
                            "one. Remove it deliberately first if the key must change.")
    key = X25519PrivateKey.generate()
    write_atomic(path, key.private_bytes_raw().hex().encode() + b"\n", mode=0o600)
    write_atomic(public_path(path), (public_key_hex(key.public_key()) + "\n").encode())
    return key


def load_review_key(path: Path | None) -> X25519PrivateKey | None:
    """The review key from ``[peer_review] review_key``; None if unset; a clear ``SettingsError`` if unusable."""
    if path is None:
        return None
    try:
        return X25519PrivateKey.from_private_bytes(bytes.fromhex(Path(path).read_text().strip()))
    except OSError as e:
        raise SettingsError(f"[peer_review] review_key {path} cannot be read ({e.strerror}); make it with "
                            "python -m central.peer_review review-key --out PATH.") from e
    except ValueError as e:
        raise SettingsError(f"[peer_review] review_key {path} is not a review key (64 hex digits).") from e
