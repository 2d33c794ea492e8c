"""Device secrets (the SQLCipher key, the TLS private key) sealed to the TPM, or in a 0600 file.

A secret is named by the path it would have as a file. Sealed, it lives as ``<path>.tpm-pub``
and ``<path>.tpm-priv`` and only this device's TPM can open it, and only while the policy recorded
in ``<path>.tpm-policy`` holds (PCR values of measured boot and the device's authorisation value,
``devicekeys.tpm.SealPolicy``); without a TPM it is the file itself, mode 0600, readable by anyone
who gets the disk. That fallback is weaker, so :func:`protection` reports it and the device's
health must show it.

Once a secret is sealed it is never silently read from elsewhere: if the TPM is gone, unsealing
fails rather than falling back.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devicekeys.errors import KeyProtectionError
from devicekeys.files import write_private
from devicekeys.tpm import DEFAULT_PCRS, SealPolicy, Tpm, find_tcti

MODE_TPM = "tpm"
MODE_FILE = "file"
#: The per-device secret a TPM authorisation value is derived from, in the desk's data folder.
AUTH_FILE_NAME = "tpm-auth.secret"


@dataclass(frozen=True)
class KeyProtection:
    """How one secret is protected, for the device's health report."""

    mode: str  # "tpm" or "file"
    weaker: bool

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "weaker": self.weaker}


def _blobs(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    return path.with_name(path.name + ".tpm-pub"), path.with_name(path.name + ".tpm-priv")


def _policy_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".tpm-policy")


def _write_policy(path: Path, policy: SealPolicy) -> None:
    record = {"pcrs": policy.pcrs, "auth_file": str(Path(policy.auth_file).resolve()) if policy.auth_file else None}
    write_private(_policy_path(path), json.dumps(record).encode() + b"\n")


def sealed_policy(path: Path) -> SealPolicy | None:
    """The policy a sealed secret was sealed under; None for a key sealed before policies existed."""
    try:
        record = json.loads(_policy_path(path).read_text())
        pcrs, auth = record["pcrs"], record["auth_file"]
        if not (pcrs is None or isinstance(pcrs, str)) or not (auth is None or isinstance(auth, str)):
            raise ValueError("wrong types")
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise KeyProtectionError(f"The TPM policy record {_policy_path(path)} is damaged ({e}); "
                                 "re-provision this key.") from e
    return SealPolicy(pcrs=pcrs, auth_file=Path(auth) if auth else None)


def device_auth_file(data_dir: Path) -> Path:
    """The desk's TPM authorisation secret (32 random bytes, 0600), made on first use."""
    path = Path(data_dir) / AUTH_FILE_NAME
    if not path.exists():
        write_private(path, secrets.token_bytes(32))
    return path


def open_tpm(tcti: str | None = None, *, allow: bool = True, auth_file: Path | None = None,
             pcrs: str | None = DEFAULT_PCRS) -> Tpm | None:
    """The TPM to seal to, or None for the file fallback (none present, or ``allow`` is False).

    New secrets are sealed under PCR ``pcrs`` and, with ``auth_file``, the authorisation value from it.
    """
    found = find_tcti(tcti) if allow else None
    return Tpm(found, SealPolicy(pcrs=pcrs, auth_file=auth_file)) if found else None


