"""The device keys' one error: every message says what a technician can do about it."""

from __future__ import annotations

from core.errors import CustodyRfrError


class KeyProtectionError(CustodyRfrError):
    """A key cannot be sealed or unsealed (no TPM where one was used, tools failing, damaged blobs)."""
