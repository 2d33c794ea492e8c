"""A TUF repository on disk, kept signed: what central's library repository and the release repository share.

Layout (only ``metadata/`` and ``targets/`` are served to clients)::

    REPO/metadata/1.root.json, root.json    root: offline keys, a threshold of them signs
    REPO/metadata/N.targets.json            targets: what is offered, each with its signed custom info
    REPO/metadata/N.snapshot.json           snapshot: which targets.json version belongs together
    REPO/metadata/timestamp.json            timestamp: the newest snapshot, re-signed often
    REPO/targets/<sha256>.<name>            target files, named by hash (consistent snapshots)
    REPO/keys/<role>.pem                    online keys, 0600, never served

Root keys, and a targets role that people sign rather than the server, are
written to folders outside the repository for their holders to take away.
Holders bring the root keys back to rotate an online key or re-sign root
(``rotate_online_key``, ``re_sign_root``; the signing is ``tufrepo.root_signing``):
each writes the next ``N.root.json``, which clients walk from the root they hold.
Consistent snapshots mean a client always downloads files that belong to one
repository state, even while a change is being written. Every file is
written to a temporary name and renamed into place (``core.files``), and
timestamp.json is written last: it is the commit point of a change.

A subclass says what is specific to it: the error family its operators see
(``error``), which roles sign online, and which targets it accepts with what
custom metadata.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from core import signing_keys
from core.errors import CustodyRfrError
from core.files import atomic_write, fsync_dir
from core.signing_keys import SigningKeyError
from supply.pinned import sha256_file
from tufrepo.root_signing import (
    RootKey,
    load_root_keys,
    next_root,
    replace_online_key,
    replace_root_keys,
    resolve_root_key_ids,
    sign_root,
)

logger = logging.getLogger(__name__)

# Root yearly (re-signed offline), targets quarterly, snapshot weekly, timestamp daily: a client notices
# a freeze (updates held back) within one timestamp period.
EXPIRY: Mapping[str, timedelta] = {"root": timedelta(days=365), "targets": timedelta(days=90),
                                   "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}
_SERIALIZER = JSONSerializer(compact=False)

Clock = Callable[[], datetime]
Expiry = Callable[[str], timedelta]


class SignedRepositoryError(CustodyRfrError):
    """The repository cannot do what was asked; the message says what to do instead."""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def default_expiry(role: str) -> timedelta:
    """How long a freshly signed ``role`` stays valid, when the repository has no settings of its own."""
    return EXPIRY[role]


@dataclass(frozen=True)
class OfflineKeys:
    """Keys of a role that the server never holds: written to ``folder`` as ``<prefix>-1.pem``... for
    people to take away; ``threshold`` of them must sign."""

    folder: Path
    count: int
    threshold: int
    prefix: str
    what: str  # in messages: "root keys", "release keys"

    def generate(self) -> list[CryptoSigner]:
        return [CryptoSigner.generate_ed25519() for _ in range(self.count)]

    def write(self, signers: Sequence[CryptoSigner]) -> None:
        for i, signer in enumerate(signers, start=1):
            signing_keys.write_private_key(self.folder / f"{self.prefix}-{i}.pem", signer)


@dataclass(frozen=True)
class RootChange:
    """What ``re_sign_root`` wrote: the new root, the new root key files, and the replaced ones set aside."""

    version: int
    expires: datetime
    new_keys: dict[str, Path]  # key id -> file in the offline folder
    retired: list[Path]


def _pending(key_file: Path) -> Path:
    """Where a rotated online key waits until the root that names it is written."""
    return key_file.with_name(key_file.name + ".next")


def _meta_file(version: int, data: bytes) -> MetaFile:
    """Version, length and hash: a client refuses a swapped-in older file even if it is validly signed."""
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


class SignedRepository:
    """An existing repository, opened with its online keys for adding and removing targets and refreshing."""

    error: ClassVar[type[CustodyRfrError]] = SignedRepositoryError
    online_roles: ClassVar[tuple[str, ...]] = ("targets", "snapshot", "timestamp")
    kind: ClassVar[str] = "TUF repository"  # "... is not a complete TUF repository"
    init_command: ClassVar[str] = "init"  # "...; create one with init."
    key_advice: ClassVar[str] = ""  # said after a key file that cannot be read
    rotate_command: ClassVar[str] = ""  # the command that rotates an online key, "{role}" filled in

    def __init__(self, repo_dir: Path, *, expiry: Expiry = default_expiry, clock: Clock = utc_now,
                 replacing: str | None = None) -> None:
        """Open the repository with its online keys; ``replacing`` names a role whose key is about to be
        rotated (``rotate_online_key``), so its key file may be lost or no longer trusted."""
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
            raise self.error(f"{repo_dir} is not a complete {self.kind} ({e.filename} is missing); "
                             f"create one with {self.init_command}.") from e
        except (ValueError, KeyError) as e:
            raise self.error(f"The metadata in {meta} cannot be read ({e}); restore it from backup.") from e
        self._finish_root_change(repo_dir, root)
        online = {role: self.load_signer(repo_dir / "keys" / f"{role}.pem") for role in self.online_roles
                  if role != replacing}
        for role, signer in online.items():
            if signer.public_key.keyid not in root.signed.roles[role].keyids:
                how = f" ({self.rotate_command.format(role=role)})" if self.rotate_command else ""
                raise self.error(f"keys/{role}.pem is not the {role} key that root trusts; "
                                 f"restore the right key or rotate it with the offline root keys{how}.")
        self._attach(repo_dir, root, targets, snapshot, timestamp, online, expiry, clock)

    def _attach(self, repo_dir: Path, root: Metadata[Root], targets: Metadata[Targets], snapshot: Metadata[Snapshot],
                timestamp: Metadata[Timestamp], online: dict[str, CryptoSigner], expiry: Expiry,
                clock: Clock) -> None:
        self.repo_dir, self.metadata_dir, self.targets_dir = repo_dir, repo_dir / "metadata", repo_dir / "targets"
        self._root, self._targets, self._snapshot, self._timestamp = root, targets, snapshot, timestamp
        self._signers, self._expiry, self._clock = online, expiry, clock

    @classmethod
    def initialise(cls, repo_dir: Path, root_keys_dir: Path, *, root_keys: int = 3, root_threshold: int = 2,
                   targets_keys: OfflineKeys | None = None, expiry: Expiry = default_expiry,
                   clock: Clock = utc_now) -> None:
        """Create the keys and version 1 of every role (no targets yet); open the result with the constructor.

        The targets role signs online unless ``targets_keys`` gives it offline keys of its own (then
        ``online_roles`` must leave it out).
        """
        repo_dir = Path(repo_dir).resolve()
        offline = [OfflineKeys(Path(root_keys_dir).resolve(), root_keys, root_threshold, "root", "root keys")]
        if targets_keys is not None:
            offline.append(replace(targets_keys, folder=Path(targets_keys.folder).resolve()))
        if (targets_keys is None) != ("targets" in cls.online_roles):
            raise ValueError(f"{cls.__name__}: the targets role needs either an online key or offline keys")
        cls._check_new(repo_dir, offline)
        now = clock()
        offline_signers = [keys.generate() for keys in offline]
        online = {role: CryptoSigner.generate_ed25519() for role in cls.online_roles}

        root = Root(expires=now + expiry("root"), consistent_snapshot=True)
        for signer in offline_signers[0]:
            root.add_key(signer.public_key, "root")
        for signer in offline_signers[1] if targets_keys else []:
            root.add_key(signer.public_key, "targets")
        for role, signer in online.items():
            root.add_key(signer.public_key, role)
        for role in ("targets", "snapshot", "timestamp"):
            root.roles[role].threshold = 1
        root.roles["root"].threshold = root_threshold
        if targets_keys is not None:
            root.roles["targets"].threshold = targets_keys.threshold
        root_md = Metadata(root)
        for signer in offline_signers[0]:
            root_md.sign(signer, append=True)

        for keys, signers in zip(offline, offline_signers, strict=True):
            keys.write(signers)
        for role, signer in online.items():
            signing_keys.write_private_key(repo_dir / "keys" / f"{role}.pem", signer)
        (repo_dir / "targets").mkdir(parents=True, exist_ok=True)
        root_bytes = root_md.to_bytes(_SERIALIZER)
        atomic_write(repo_dir / "metadata" / "1.root.json", root_bytes)
        atomic_write(repo_dir / "metadata" / "root.json", root_bytes)

        targets: Metadata[Targets] = Metadata(Targets(expires=now))
        snapshot: Metadata[Snapshot] = Metadata(Snapshot(expires=now))
        timestamp: Metadata[Timestamp] = Metadata(Timestamp(expires=now, snapshot_meta=MetaFile(version=1)))
        for md in (targets, snapshot, timestamp):
            md.signed.version = 0  # the first commit signs version 1 of each
        first = SignedRepository.__new__(SignedRepository)  # nothing on disk to read yet but root and keys
        first._attach(repo_dir, root_md, targets, snapshot, timestamp, online, expiry, clock)
        first._commit(offline_signers[1][:targets_keys.threshold] if targets_keys else [online["targets"]])
        logger.info("%s created in %s; root keys in %s", cls.kind, repo_dir, offline[0].folder)

    @classmethod
    def _finish_root_change(cls, repo_dir: Path, root: Metadata[Root]) -> None:
        """Complete a root change that was interrupted after ``root.json`` was written (see ``_write_root``):
        the versioned copy clients fetch, and a rotated key moved into place. A pending key the root does not
        name belongs to a rotation that never happened and is discarded."""
        versioned = repo_dir / "metadata" / f"{root.signed.version}.root.json"
        if not versioned.exists():
            atomic_write(versioned, (repo_dir / "metadata" / "root.json").read_bytes())
            logger.warning("wrote %s, missing after an interrupted root change", versioned.name)
        for role in cls.online_roles:
            key_file = repo_dir / "keys" / f"{role}.pem"
            pending = _pending(key_file)
            if not pending.exists():
                continue
            if cls.load_signer(pending).public_key.keyid in root.signed.roles[role].keyids:
                os.replace(pending, key_file)
                logger.warning("finished rotating the %s key after an interruption", role)
            else:
                pending.unlink()
            fsync_dir(key_file.parent)

    @classmethod
    def _check_new(cls, repo_dir: Path, offline: Sequence[OfflineKeys]) -> None:
        """An empty repository folder; key folders outside it, empty, and one per group of holders."""
        if (repo_dir / "metadata").exists():
            raise cls.error(f"{repo_dir} already holds a repository; use publish, or choose an empty folder.")
        if not all(1 <= keys.threshold <= keys.count for keys in offline):
            raise cls.error("Each threshold must be between 1 and its number of keys.")
        for keys in offline:
            if keys.folder == repo_dir or repo_dir in keys.folder.parents:
                raise cls.error(f"The {keys.what} folder must be outside the repository: those keys are kept "
                                f"offline and never served.")
            if keys.folder.exists() and any(keys.folder.iterdir()):
                raise cls.error(f"{keys.folder} is not empty; give a new folder for the {keys.what}.")
        if len(offline) == 2 and offline[0].folder == offline[1].folder:
            raise cls.error(f"{offline[0].what.capitalize()} and {offline[1].what} must be in different folders: "
                            f"different people hold them.")

    @classmethod
    def load_signer(cls, path: Path) -> CryptoSigner:
        """A role's private key, refused in this repository's error family when it cannot be read."""
        try:
            return signing_keys.load_signer(path)
        except SigningKeyError as e:
            raise cls.error(f"{e} {cls.key_advice}" if cls.key_advice else str(e)) from e

    # --- reading -------------------------------------------------------------------------------

    @property
    def root_bytes(self) -> bytes:
        """The first root: the trust anchor a client is provisioned with (``metadata/1.root.json``)."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def versions(self) -> dict[str, int]:
        return {role: md.signed.version for role, md in self._roles()}

    def expires(self) -> dict[str, datetime]:
        return {role: md.signed.expires for role, md in self._roles()}

    def _roles(self) -> tuple[tuple[str, Metadata[Any]], ...]:
        return (("root", self._root), ("targets", self._targets), ("snapshot", self._snapshot),
                ("timestamp", self._timestamp))

    def target_files(self) -> dict[str, TargetFile]:
        """Every target offered now, by name, with its signed length, hash and custom metadata."""
        return dict(self._targets.signed.targets)

    def target_path(self, name: str) -> Path:
        """Where the served copy of a published target is (hash-prefixed)."""
        tf = self._targets.signed.targets[name]
        return self.targets_dir / f"{tf.hashes['sha256']}.{name}"

    # --- changing ------------------------------------------------------------------------------

    def add_target(self, file: Path, name: str, custom: Mapping[str, Any],
                   signers: Sequence[CryptoSigner] | None = None) -> TargetFile:
        """Offer ``file`` as target ``name`` with ``custom`` metadata, and sign the new repository state.

        ``signers`` sign targets when that role's keys are offline; otherwise its online key does.
        """
        file = Path(file)
        if not file.is_file():
            raise self.error(f"{file} does not exist or is not a file.")
        sha256, length = self._store(file, name)
        target = TargetFile(length=length, hashes={"sha256": sha256}, path=name,
                            unrecognized_fields={"custom": dict(custom)})
        self._targets.signed.targets[name] = target
        self._commit(self._targets_signers(signers))
        return target

    def remove_target(self, name: str, signers: Sequence[CryptoSigner] | None = None) -> None:
        """Stop offering ``name``; clients that installed it keep it (they never go back by themselves)."""
        if name not in self._targets.signed.targets:
            raise self.error(f"{name} is not published.")
        del self._targets.signed.targets[name]
        self._commit(self._targets_signers(signers))

    def refresh(self) -> list[str]:
        """Re-sign timestamp, and snapshot (and an online targets) once half their validity has passed.

        Run often (hourly): a client refuses expired metadata, so a repository nobody
        refreshes freezes every client at what it has within a day.
        """
        now = self._clock()
        sign_targets = "targets" in self._signers and (self._half_gone(self._targets.signed, "targets", now)
                                                       or not self._trusted(self._targets, "targets"))
        sign_snapshot = (sign_targets or self._half_gone(self._snapshot.signed, "snapshot", now)
                         or not self._trusted(self._snapshot, "snapshot"))
        self._commit([self._signers["targets"]] if sign_targets else None, sign_snapshot=sign_snapshot)
        return [r for r, on in (("targets", sign_targets), ("snapshot", sign_snapshot), ("timestamp", True)) if on]

    # --- changing trust, with the offline root keys ---------------------------------------------

    def rotate_online_key(self, role: str, root_keys_dir: Path) -> str:
        """A new key for the online ``role``, the only one the next root names for it; returns its key id.

        The role, and what lists it (snapshot, timestamp), is then re-signed with the new key under new
        versions, so a client walks to the new root and accepts it; the old key signs nothing a client
        accepts any more, and its file is overwritten. Order, so an interruption loses no key: the new key is
        written as ``keys/<role>.pem.next``, then the root naming it, then it replaces ``keys/<role>.pem``
        (opening the repository finishes that step; ``refresh`` re-signs a role its root no longer trusts).
        """
        if role not in self.online_roles:
            raise self.error(f"{role!r} has no key on this server to rotate; the roles signed here are "
                             f"{', '.join(self.online_roles)}.")
        root_keys = self._root_keys(root_keys_dir)
        new = CryptoSigner.generate_ed25519()
        root = next_root(self._root, self._clock() + self._expiry("root"))
        replace_online_key(root.signed, role, new)
        sign_root(root, self._root.signed, [key.signer for key in root_keys.values()], self.error)
        key_file = self.repo_dir / "keys" / f"{role}.pem"
        signing_keys.write_private_key(_pending(key_file), new)
        self._write_root(root)
        os.replace(_pending(key_file), key_file)
        fsync_dir(key_file.parent)
        self._signers[role] = new
        if role == "targets":
            self._commit([new])
        else:
            self._commit(None, sign_snapshot=role == "snapshot")
        logger.warning("rotated the %s key to %s in root version %d", role, new.public_key.keyid[:12],
                       root.signed.version)
        return str(new.public_key.keyid)

    def re_sign_root(self, root_keys_dir: Path, *, replace: Sequence[str] = (),
                     expiry: timedelta | None = None) -> RootChange:
        """The next root, valid for ``expiry`` (the root period by default), with the root keys ``replace``
        names (key ids) replaced by new ones written to ``root_keys_dir`` as ``root-<n>.pem``.

        The new root is signed by every root key in the folder the current root trusts (the replaced ones
        too, when present) and by the new keys: a threshold of each is what a client holding the current root
        checks. A replaced key's file is renamed ``<name>.retired`` for its holder to destroy.
        """
        folder = Path(root_keys_dir)
        root_keys = self._root_keys(folder)
        replaced = resolve_root_key_ids(self._root.signed, replace, self.error)
        root = next_root(self._root, self._clock() + (expiry or self._expiry("root")))
        new_signers = replace_root_keys(root.signed, replaced)
        sign_root(root, self._root.signed, [*(key.signer for key in root_keys.values()), *new_signers], self.error)
        new_keys: dict[str, Path] = {}
        for signer in new_signers:
            path = self._free_key_file(folder)
            signing_keys.write_private_key(path, signer)
            new_keys[str(signer.public_key.keyid)] = path
        self._write_root(root)
        retired = []
        for keyid in replaced:
            if keyid in root_keys:
                old = root_keys[keyid].path
                retired.append(old.with_name(old.name + ".retired"))
                os.replace(old, retired[-1])
        if retired:
            fsync_dir(folder)
        logger.warning("root version %d signed, valid until %s; %d root key(s) replaced", root.signed.version,
                       root.signed.expires, len(replaced))
        return RootChange(root.signed.version, root.signed.expires, new_keys, retired)

    def root_key_ids(self) -> list[str]:
        """The key ids of the root keys the current root trusts (what ``re_sign_root``'s ``replace`` takes)."""
        return list(self._root.signed.roles[Root.type].keyids)

    def _root_keys(self, folder: Path) -> dict[str, RootKey]:
        return load_root_keys(folder, self._root.signed, self.error)

    @staticmethod
    def _free_key_file(folder: Path) -> Path:
        """``root-<n>.pem`` with the first ``n`` no key file (current or retired) in ``folder`` uses."""
        n = 1
        while any(folder.glob(f"root-{n}.pem*")):
            n += 1
        return folder / f"root-{n}.pem"

    def _write_root(self, root: Metadata[Root]) -> None:
        """``root.json`` first (this server's commit point: opening the repository completes the rest), then
        ``N.root.json``, the file clients walk to."""
        data = root.to_bytes(_SERIALIZER)
        atomic_write(self.metadata_dir / "root.json", data)
        atomic_write(self.metadata_dir / f"{root.signed.version}.root.json", data)
        self._root = root

    def _trusted(self, md: Metadata[Any], role: str) -> bool:
        """Whether ``md`` is signed as the current root requires (not so after an interrupted rotation)."""
        return bool(self._root.signed.get_verification_result(role, md.signed_bytes, md.signatures))

    def _targets_signers(self, signers: Sequence[CryptoSigner] | None) -> Sequence[CryptoSigner]:
        if signers is not None:
            return signers
        if "targets" not in self._signers:
            raise self.error("Changing this repository's targets needs the keys of the people who sign them.")
        return [self._signers["targets"]]

    def _store(self, file: Path, name: str) -> tuple[str, int]:
        """Copy ``file`` to ``targets/<sha256>.<name>`` so that power loss leaves no half-written target;
        its sha256 and length."""
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
                raise self.error(f"{file} changed while it was being published; publish it again.")
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        fsync_dir(self.targets_dir)
        return sha256, dest.stat().st_size

    def _half_gone(self, signed: Signed, role: str, now: datetime) -> bool:
        return signed.expires - now < self._expiry(role) / 2

    def _sign(self, md: Metadata[Any], role: str, signers: Sequence[CryptoSigner]) -> bytes:
        md.signed.version += 1
        md.signed.expires = self._clock() + self._expiry(role)
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        return md.to_bytes(_SERIALIZER)

    def _commit(self, targets_signers: Sequence[CryptoSigner] | None, *, sign_snapshot: bool = True) -> None:
        """Sign and write the changed roles bottom-up; timestamp.json last makes the change visible."""
        if targets_signers is not None:
            data = self._sign(self._targets, "targets", targets_signers)
            atomic_write(self.metadata_dir / f"{self._targets.signed.version}.targets.json", data)
            self._snapshot.signed.meta["targets.json"] = _meta_file(self._targets.signed.version, data)
            sign_snapshot = True
        if sign_snapshot:
            data = self._sign(self._snapshot, "snapshot", [self._signers["snapshot"]])
            atomic_write(self.metadata_dir / f"{self._snapshot.signed.version}.snapshot.json", data)
            self._timestamp.signed.snapshot_meta = _meta_file(self._snapshot.signed.version, data)
        data = self._sign(self._timestamp, "timestamp", [self._signers["timestamp"]])
        atomic_write(self.metadata_dir / "timestamp.json", data)
