"""Fleet wire models: the desks' health heartbeat and central's signed commands to one desk.

Both are pure data with strict parsing (exact field set, types, ranges, a size cap), like the
audit event: a malformed message is refused with a reason, never half-used.

A command (``wipe``; ``resend``: send again the audit events logged since ``since``, which central lost
when it was restored from a backup; or ``rekey``: from now on trust ``new_key`` instead, central's rotated
fleet-command key, signed with the key being replaced) is signed with central's fleet-command Ed25519 key, whose
public half each desk receives at provisioning (``core.signed``, the same key and rule as central's
acks, peer review outcomes and announcements). The signed statement is labelled, names the
one device it is for, when it was issued and a random nonce, so the desk can refuse a
forgery, a command meant for another desk, a stale one and a replay (:class:`NonceLedger`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.audit.chain import canonical_json
from core.errors import CustodyRfrError, WireFormatError
from core.files import atomic_write
from core.signed import UnsignedMessageError, is_signature_text, sign, verify
from core.topics import validate_device_id
from core.wire import aware_time, decode_object

HEARTBEAT_VERSION = 1
MAX_HEARTBEAT_BYTES = 8192
MAX_HELD_LIBRARIES = 32
_LIBRARY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # core.keywrap.LIBRARY_ID
#: "tpm": every device key sealed; "file": at least one in a 0600 file; "insecure": the library key is a plain
#: key file given through the explicitly insecure setting (the same on every desk given it).
KEY_PROTECTION_INSECURE = "insecure"
KEY_PROTECTION_MODES = ("tpm", "file", KEY_PROTECTION_INSECURE)
COMMAND_VERSION = 1
MAX_COMMAND_BYTES = 1024
COMMANDS = frozenset({"wipe", "resend", "rekey"})
#: A resend request waits at the broker for a desk that is off (a restore happens on central's clock, not the
#: desks'), so it is accepted for longer than a wipe; its nonce is remembered for twice that (``NonceLedger``).
RESEND_WINDOW = timedelta(days=3)
#: How old (or how far in the future) a command may be when it arrives. Clocks on desks drift, and a
#: command for an offline desk waits at the broker, so minutes rather than seconds.
COMMAND_WINDOW = timedelta(minutes=15)
#: A rekey waits at the broker for a desk that is off as long as the desk's persistent MQTT session lasts
#: (``appliance.comms.mqtt.SESSION_EXPIRY_S``, 7 days); a desk off for longer never receives it and is
#: re-provisioned with the new public key by hand (docs/operations.md, "Key rotation").
REKEY_WINDOW = timedelta(days=7)
COMMAND_STATEMENT = "custody-rfr fleet command v1"

logger = logging.getLogger(__name__)


class CommandRefused(CustodyRfrError):
    """A fleet command is not for this device, not signed by central, stale or replayed."""


def _now() -> datetime:
    return datetime.now(UTC)


def public_key_raw_hex(key: Ed25519PublicKey) -> str:
    """The raw public key as 64 hex digits: how a ``rekey`` carries the new key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """A short SHA-256 fingerprint of a fleet-command public key: what a rotation's records and the desks' audit
    events name, so staff can compare keys on central and on a desk without reading 64 hex digits."""
    return hashlib.sha256(bytes.fromhex(public_key_raw_hex(key))).hexdigest()[:16]


