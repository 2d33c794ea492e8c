"""Errors opening or searching a library snapshot, worded for the people who see them."""

from core.errors import CustodyRfrError


class SnapshotError(CustodyRfrError):
    """The snapshot cannot be used (missing, wrong key, damaged, incompatible)."""


class SnapshotKeyError(SnapshotError):
    """The key does not open the snapshot (wrong key or a damaged file)."""


class EmbedderMismatchError(SnapshotError):
    """Templates from one face model cannot be compared with another's."""


class DeltaError(SnapshotError):
    """A delta file cannot be applied (not a delta, damaged, or for another library)."""


class DeltaBaseMismatchError(DeltaError):
    """The delta was made against a library version other than the one installed."""


class DeltaResultMismatchError(DeltaError):
    """Applying the delta did not reproduce the library central signed; nothing was installed."""


class DeltaApplyError(DeltaError):
    """The process applying a delta stopped or failed before it finished; nothing was installed."""


class VersionRollbackError(SnapshotError):
    """A library version that is not newer than the installed one: versions only move forward."""


class LibraryStoreError(SnapshotError):
    """The device's library folder has no usable library installed."""
