"""Library keys for the fleet: each lineage's content key wrapped to every trusted desk, re-keyed after a revocation.

A library lineage is encrypted under one random content key (the SQLCipher raw key in the lineage's
key file, which stays on central). Desks never get that file: when a library version is published,
the key is wrapped to the X25519 key-wrapping key of every registered, unrevoked desk
(``core.keywrap``) and the list is published as the signed TUF target ``keys-<key id>.json``
beside the library, replacing the previous list for the same key (new desks join, revoked desks
drop out). Which desks were ever given a key is recorded (``library_key_grants``).

Revoking a desk cannot take back a key it already holds, so the next publication re-keys: if any
desk given the current key has been revoked since, a new content key is made, the snapshot is
re-encrypted under it (``PRAGMA rekey`` on a copy, which then replaces the build file) and the
lineage's key file is rotated (the old key kept as ``<key file>.retired-<key id>``). Only desks
still trusted receive the new key, so the revoked desk's key opens nothing published from then on.
A re-key needs a full library: a delta's base is encrypted under the old key, so central refuses a
delta until the re-keyed full version is out (docs/library-format.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from central.fleet.registry_store import RegistryStore
from central.publish import describe
from central.publish.repository import PublishError, TufRepository
from core.desk_config import ConfigTargetInfo
from core.errors import WireFormatError
from core.keywrap import (
    KeysDocument,
    SealedDocument,
    WrappedKey,
    key_id,
    public_key_from_hex,
    recipients_from_hex,
    validate_library_id,
    wrap,
)
from core.library_announce import LibraryTargetInfo
from library import cipher

logger = logging.getLogger(__name__)


@dataclass
class Publication:
    """What one library publication did: the signed target, its keys target, and whether it re-keyed."""

    info: LibraryTargetInfo
    keys_target: str
    recipients: list[str]
    rekeyed_from: str | None = None
    revoked_holders: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"Published {self.info.name} (library version {self.info.library_version}) under key "
                f"{self.info.key_id[:12]}, wrapped for {len(self.recipients)} desk(s) in {self.keys_target}")
        if self.rekeyed_from:
            text += (f"; re-keyed from {self.rekeyed_from[:12]} because {', '.join(self.revoked_holders)} "
                     f"(revoked) held it")
        return text + "."


def _recipients(registry: RegistryStore) -> dict[str, X25519PublicKey]:
    try:
        return recipients_from_hex(registry.wrapping_keys().items())
    except WireFormatError as e:
        raise PublishError(f"A desk's registered key-wrapping key is malformed ({e}); register it again.") from e


def wrap_for_desk(registry: RegistryStore, device_id: str, key: bytes, library_id: str) -> WrappedKey:
    """The lineage key wrapped to one desk (at provisioning: the library it is shipped with); the grant is recorded."""
    if device_id in registry.revocations():
        raise PublishError(f"{device_id} is revoked: it receives no library key.")
    text = registry.wrapping_key(device_id)
    if text is None:
        raise PublishError(f"{device_id} has no key-wrapping key registered: run `python -m central devices "
                           f"register --wrap-key DATA/pki/library-wrap.pub` with the file device-keygen made.")
    try:
        public = public_key_from_hex(text)
    except WireFormatError as e:
        raise PublishError(f"{device_id}'s registered key-wrapping key is malformed ({e}); register it again.") from e
    wrapped = wrap(key, public, desk_id=device_id, library_id=validate_library_id(library_id))
    registry.record_grants(wrapped.key_id, [device_id])
    return wrapped


def rekey_lineage(file: Path, key_file: Path, old_key: bytes) -> bytes:
    """A new content key for the lineage: ``file`` re-encrypted under it, the key file rotated; returns the key.

    Order, so an interruption never loses a key: the old key is kept as ``<key file>.retired-<id>`` and the
    new one written as ``<key file>.next`` first; then the snapshot is re-keyed (a copy, renamed over the
    build file once it opens with the new key); then ``.next`` replaces the key file.
    """
    key_file = Path(key_file)
    new_key = cipher.new_key()
    cipher.write_key_file(key_file.with_name(f"{key_file.name}.retired-{key_id(old_key)}"), old_key)
    pending = key_file.with_name(key_file.name + ".next")
    cipher.write_key_file(pending, new_key)
    cipher.rekey_copy(file, file, old_key, new_key)
    os.replace(pending, key_file)
    logger.warning("library lineage re-keyed: %s -> %s", key_id(old_key)[:12], key_id(new_key)[:12])
    return new_key


def publish_keys(repo: TufRepository, document: KeysDocument) -> str:
    """Sign ``document`` as ``keys-<key id>.json``, replacing the list published for that key before."""
    with tempfile.TemporaryDirectory(prefix="rfr-keys-") as work:
        path = Path(work) / document.name
        path.write_bytes(document.to_bytes())
        repo.publish_keys(path, document)
    return document.name


def publish_library(repo: TufRepository, registry: RegistryStore, file: Path, kind: str, key_file: Path,
                    library_id: str) -> Publication:
    """Publish a full library or delta for the fleet: re-key if a revoked desk holds the key, wrap, sign."""
    key = cipher.read_key_file(key_file)
    holders = registry.revoked_holders(key_id(key))
    rekeyed_from = None
    if holders:
        if kind != "full":
            raise PublishError(f"Revoked desk(s) {', '.join(holders)} hold library key {key_id(key)[:12]}: the next "
                               f"publication re-keys the library, and a re-key needs a full library (a delta's "
                               f"base is under the old key). Publish the full library of this version instead.")
        rekeyed_from = key_id(key)
        key = rekey_lineage(file, key_file, key)
    info = describe.describe_full(file, key) if kind == "full" else describe.describe_delta(file, key)
    info = replace(info, library_id=library_id)  # signed: the target names (and is only ever) this library
    recipients = _recipients(registry)
    try:
        document = KeysDocument.build(key, recipients, library_id)
    except WireFormatError as e:
        raise PublishError(f"{e} Register the desks' key-wrapping keys (devices register --wrap-key) first.") from e
    keys_target = publish_keys(repo, document)
    repo.publish(file, info)
    registry.record_grants(document.key_id, sorted(recipients))
    return Publication(info, keys_target, sorted(recipients), rekeyed_from, holders)


def seal_config(registry: RegistryStore, document: bytes) -> tuple[bytes, ConfigTargetInfo]:
    """The desk configuration sealed to every trusted desk, and its signed description (of the plaintext)."""
    info = describe.describe_config_bytes(document)
    recipients = _recipients(registry)
    try:
        sealed = SealedDocument.seal(document, recipients)
    except WireFormatError as e:
        raise PublishError(f"{e} Register the desks' key-wrapping keys (devices register --wrap-key) first.") from e
    return sealed.to_bytes(), info
