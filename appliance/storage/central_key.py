"""Central's fleet-command public key as this desk trusts it now: the provisioned one, or the one it rotated to.

Everything central tells a desk is believed only when this key signed it: acks, peer review outcomes, library
announcements and fleet commands (``core.signed``). ``appliance.toml``'s ``fleet_command_public_key`` is the
key the desk starts with. When central rotates its key it sends a ``rekey`` command signed with the old key
(``appliance.services.rekey``); the desk then stores the new key here (``fleet-command-key.json`` in its data
directory, written atomically) and from then on trusts only the new key, after a restart too: the stored key
overrides ``appliance.toml``'s as long as ``appliance.toml`` still names a key this desk has rotated away from.
If ``appliance.toml`` names a key the desk never trusted, someone re-provisioned the desk by hand (it missed a
rotation) and that key is used: editing ``appliance.toml`` needs the same root access as editing this file.

:class:`TrustedCentralKey` *is* an ``Ed25519PublicKey`` whose every call goes to the key trusted at that
moment, so the services that verify (the MQTT link, the wipe, the updater, peer review) hold one object and see
a rotation at once, without being rebuilt. A stored key that does not read stops the desk from starting: falling
back to the provisioned key would trust the key central retired (perhaps because it leaked).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.errors import SettingsError
from core.files import atomic_write
from core.fleet import key_fingerprint, public_key_raw_hex

logger = logging.getLogger(__name__)

STORED = "fleet-command-key.json"
_VERSION = 1


@dataclass(frozen=True)
class Rotation:
    """One rotation the desk accepted: the key it left, the key it trusts now, and the command that said so."""

    old_fingerprint: str
    new_fingerprint: str
    nonce: str
    issued_at: str


class TrustedCentralKey(Ed25519PublicKey):
    """Central's fleet-command public key, following the rotations this desk accepted."""

    def __init__(self, provisioned: Ed25519PublicKey, data_dir: Path) -> None:
        self._path = Path(data_dir) / STORED
        self._retired: list[str] = []  # raw hex of every key this desk has rotated away from
        self._current = provisioned
        self._load(provisioned)

    @property
    def current(self) -> Ed25519PublicKey:
        return self._current

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self._current)

    def _load(self, provisioned: Ed25519PublicKey) -> None:
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("v") != _VERSION:
                raise ValueError("unknown layout")
            stored = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw["key"]))
            retired = [str(k) for k in raw["retired"]]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise SettingsError(f"The fleet-command key this desk rotated to ({self._path}) does not read ({e}). "
                                "Re-provision the desk: put central's current fleet-command.pem.pub where "
                                "fleet_command_public_key says, then delete that file.") from e
        given = public_key_raw_hex(provisioned)
        if given in retired or given == raw["key"]:
            self._current, self._retired = stored, retired
            return
        logger.warning("appliance.toml names a fleet-command key (%s) this desk never trusted, not the one it rotated "
                       "to (%s): re-provisioned by hand, so the appliance.toml key is used",
                       key_fingerprint(provisioned), key_fingerprint(stored))
        self._retired = [*retired, raw["key"]]

    def was_retired(self, key_hex: str) -> bool:
        """Whether this desk has rotated away from ``key_hex`` (raw hex): it never trusts such a key again."""
        return key_hex in self._retired

    def rotate(self, new_key: Ed25519PublicKey, *, nonce: str, issued_at: str) -> Rotation:
        """Trust ``new_key`` from now on, instead of the current key: stored first (fsynced), then used."""
        old = self._current
        retired = [*self._retired, public_key_raw_hex(old)]
        record = {"v": _VERSION, "key": public_key_raw_hex(new_key), "retired": retired, "nonce": nonce,
                  "issued_at": issued_at}
        atomic_write(self._path, json.dumps(record, indent=1).encode(), 0o600)
        self._current, self._retired = new_key, retired
        return Rotation(key_fingerprint(old), key_fingerprint(new_key), nonce, issued_at)

    # --- Ed25519PublicKey: each call goes to the key trusted now ---

    def verify(self, signature: bytes, data: bytes) -> None:
        self._current.verify(signature, data)

    def public_bytes(self, encoding: serialization.Encoding, format: serialization.PublicFormat) -> bytes:
        return self._current.public_bytes(encoding, format)

    def public_bytes_raw(self) -> bytes:
        return self._current.public_bytes_raw()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ed25519PublicKey) and self.public_bytes_raw() == other.public_bytes_raw()

    def __hash__(self) -> int:
        return hash(self.public_bytes_raw())

    def __copy__(self) -> Ed25519PublicKey:
        return self._current

    def __deepcopy__(self, memo: dict[Any, Any]) -> Ed25519PublicKey:
        return self._current
