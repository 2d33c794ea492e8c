"""MQTT topic names, built here and nowhere else.

Per-device topics put the device id in one fixed position so the broker's
pattern ACLs (``pattern write rfr/v1/devices/%u/#``) can confine a device to
its own subtree. Acknowledgements from central live in a separate subtree
(``rfr/v1/acks/<device>``): devices may read their own acks but never write
there, and central's ingest, which listens to all of ``devices/+/audit/#``,
never hears its own acks.
"""

from __future__ import annotations

import re

from core.errors import WireFormatError

ROOT = "rfr/v1"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")

AUDIT = "audit"
CHECKPOINT = "checkpoint"
AUDIT_SUBSCRIPTION = f"{ROOT}/devices/+/{AUDIT}"
CHECKPOINT_SUBSCRIPTION = f"{ROOT}/devices/+/{CHECKPOINT}"
# What central's ingest subscribes to. Exact topics are the only valid ones, but ``/#``
# (which also matches the level itself) catches deeper wrong topics too, so they are
# counted as rejected rather than silently never delivered.
INGEST_SUBSCRIPTIONS = (f"{AUDIT_SUBSCRIPTION}/#", f"{CHECKPOINT_SUBSCRIPTION}/#")
PEER_REVIEW_REQUEST = "peer-review/request"
# Requests for peer review are device-written, so they live under devices/<id>/ like the audit.
PEER_REVIEW_REQUEST_SUBSCRIPTION = f"{ROOT}/devices/+/{PEER_REVIEW_REQUEST}"
HEALTH = "health"
# Heartbeats are device-written, so they live under devices/<id>/ too.
HEALTH_SUBSCRIPTION = f"{ROOT}/devices/+/{HEALTH}"


# Names central's own broker clients and certificates use. Mosquitto's client ids are one namespace across
# listeners and a desk's certificate CN is its user name and client id, so a desk enrolled as
# "central-ingest" would take over central's persistent session and its ACL block. No device id may be one.
SERVICE_IDENTITY = "central"


def is_service_identity(name: str) -> bool:
    """True for the names reserved to central: ``central`` and anything beginning ``central-``."""
    return name == SERVICE_IDENTITY or name.startswith(f"{SERVICE_IDENTITY}-")


def validate_device_id(device_id: str) -> str:
    """Device ids become topic levels and certificate names, so no wildcards or slashes."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise WireFormatError(
            f"Device id {device_id!r} is not valid: use 2-63 lower-case letters, digits or hyphens."
        )
    return device_id


def audit_topic(device_id: str) -> str:
    return f"{ROOT}/devices/{validate_device_id(device_id)}/{AUDIT}"


def checkpoint_topic(device_id: str) -> str:
    """Where a device publishes its signed chain checkpoints."""
    return f"{ROOT}/devices/{validate_device_id(device_id)}/{CHECKPOINT}"


def ack_topic(device_id: str) -> str:
    """Where central tells one device how much of its chain is safely stored."""
    return f"{ROOT}/acks/{validate_device_id(device_id)}"


def shared(group: str, subscription: str) -> str:
    """An MQTT v5 shared subscription: each message goes to one member of ``group``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", group):
        raise WireFormatError(f"Shared subscription group {group!r} is not valid.")
    return f"$share/{group}/{subscription}"


def parse_device_topic(topic: str) -> tuple[str, str]:
    """``(device_id, kind)`` for an audit or checkpoint topic; anything else is refused."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/devices" or parts[4] not in (AUDIT, CHECKPOINT):
        raise WireFormatError(f"Topic {topic!r} is not an audit or checkpoint topic.")
    return validate_device_id(parts[3]), parts[4]


def device_from_audit_topic(topic: str) -> str:
    """The device a message claims to come from, taken from its topic."""
    device, kind = parse_device_topic(topic)
    if kind != AUDIT:
        raise WireFormatError(f"Topic {topic!r} is not an audit topic.")
    return device


def library_announce_topic() -> str:
    """The fleet-wide topic central announces new library versions on, retained so a desk that
    connects later still learns of the newest version at once."""
    return f"{ROOT}/fleet/library"


def peer_review_request_topic(device_id: str) -> str:
    """Where a device asks central's facial recognition team for a peer review (device writes)."""
    return f"{ROOT}/devices/{validate_device_id(device_id)}/{PEER_REVIEW_REQUEST}"


def device_from_peer_review_request_topic(topic: str) -> str:
    """The device a peer review request was published by; any other topic is refused."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != f"{ROOT}/devices" or "/".join(parts[4:]) != PEER_REVIEW_REQUEST:
        raise WireFormatError(f"Topic {topic!r} is not a peer review request topic.")
    return validate_device_id(parts[3])


def peer_review_outcome_topic(device_id: str) -> str:
    """Where central sends one device its peer review outcomes: outside devices/, so no device may
    write there (the broker grants devices write only under their own devices/<id>/)."""
    return f"{ROOT}/peer-review/{validate_device_id(device_id)}/outcome"


def health_topic(device_id: str) -> str:
    """Where a device publishes its health heartbeat."""
    return f"{ROOT}/devices/{validate_device_id(device_id)}/{HEALTH}"


def device_from_health_topic(topic: str) -> str:
    """The device a heartbeat was published by; any other topic is refused."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/devices" or parts[4] != HEALTH:
        raise WireFormatError(f"Topic {topic!r} is not a health topic.")
    return validate_device_id(parts[3])


def fleet_command_topic(device_id: str) -> str:
    """Where central sends one device its signed fleet commands (wipe). Under fleet/, which devices
    never write; each device may read only its own commands (the broker's ACL), and the command
    itself names the device and is signed besides."""
    return f"{ROOT}/fleet/commands/{validate_device_id(device_id)}"
