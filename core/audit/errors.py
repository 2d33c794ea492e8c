"""Errors of the audit trail's rules (both are ``CustodyRfrError`` so callers catch one family)."""

from core.errors import CustodyRfrError


class SignatureError(CustodyRfrError):
    """A checkpoint's signature does not verify with the device's registered key."""


class KeyFormatError(CustodyRfrError):
    """A public or private key is not an Ed25519 key in a form we read."""
