"""The provisioning error family: every message says what a technician can do about it.

A key that cannot be sealed or unsealed is ``devicekeys.errors.KeyProtectionError``, raised by the key code
the desk runs as well.
"""

from __future__ import annotations

from core.errors import CustodyRfrError


class ProvisioningError(CustodyRfrError):
    """Base of every error this package raises on purpose."""


class CaError(ProvisioningError):
    """The fleet CA's files are missing, damaged or would be overwritten."""


class TokenError(ProvisioningError):
    """An enrolment token is unknown, expired or already used."""


class RequestError(ProvisioningError):
    """A certificate request is malformed, badly signed, of the wrong key type or for the wrong device."""


class BundleError(ProvisioningError):
    """What central sent the device does not belong to this device or does not chain to the fleet CA."""
