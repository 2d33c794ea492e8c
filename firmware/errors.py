"""The firmware error families: what the release tooling and the update agent raise on purpose."""

from __future__ import annotations

from core.errors import CustodyRfrError


class FirmwareError(CustodyRfrError):
    """Base of firmware errors; the message says what a person should do."""


class ReleaseError(FirmwareError):
    """A release bundle cannot be built or published as asked."""


class BundleError(FirmwareError):
    """A bundle's contents do not match its manifest (or the manifest is malformed)."""


class UpdateRefusedError(FirmwareError):
    """The agent refused an offered release; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UpdateUnavailableError(FirmwareError):
    """Central could not be reached; the agent tries again on its next run."""


class HealthCheckError(FirmwareError):
    """The newly installed slot failed its health check; the agent stays on the running slot."""


class SlotError(FirmwareError):
    """The slot layout on disk is not usable (e.g. no complete slot to roll back to)."""
