"""Central's TUF repository on disk: create it, publish library targets, keep signatures fresh.

Layout (only ``metadata/`` and ``targets/`` are served to desks)::

    REPO/metadata/1.root.json, root.json        root: offline keys, threshold (default 2 of 3)
    REPO/metadata/N.targets.json                targets: the libraries and deltas, with custom info
    REPO/metadata/N.snapshot.json               snapshot: which targets.json version belongs together
    REPO/metadata/timestamp.json                timestamp: the newest snapshot, re-signed daily
    REPO/targets/<sha256>.<name>                target files, named by hash (consistent snapshots)
    REPO/keys/{targets,snapshot,timestamp}.pem  online keys, 0600, never served

Root keys are written to a separate folder that the operator moves to offline
storage; everything here signs with online keys only. Consistent snapshots
mean a desk always downloads files that belong to one repository state, even
while a publication is being written. Every file is written to a temporary
name and renamed into place, and timestamp.json is written last: it is the
commit point of a publication.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from central.publish.settings import PublishSettings
from core import signing_keys
from core.desk_config import ConfigTargetInfo, is_config
from core.errors import CustodyRfrError
from core.files import atomic_write
from core.library_announce import LibraryTargetInfo, validate_target_name
from core.signing_keys import SigningKeyError
from supply.pinned import sha256_file

logger = logging.getLogger(__name__)

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=False)

Clock = Callable[[], datetime]


class PublishError(CustodyRfrError):
    """The repository cannot do what was asked; the message says what to do instead."""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_signer(path: Path) -> CryptoSigner:
    """A role's online key, with advice for central's operators when it cannot be read."""
    try:
        return signing_keys.load_signer(path)
    except SigningKeyError as e:
        raise PublishError(f"{e} Is --repo the repository created by init?") from e


def _meta_file(version: int, data: bytes) -> MetaFile:
    """Version, length and hash: a desk refuses a swapped-in older file even if it is validly signed."""
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


def init_repository(repo_dir: Path, root_keys_dir: Path, settings: PublishSettings | None = None,
                    clock: Clock = utc_now) -> TufRepository:
    """Create keys and the first signed metadata (version 1 of every role, no targets yet)."""
    settings = settings or PublishSettings()
    repo_dir, root_keys_dir = Path(repo_dir).resolve(), Path(root_keys_dir).resolve()
    if (repo_dir / "metadata").exists():
        raise PublishError(f"{repo_dir} already holds a repository; use publish, or choose an empty folder.")
    if root_keys_dir == repo_dir or repo_dir in root_keys_dir.parents:
        raise PublishError("The root keys folder must be outside the repository: root keys are kept offline.")
    if root_keys_dir.exists() and any(root_keys_dir.iterdir()):
        raise PublishError(f"{root_keys_dir} is not empty; give a new folder for the offline root keys.")
    now = clock()
    root_signers = [CryptoSigner.generate_ed25519() for _ in range(settings.root_keys)]
    online = {role: CryptoSigner.generate_ed25519() for role in ONLINE_ROLES}

    root = Root(expires=now + settings.expiry("root"), consistent_snapshot=True)
    for signer in root_signers:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = settings.root_threshold
    for role, signer in online.items():
        root.add_key(signer.public_key, role)
        root.roles[role].threshold = 1
    root_md = Metadata(root)
    for signer in root_signers:
        root_md.sign(signer, append=True)

    for i, signer in enumerate(root_signers, start=1):
        signing_keys.write_private_key(root_keys_dir / f"root-{i}.pem", signer)
    for role, signer in online.items():
        signing_keys.write_private_key(repo_dir / "keys" / f"{role}.pem", signer)
    (repo_dir / "targets").mkdir(parents=True, exist_ok=True)
    root_bytes = root_md.to_bytes(_SERIALIZER)
    atomic_write(repo_dir / "metadata" / "1.root.json", root_bytes)
    atomic_write(repo_dir / "metadata" / "root.json", root_bytes)

    empty: list[Metadata] = [Metadata(Targets(expires=now)), Metadata(Snapshot(expires=now)),
                             Metadata(Timestamp(expires=now, snapshot_meta=MetaFile(version=1)))]
    for md in empty:
        md.signed.version = 0  # the first commit signs version 1 of each
    repo = TufRepository.__new__(TufRepository)
    repo._setup(repo_dir, settings, clock, root_md, online, *empty)
    repo._commit(sign_targets=True, sign_snapshot=True)
    logger.info("TUF repository created in %s; root keys in %s", repo_dir, root_keys_dir)
    return repo


class TufRepository:
    """An existing repository, opened with its online keys for publishing and refreshing."""

    def __init__(self, repo_dir: Path, settings: PublishSettings | None = None, clock: Clock = utc_now) -> None:
        repo_dir = Path(repo_dir).resolve()
        meta = repo_dir / "metadata"
        try:
            root = Metadata[Root].from_bytes((meta / "root.json").read_bytes())
            timestamp = Metadata[Timestamp].from_bytes((meta / "timestamp.json").read_bytes())
            snapshot = Metadata[Snapshot].from_bytes(
                (meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json").read_bytes())
            targets = Metadata[Targets].from_bytes(
                (meta / f"{snapshot.signed.meta['targets.json'].version}.targets.json").read_bytes())
        except FileNotFoundError as e:
            raise PublishError(f"{repo_dir} is not a complete TUF repository ({e.filename} is missing); "
                               f"create one with init.") from e
        except (ValueError, KeyError) as e:
            raise PublishError(f"The metadata in {meta} cannot be read ({e}); restore it from backup.") from e
        online = {role: load_signer(repo_dir / "keys" / f"{role}.pem") for role in ONLINE_ROLES}
        for role, signer in online.items():
            if signer.public_key.keyid not in root.signed.roles[role].keyids:
                raise PublishError(f"keys/{role}.pem is not the {role} key that root trusts; "
                                   f"restore the right key or rotate it with the offline root keys.")
        self._setup(repo_dir, settings or PublishSettings(), clock, root, online, targets, snapshot, timestamp)

    def _setup(self, repo_dir: Path, settings: PublishSettings, clock: Clock, root: Metadata[Root],
               online: dict[str, CryptoSigner], targets: Metadata[Targets], snapshot: Metadata[Snapshot],
               timestamp: Metadata[Timestamp]) -> None:
        self.repo_dir = repo_dir
        self.metadata_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"
        self.settings = settings
        self._clock = clock
        self._root = root
        self._signers = online
        self._targets = targets
        self._snapshot = snapshot
        self._timestamp = timestamp

    # --- reading -------------------------------------------------------------------------------

    @property
    def root_bytes(self) -> bytes:
        """The trusted root to ship to desks at provisioning (``metadata/1.root.json`` for a new desk)."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def versions(self) -> dict[str, int]:
        return {"root": self._root.signed.version, "targets": self._targets.signed.version,
                "snapshot": self._snapshot.signed.version, "timestamp": self._timestamp.signed.version}

    def expires(self) -> dict[str, datetime]:
        return {"root": self._root.signed.expires, "targets": self._targets.signed.expires,
                "snapshot": self._snapshot.signed.expires, "timestamp": self._timestamp.signed.expires}

    def published(self) -> dict[str, LibraryTargetInfo]:
        """Every library target currently offered, with what it is (configurations are listed apart)."""
        return {name: LibraryTargetInfo.from_dict(tf.custom) for name, tf in self._targets.signed.targets.items()
                if not is_config(tf.custom)}

    def published_configs(self) -> dict[str, ConfigTargetInfo]:
        """Every signed desk configuration currently offered."""
        return {name: ConfigTargetInfo.from_dict(tf.custom) for name, tf in self._targets.signed.targets.items()
                if is_config(tf.custom)}

    def target_path(self, name: str) -> Path:
        """Where the served copy of a published target is (hash-prefixed)."""
        tf = self._targets.signed.targets[name]
        return self.targets_dir / f"{tf.hashes['sha256']}.{name}"

    # --- changing ------------------------------------------------------------------------------

    def publish(self, file: Path, info: LibraryTargetInfo | ConfigTargetInfo) -> TargetFile:
        """Add ``file`` as the target ``info.name`` and sign the new repository state."""
        file = Path(file)
        name = validate_target_name(info.name)
        if name in self._targets.signed.targets:
            raise PublishError(f"{name} is already published; publish a new library version instead.")
        if not file.is_file():
            raise PublishError(f"{file} does not exist or is not a file.")
        sha256 = sha256_file(file)
        dest = self.targets_dir / f"{sha256}.{name}"
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.targets_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(file, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            if sha256_file(Path(tmp)) != sha256:
                raise PublishError(f"{file} changed while it was being published; publish it again.")
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        target = TargetFile(length=dest.stat().st_size, hashes={"sha256": sha256}, path=name,
                            unrecognized_fields={"custom": info.to_dict()})
        self._targets.signed.targets[name] = target
        self._commit(sign_targets=True, sign_snapshot=True)
        version = info.config_version if isinstance(info, ConfigTargetInfo) else info.library_version
        logger.info("published %s (%s v%d, %d bytes)", name, info.kind, version, target.length)
        return target

    def withdraw(self, name: str) -> None:
        """Stop offering a target (e.g. a library found to be wrong); desks never go back to it by themselves."""
        if name not in self._targets.signed.targets:
            raise PublishError(f"{name} is not published.")
        del self._targets.signed.targets[name]
        self._commit(sign_targets=True, sign_snapshot=True)

    def refresh(self) -> list[str]:
        """Re-sign timestamp, and snapshot/targets too once half their validity has passed.

        Run often (hourly): a desk refuses expired metadata, so a repository nobody
        refreshes freezes every desk at its current library within a day.
        """
        now = self._clock()
        due = {role: self._half_gone(md.signed, role, now)
               for role, md in (("targets", self._targets), ("snapshot", self._snapshot))}
        sign_targets = due["targets"]
        sign_snapshot = sign_targets or due["snapshot"]
        self._commit(sign_targets=sign_targets, sign_snapshot=sign_snapshot)
        return [r for r, on in (("targets", sign_targets), ("snapshot", sign_snapshot), ("timestamp", True)) if on]

    def _half_gone(self, signed: Signed, role: str, now: datetime) -> bool:
        return signed.expires - now < self.settings.expiry(role) / 2

    def _sign(self, md: Metadata, role: str) -> bytes:
        md.signed.version += 1
        md.signed.expires = self._clock() + self.settings.expiry(role)
        md.signatures.clear()
        md.sign(self._signers[role])
        return md.to_bytes(_SERIALIZER)

    def _commit(self, *, sign_targets: bool, sign_snapshot: bool) -> None:
        """Sign and write the changed roles bottom-up; timestamp.json last makes the change visible."""
        if sign_targets:
            data = self._sign(self._targets, "targets")
            atomic_write(self.metadata_dir / f"{self._targets.signed.version}.targets.json", data)
            self._snapshot.signed.meta["targets.json"] = _meta_file(self._targets.signed.version, data)
        if sign_snapshot:
            data = self._sign(self._snapshot, "snapshot")
            atomic_write(self.metadata_dir / f"{self._snapshot.signed.version}.snapshot.json", data)
            self._timestamp.signed.snapshot_meta = _meta_file(self._snapshot.signed.version, data)
        data = self._sign(self._timestamp, "timestamp")
        atomic_write(self.metadata_dir / "timestamp.json", data)

