"""Errors opening or searching a library snapshot, worded for the people who see them."""

from core.errors import CustodyRfrError


class SnapshotError(CustodyRfrError):
    """The snapshot cannot be used (missing, wrong key, damaged, incompatible)."""


class SnapshotKeyError(SnapshotError):
    """The key does not open the snapshot (wrong key or a damaged file)."""


class EmbedderMismatchError(SnapshotError):
    """Templates from one face model cannot be compared with another's."""
