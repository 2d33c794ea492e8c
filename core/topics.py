"""MQTT topic names, built here and nowhere else.

Per-device topics put the device id in one fixed position so the broker's
pattern ACLs (``pattern write rfr/v1/devices/%u/#``) can confine a device to
its own subtree.
"""

import re

from core.errors import WireFormatError

ROOT = "rfr/v1"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")

AUDIT_SUBSCRIPTION = f"{ROOT}/devices/+/audit"


def validate_device_id(device_id: str) -> str:
    """Device ids become topic levels and certificate names, so no wildcards or slashes."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise WireFormatError(
            f"Device id {device_id!r} is not valid: use 2-63 lower-case letters, digits or hyphens."
        )
    return device_id


def audit_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{validate_device_id(device_id)}/audit"


def device_from_audit_topic(topic: str) -> str:
    """The device a message claims to come from, taken from its topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/devices" or parts[4] != "audit":
        raise WireFormatError(f"Topic {topic!r} is not an audit topic.")
    return validate_device_id(parts[3])
