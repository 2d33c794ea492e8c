"""Password hashing shared by the desk and central, so both store one format.

scrypt (``hashlib``, no extra dependency) at N=2**15, r=8, p=1: about 32 MB and
tens of milliseconds per check, which makes guessing a copied hash slow while a
sign-in stays instant. The stored form is ``scrypt$N$r$p$salt$hash`` (hex), the
format ``core.desk_config.PASSWORD_HASH`` accepts, so a hash made anywhere can
be verified anywhere. ``DUMMY_HASH`` lets a sign-in for an unknown username
cost the same hash as a known one, so timing does not reveal which accounts exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P, DKLEN = 2**15, 8, 1, 32
MAXMEM = 64 * 1024 * 1024


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=DKLEN, maxmem=MAXMEM)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True only for the right password; a malformed or foreign hash is a refusal, never an exception."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                  dklen=len(bytes.fromhex(digest)), maxmem=MAXMEM)
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest))


DUMMY_HASH = hash_password(secrets.token_hex(16))