def seal_secret(path: Path, secret: bytes, tpm: Tpm | None) -> KeyProtection:
    """Store ``secret`` under ``path``: sealed if a TPM is given, else as a 0600 file.

    The other form is removed afterwards, so exactly one copy remains.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    public, private = _blobs(path)
    if tpm is not None:
        _write_policy(path, tpm.policy)  # first: blobs are never left without the policy that opens them
        tpm.seal(secret, public, private)
        path.unlink(missing_ok=True)
        return protection(path)
    write_private(path, secret)
    for blob in (public, private, _policy_path(path)):
        blob.unlink(missing_ok=True)
    return protection(path)


def unseal_secret(path: Path, tpm: Tpm | None = None) -> bytes:
    """The secret stored under ``path`` by :func:`seal_secret`."""
    path = Path(path)
    public, private = _blobs(path)
    if public.exists() and private.exists():
        tpm = tpm or open_tpm()
        if tpm is None:
            raise KeyProtectionError(f"{path} is sealed to a TPM but no TPM is reachable here "
                                     "(set TPM2TOOLS_TCTI or check /dev/tpmrm0).")
        return tpm.unseal(public, private, sealed_policy(path))
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise KeyProtectionError(f"No key at {path} (neither sealed nor a file): run device-keygen.") from e


def seal_private_key(path: Path, key: ec.EllipticCurvePrivateKey, tpm: Tpm | None) -> KeyProtection:
    """Store an EC P-256 private key: as its 32-byte scalar when sealed (a TPM seals at most 128 bytes, a PEM is
    about 240), as a PEM file otherwise (so OpenSSL and paho can read the fallback file directly)."""
    if tpm is not None:
        return seal_secret(path, key.private_numbers().private_value.to_bytes(32, "big"), tpm)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return seal_secret(path, pem, None)


def private_key_pem(path: Path, tpm: Tpm | None = None) -> bytes:
    """The private key stored by :func:`seal_private_key`, as PKCS#8 PEM in memory."""
    secret = unseal_secret(path, tpm)
    if secret.startswith(b"-----BEGIN"):
        return secret
    if len(secret) != 32:
        raise KeyProtectionError(f"The key sealed at {path} is not a P-256 key ({len(secret)} bytes).")
    key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def protection(path: Path) -> KeyProtection:
    """How the secret at ``path`` is protected now (for health); a missing secret is an error."""
    public, private = _blobs(Path(path))
    if public.exists() and private.exists():
        return KeyProtection(MODE_TPM, weaker=False)
    if Path(path).exists():
        return KeyProtection(MODE_FILE, weaker=True)
    raise KeyProtectionError(f"No key at {path}: nothing to report.")


def fingerprint(secret: bytes) -> str:
    """A short SHA-256 fingerprint: lets a technician compare secrets without showing them."""
    return hashlib.sha256(secret).hexdigest()[:16]


POLICIES = ("auto", "tpm", "file")


def tpm_for_policy(policy: str, tcti: str | None = None, *, data_dir: Path | None = None,
                   pcrs: str | None = DEFAULT_PCRS) -> Tpm | None:
    """The TPM new secrets are sealed to under a desk's ``[keys] protection`` setting.

    With ``data_dir`` each secret is sealed under PCR ``pcrs`` AND the authorisation value derived from the
    desk's ``tpm-auth.secret`` there (made on first use); without, under the PCRs only.

    ``auto`` seals when a TPM is reachable and falls back to 0600 files otherwise (reported as weaker);
    ``tpm`` refuses to start without one, so a desk that must seal never quietly writes plaintext keys;
    ``file`` never seals (development machines).
    """
    if policy not in POLICIES:
        raise KeyProtectionError(f"Key protection {policy!r} is not one of {', '.join(POLICIES)}.")
    if policy == MODE_FILE:
        return None
    found = find_tcti(tcti)
    auth_file = device_auth_file(data_dir) if found and data_dir is not None else None
    tpm = Tpm(found, SealPolicy(pcrs=pcrs, auth_file=auth_file)) if found else None
    if tpm is None and policy == MODE_TPM:
        raise KeyProtectionError("[keys] protection is 'tpm' but no TPM is reachable "
                                 "(set TPM2TOOLS_TCTI or check /dev/tpmrm0 and tpm2-tools).")
    return tpm


def load_or_create_secret(path: Path, tpm: Tpm | None, make: Callable[[], bytes]) -> bytes:
    """The secret under ``path``, made with ``make`` on first use; a file secret moves into ``tpm`` if given.

    Moving is seal-then-unlink (:func:`seal_secret`), so a crash in between leaves the sealed copy and a
    file that the next start removes again; there is never a moment with no copy at all.
    """
    public, private = _blobs(Path(path))
    if public.exists() and private.exists():
        secret = unseal_secret(path, tpm)
        Path(path).unlink(missing_ok=True)  # left by a crash while moving into the TPM
        return secret
    if Path(path).exists():
        secret = Path(path).read_bytes()
        if tpm is not None:
            seal_secret(path, secret, tpm)
        return secret
    secret = make()
    seal_secret(path, secret, tpm)
    return secret


def destroy_secret(path: Path) -> None:
    """Remove a secret in either form (device wipe). A file is overwritten first; a sealed blob is useless
    without this TPM anyway, so removing it is enough."""
    path = Path(path)
    for candidate in (path, *_blobs(path), _policy_path(path)):
        if candidate.exists():
            size = candidate.stat().st_size
            with open(candidate, "r+b") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
            candidate.unlink()
