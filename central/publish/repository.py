"""Central's library repository: a ``tufrepo`` signed repository offering libraries, deltas and configurations.

Every role but root signs online here (targets, snapshot and timestamp keys in
``REPO/keys``); root keys are written to a separate folder that the operator
moves to offline storage, and brings back to rotate an online key or re-sign
root (``rotate_online_key``, ``re_sign_root``). Expiry periods come from ``[publish]`` in central's
settings. What is specific to central: a target is a library, a delta or a
desk configuration, named by ``core.library_announce.validate_target_name``
and described by its signed ``custom`` info (``LibraryTargetInfo`` or
``ConfigTargetInfo``); errors are ``PublishError`` with advice for the RFR team.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuf.api.metadata import TargetFile

from central.publish.settings import PublishSettings
from core.desk_config import ConfigTargetInfo, is_config
from core.errors import CustodyRfrError
from core.keywrap import KEYS_KIND, KeysDocument
from core.library_announce import LibraryTargetInfo, validate_target_name
from core.library_authorisation import AuthorisationTargetInfo, is_authorisation
from tufrepo.repository import Clock, SignedRepository, utc_now

logger = logging.getLogger(__name__)


def _is_keys(custom: object) -> bool:
    return isinstance(custom, dict) and custom.get("kind") == KEYS_KIND


class PublishError(CustodyRfrError):
    """The repository cannot do what was asked; the message says what to do instead."""


def init_repository(repo_dir: Path, root_keys_dir: Path, settings: PublishSettings | None = None,
                    clock: Clock = utc_now) -> TufRepository:
    """Create keys and the first signed metadata (version 1 of every role, no targets yet)."""
    settings = settings or PublishSettings()
    TufRepository.initialise(repo_dir, root_keys_dir, root_keys=settings.root_keys,
                             root_threshold=settings.root_threshold, expiry=settings.expiry, clock=clock)
    return TufRepository(repo_dir, settings, clock)


class TufRepository(SignedRepository):
    """Central's repository, opened with its online keys for publishing and refreshing."""

    error = PublishError
    key_advice = "Is --repo the repository created by init? A lost online key is replaced with rotate-key."
    rotate_command = "python -m central.publish rotate-key --repo REPO --root-keys-dir OFFLINE_DIR --role {role}"

    def __init__(self, repo_dir: Path, settings: PublishSettings | None = None, clock: Clock = utc_now,
                 replacing: str | None = None) -> None:
        self.settings = settings or PublishSettings()
        super().__init__(repo_dir, expiry=self.settings.expiry, clock=clock, replacing=replacing)

    def published(self) -> dict[str, LibraryTargetInfo]:
        """Every library target currently offered, with what it is (configurations are listed apart)."""
        return {name: LibraryTargetInfo.from_dict(tf.custom) for name, tf in self.target_files().items()
                if not is_config(tf.custom) and not _is_keys(tf.custom) and not is_authorisation(tf.custom)}

    def published_authorisations(self) -> dict[str, AuthorisationTargetInfo]:
        """Every desk's authorisation manifest offered now (one per desk), by target name."""
        return {name: AuthorisationTargetInfo.from_dict(tf.custom) for name, tf in self.target_files().items()
                if is_authorisation(tf.custom)}

    def publish_authorisation(self, file: Path, info: AuthorisationTargetInfo) -> TargetFile:
        """Offer ``file`` as the desk's manifest and stop offering its older ones, in one signed change: a desk
        never sees two, and the repository does not grow with every suspension."""
        name = validate_target_name(info.name)
        for old, other in self.published_authorisations().items():
            if other.device_id == info.device_id:
                if other.manifest_version >= info.manifest_version:
                    raise PublishError(f"{old} is already published for {info.device_id}; desks apply only newer "
                                       "manifests.")
                del self._targets.signed.targets[old]
        target = self.add_target(file, name, info.to_dict())
        logger.info("published %s (authorisation v%d for %s)", name, info.manifest_version, info.device_id)
        return target

    def published_keys(self) -> dict[str, str]:
        """Every keys target (``keys-<key id>.json``) offered now, by name, with its key id."""
        return {name: str(tf.custom["key_id"]) for name, tf in self.target_files().items() if _is_keys(tf.custom)}

    def publish_keys(self, file: Path, document: KeysDocument) -> TargetFile:
        """Sign ``file`` (the serialised ``document``) as its keys target, replacing an earlier list for that key:
        new desks join and revoked desks drop out without a new key name."""
        name = validate_target_name(document.name)
        target = self.add_target(file, name, {"kind": KEYS_KIND, "key_id": document.key_id,
                                              "library_id": document.library_id})
        logger.info("published %s (%d desks, %d bytes)", name, len(document.wrapped), target.length)
        return target

    def published_configs(self) -> dict[str, ConfigTargetInfo]:
        """Every signed desk configuration currently offered."""
        return {name: ConfigTargetInfo.from_dict(tf.custom) for name, tf in self.target_files().items()
                if is_config(tf.custom)}

    def publish(self, file: Path, info: LibraryTargetInfo | ConfigTargetInfo) -> TargetFile:
        """Add ``file`` as the target ``info.name`` and sign the new repository state."""
        name = validate_target_name(info.name)
        if name in self.target_files():
            raise PublishError(f"{name} is already published; publish a new library version instead.")
        target = self.add_target(file, name, info.to_dict())
        version = info.config_version if isinstance(info, ConfigTargetInfo) else info.library_version
        logger.info("published %s (%s v%d, %d bytes)", name, info.kind, version, target.length)
        return target

    def withdraw(self, name: str) -> None:
        """Stop offering a target (e.g. a library found to be wrong); desks never go back to it by themselves."""
        self.remove_target(name)