def _int(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireFormatError(f"Heartbeat field {name!r} must be a non-negative integer.")


def _num(value: object, name: str, *, optional: bool = False, signed: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value or abs(value) > 1e12:
        raise WireFormatError(f"Heartbeat field {name!r} must be a finite number.")
    if not signed and value < 0:
        raise WireFormatError(f"Heartbeat field {name!r} must not be negative.")


def _text(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value or len(value) > 100:
        raise WireFormatError(f"Heartbeat field {name!r} must be a non-empty string of at most 100 characters.")


@dataclass(frozen=True)
class Heartbeat:
    """What a desk says about itself every ``interval_s`` seconds (no biometric or case data)."""

    device_id: str
    sent_at: str
    interval_s: float
    software_version: str
    library_version: int | None
    embedder_id: str | None
    disk_free_bytes: int
    disk_total_bytes: int
    memory_available_bytes: int | None
    memory_total_bytes: int | None
    outbox_depth: int
    since_last_sync_s: float | None  # since central last acknowledged anything; None: never this run
    clock_offset_s: float | None  # device clock minus central's, when the desk can tell; else None
    key_protection: str  # "tpm" only when every device key is sealed; "insecure": a plain library key file
    #: Every reference library the desk holds a copy of, as (library id, version): central's fleet page shows
    #: which desks still hold a retired or expired library. Absent in heartbeats of desks with one library.
    libraries: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if not isinstance(self.libraries, tuple) or len(self.libraries) > MAX_HELD_LIBRARIES:
            raise WireFormatError(f"Heartbeat libraries must be at most {MAX_HELD_LIBRARIES} entries.")
        for entry in self.libraries:
            if (not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], str)
                    or not _LIBRARY_ID.fullmatch(entry[0])):
                raise WireFormatError("Each held library must be a library id and a version.")
            _int(entry[1], "library version")
        aware_time(self.sent_at, "sent_at")
        _num(self.interval_s, "interval_s")
        if not 0 < self.interval_s <= 86400:
            raise WireFormatError("Heartbeat interval must be between 0 and 86400 seconds.")
        _text(self.software_version, "software_version")
        _int(self.library_version, "library_version", optional=True)
        _text(self.embedder_id, "embedder_id", optional=True)
        for name in ("disk_free_bytes", "disk_total_bytes", "outbox_depth"):
            _int(getattr(self, name), name)
        for name in ("memory_available_bytes", "memory_total_bytes"):
            _int(getattr(self, name), name, optional=True)
        _num(self.since_last_sync_s, "since_last_sync_s", optional=True)
        _num(self.clock_offset_s, "clock_offset_s", optional=True, signed=True)
        if self.key_protection not in KEY_PROTECTION_MODES:
            raise WireFormatError(f"Key protection must be one of {', '.join(KEY_PROTECTION_MODES)}.")

    @property
    def disk_free_fraction(self) -> float:
        return self.disk_free_bytes / self.disk_total_bytes if self.disk_total_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {"v": HEARTBEAT_VERSION, **asdict(self)}
        data["libraries"] = [{"library_id": lid, "version": version} for lid, version in self.libraries]
        return data

    def to_bytes(self) -> bytes:
        data = canonical_json(self.to_dict())
        if len(data) > MAX_HEARTBEAT_BYTES:
            raise WireFormatError(f"Heartbeat is {len(data)} bytes; the limit is {MAX_HEARTBEAT_BYTES}.")
        return data

    @classmethod
    def from_bytes(cls, payload: bytes) -> Heartbeat:
        obj = decode_object(payload, MAX_HEARTBEAT_BYTES, "Heartbeat")
        if obj.pop("v", None) != HEARTBEAT_VERSION:
            raise WireFormatError("Heartbeat has an unsupported version.")
        fields = set(cls.__dataclass_fields__)
        held = obj.pop("libraries", [])
        if set(obj) != fields - {"libraries"}:
            raise WireFormatError(f"Heartbeat fields wrong: missing {sorted(fields - {'libraries'} - set(obj))}, "
                                  f"unexpected {sorted(set(obj) - fields)[:5]}.")
        if not isinstance(held, list) or not all(isinstance(e, dict) and set(e) == {"library_id", "version"}
                                                 for e in held):
            raise WireFormatError("Heartbeat libraries must be a list of {library_id, version}.")
        return cls(**obj, libraries=tuple((e["library_id"], e["version"]) for e in held))


@dataclass(frozen=True)
class FleetCommand:
    """A command from central to one device, signed with central's fleet-command key."""

    device_id: str
    command: str
    issued_at: str
    nonce: str
    signature: str
    since: str | None = None  # resend only: the events logged from this moment on (ISO 8601 with zone)
    new_key: str | None = None  # rekey only: central's new fleet-command public key (64 hex digits, raw)

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if not isinstance(self.command, str) or self.command not in COMMANDS:
            raise WireFormatError(f"Unknown fleet command {self.command!r}.")
        aware_time(self.issued_at, "issued_at")
        if (self.command == "resend") != (self.since is not None):
            raise WireFormatError("A resend command needs 'since'; no other command takes it.")
        if self.since is not None:
            aware_time(self.since, "since")
        if (self.command == "rekey") != (self.new_key is not None):
            raise WireFormatError("A rekey command needs 'new_key'; no other command takes it.")
        if self.new_key is not None and (not isinstance(self.new_key, str) or len(self.new_key) != 64
                                         or not _is_hex(self.new_key)):
            raise WireFormatError("A rekey command's new key must be 64 lower-case hex digits.")
        if not isinstance(self.nonce, str) or len(self.nonce) != 32 or not _is_hex(self.nonce):
            raise WireFormatError("Command nonce must be 32 lower-case hex digits.")
        if not is_signature_text(self.signature):
            raise WireFormatError("Command signature must be 128 lower-case hex digits.")

    def _signed_fields(self) -> dict[str, str]:
        """What the signature covers (``core.signed``, labelled ``COMMAND_STATEMENT``): all but the signature."""
        fields = {"device_id": self.device_id, "command": self.command, "issued_at": self.issued_at,
                  "nonce": self.nonce}
        if self.since is not None:  # a wipe's signed statement is unchanged
            fields["since"] = self.since
        if self.new_key is not None:
            fields["new_key"] = self.new_key
        return fields

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, device_id: str, command: str, *, now: datetime | None = None,
             nonce: str | None = None, since: datetime | None = None,
             new_key: Ed25519PublicKey | None = None) -> FleetCommand:
        issued_at = (now or _now()).astimezone(UTC).isoformat(timespec="milliseconds")
        nonce = nonce or secrets.token_hex(16)
        fields = {"device_id": device_id, "command": command, "issued_at": issued_at, "nonce": nonce}
        if since is not None:
            fields["since"] = since.astimezone(UTC).isoformat(timespec="milliseconds")
        if new_key is not None:
            fields["new_key"] = public_key_raw_hex(new_key)
        return cls(**fields, signature=sign(key, COMMAND_STATEMENT, fields))

    def verify(self, public_key: Ed25519PublicKey, *, device_id: str, now: datetime | None = None,
               window: timedelta = COMMAND_WINDOW) -> None:
        """Raise :class:`CommandRefused` unless central signed exactly this command, for ``device_id``, lately."""
        try:
            verify(public_key, COMMAND_STATEMENT, self._signed_fields(), self.signature, f"{self.command} command")
        except UnsignedMessageError as e:
            raise CommandRefused(f"The {self.command} command is not signed by central's fleet-command key.") from e
        if self.device_id != device_id:
            raise CommandRefused(f"The {self.command} command is for {self.device_id}, not this device ({device_id}).")
        age = (now or _now()) - aware_time(self.issued_at, "issued_at")
        if abs(age) > window:
            raise CommandRefused(f"The {self.command} command was issued {age} ago, outside the "
                                 f"{window} window: stale or replayed.")

    def to_bytes(self) -> bytes:
        data = {"v": COMMAND_VERSION, **asdict(self)}
        for optional in ("since", "new_key"):
            if data[optional] is None:
                del data[optional]
        return canonical_json(data)

    @classmethod
    def from_bytes(cls, payload: bytes) -> FleetCommand:
        obj = decode_object(payload, MAX_COMMAND_BYTES, "Fleet command")
        if obj.pop("v", None) != COMMAND_VERSION:
            raise WireFormatError("Fleet command has an unsupported version.")
        fields = set(cls.__dataclass_fields__)
        if set(obj) not in (fields - {"since", "new_key"}, fields - {"new_key"}, fields - {"since"}):
            raise WireFormatError("Fleet command fields wrong.")
        return cls(**obj)


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value)


