"""The error families that cross package boundaries.

Every error a person may see carries a message written for them (custody
staff, the RFR team or an auditor), so callers can show ``str(err)`` as is.
"""


class CustodyRfrError(Exception):
    """Base of every error this project raises on purpose."""


class WireFormatError(CustodyRfrError):
    """A message on the wire is malformed, oversized or of an unknown version."""


class SettingsError(CustodyRfrError):
    """The configuration file or environment is invalid; the message names the key."""