class NonceLedger:
    """The nonces of commands already accepted within the window; older ones age out because a command
    that old is refused as stale anyway.

    With a ``path`` the ledger is kept on disk (written and fsynced before a command is accepted), so a
    command accepted just before a power cut is not accepted a second time when the broker redelivers it
    after the restart, still inside its window.
    """

    def __init__(self, window: timedelta = COMMAND_WINDOW, path: Path | None = None) -> None:
        self._window = window
        self._path = path
        self._seen: dict[str, datetime] = self._load() if path is not None else {}

    def _load(self) -> dict[str, datetime]:
        assert self._path is not None
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            return {str(n): aware_time(t, "nonce time") for n, t in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError, WireFormatError) as e:
            # Refusing every command would stop a wipe; accepting a replay is what the window limits.
            logger.warning("the fleet command nonce file %s is unreadable (%s); starting it afresh", self._path, e)
            return {}

    def check(self, command: FleetCommand, now: datetime | None = None) -> None:
        """Raise :class:`CommandRefused` if ``command``'s nonce was used already; remember nothing yet."""
        moment = now or _now()
        self._seen = {n: t for n, t in self._seen.items() if moment - t <= 2 * self._window}
        if command.nonce in self._seen:
            raise CommandRefused(f"The {command.command} command with nonce {command.nonce} was already used.")

    def check_and_add(self, command: FleetCommand, now: datetime | None = None) -> None:
        self.check(command, now)
        self.add(command, now)

    def add(self, command: FleetCommand, now: datetime | None = None) -> None:
        """Remember ``command``'s nonce (on disk, with a ``path``) as used."""
        self._seen[command.nonce] = now or _now()
        if self._path is not None:
            atomic_write(self._path, json.dumps({n: t.isoformat() for n, t in self._seen.items()}).encode(), 0o600)
