"""The release TUF repository: appliance software bundles, signed by release keys that never sign libraries.

A separate repository rather than a delegated role in the library repository:
its own root means a desk's trust in software releases and in libraries are
two anchors (``release-root.json`` and the library root), so a compromised
library signer cannot ship code and a release signer cannot ship a library,
and the two can be rotated, expired and served independently. A delegation
would give the same key separation but tie both to one root and one snapshot.

Roles (consistent snapshots, like the library repository)::

    root       3 offline keys, threshold 2   --root-keys-dir (kept offline)
    targets    3 release keys, threshold 2   --release-keys-dir (each held by a different person)
    snapshot   1 online key                  REPO/keys/snapshot.pem
    timestamp  1 online key                  REPO/keys/timestamp.pem

Each bundle is a target whose signed ``custom`` is ``{"version", "min_from"}``.
Files are written under temporary names and renamed; timestamp.json last.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from core import signing_keys
from core.files import atomic_write
from core.signing_keys import SigningKeyError
from firmware.bundle import bundle_name
from firmware.errors import ReleaseError
from firmware.version import Version

logger = logging.getLogger(__name__)

EXPIRY = {"root": timedelta(days=365), "targets": timedelta(days=90),
          "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}
ONLINE_ROLES = ("snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=False)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_signer(path: Path) -> CryptoSigner:
    """A release role's key, refused with the release tools' own error family when unreadable."""
    try:
        return signing_keys.load_signer(path)
    except SigningKeyError as e:
        raise ReleaseError(str(e)) from e


def _meta_file(version: int, data: bytes) -> MetaFile:
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


def _outside(repo: Path, folder: Path, what: str) -> None:
    if folder == repo or repo in folder.parents:
        raise ReleaseError(f"The {what} folder must be outside the repository: those keys are never served.")
    if folder.exists() and any(folder.iterdir()):
        raise ReleaseError(f"{folder} is not empty; give a new folder for the {what}.")


def init_release_repository(repo_dir: Path, root_keys_dir: Path, release_keys_dir: Path, *,
                            root_keys: int = 3, root_threshold: int = 2, release_keys: int = 3,
                            release_threshold: int = 2, clock: Clock = utc_now) -> ReleaseRepository:
    """Create the keys and version 1 of every role (no bundles yet)."""
    repo_dir, root_keys_dir, release_keys_dir = (Path(p).resolve() for p in (repo_dir, root_keys_dir, release_keys_dir))
    if (repo_dir / "metadata").exists():
        raise ReleaseError(f"{repo_dir} already holds a repository; use publish, or choose an empty folder.")
    if not (1 <= root_threshold <= root_keys and 1 <= release_threshold <= release_keys):
        raise ReleaseError("Each threshold must be between 1 and its number of keys.")
    _outside(repo_dir, root_keys_dir, "root keys")
    _outside(repo_dir, release_keys_dir, "release keys")
    if root_keys_dir == release_keys_dir:
        raise ReleaseError("Root keys and release keys must be in different folders: different people hold them.")
    now = clock()
    root_signers = [CryptoSigner.generate_ed25519() for _ in range(root_keys)]
    release_signers = [CryptoSigner.generate_ed25519() for _ in range(release_keys)]
    online = {role: CryptoSigner.generate_ed25519() for role in ONLINE_ROLES}

    root = Root(expires=now + EXPIRY["root"], consistent_snapshot=True)
    for signer in root_signers:
        root.add_key(signer.public_key, "root")
    for signer in release_signers:
        root.add_key(signer.public_key, "targets")
    for role, signer in online.items():
        root.add_key(signer.public_key, role)
    root.roles["root"].threshold = root_threshold
    root.roles["targets"].threshold = release_threshold
    root_md = Metadata(root)
    for signer in root_signers:
        root_md.sign(signer, append=True)

    for i, signer in enumerate(root_signers, start=1):
        signing_keys.write_private_key(root_keys_dir / f"root-{i}.pem", signer)
    for i, signer in enumerate(release_signers, start=1):
        signing_keys.write_private_key(release_keys_dir / f"release-{i}.pem", signer)
    for role, signer in online.items():
        signing_keys.write_private_key(repo_dir / "keys" / f"{role}.pem", signer)
    (repo_dir / "targets").mkdir(parents=True, exist_ok=True)
    root_bytes = root_md.to_bytes(_SERIALIZER)
    atomic_write(repo_dir / "metadata" / "1.root.json", root_bytes)
    atomic_write(repo_dir / "metadata" / "root.json", root_bytes)

    targets: Metadata = Metadata(Targets(expires=now))
    snapshot: Metadata = Metadata(Snapshot(expires=now))
    timestamp: Metadata = Metadata(Timestamp(expires=now, snapshot_meta=MetaFile(version=1)))
    for md in (targets, snapshot, timestamp):
        md.signed.version = 0  # the first commit signs version 1 of each
    repo = ReleaseRepository.__new__(ReleaseRepository)
    repo._setup(repo_dir, clock, root_md, online, targets, snapshot, timestamp)
    repo._commit(release_signers[:release_threshold])
    logger.info("release repository created in %s", repo_dir)
    return repo


class ReleaseRepository:
    """An existing release repository, opened with its online snapshot and timestamp keys."""

    def __init__(self, repo_dir: Path, clock: Clock = utc_now) -> None:
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
            raise ReleaseError(f"{repo_dir} is not a complete release repository ({e.filename} is missing); "
                               f"create one with `python -m firmware.release init`.") from e
        except (ValueError, KeyError) as e:
            raise ReleaseError(f"The metadata in {meta} cannot be read ({e}); restore it from backup.") from e
        online = {role: load_signer(repo_dir / "keys" / f"{role}.pem") for role in ONLINE_ROLES}
        self._setup(repo_dir, clock, root, online, targets, snapshot, timestamp)

    def _setup(self, repo_dir: Path, clock: Clock, root: Metadata[Root], online: dict[str, CryptoSigner],
               targets: Metadata[Targets], snapshot: Metadata[Snapshot], timestamp: Metadata[Timestamp]) -> None:
        self.repo_dir = repo_dir
        self.metadata_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"
        self._clock = clock
        self._root = root
        self._online = online
        self._targets = targets
        self._snapshot = snapshot
        self._timestamp = timestamp

    @property
    def root_bytes(self) -> bytes:
        """The trust anchor to install on every desk as the update agent's ``trusted_root``."""
        return (self.metadata_dir / "1.root.json").read_bytes()

    def published(self) -> dict[str, dict[str, object]]:
        """Every bundle currently offered, with its signed custom metadata."""
        return {name: dict(tf.custom) for name, tf in self._targets.signed.targets.items()}

    def target_path(self, name: str) -> Path:
        tf = self._targets.signed.targets[name]
        return self.targets_dir / f"{tf.hashes['sha256']}.{name}"

    def _release_signers(self, signers: Sequence[CryptoSigner]) -> list[CryptoSigner]:
        """Only keys root trusts for targets count, and there must be at least the threshold of them."""
        role = self._root.signed.roles["targets"]
        trusted = {s.public_key.keyid: s for s in signers if s.public_key.keyid in role.keyids}
        untrusted = [s.public_key.keyid[:12] for s in signers if s.public_key.keyid not in role.keyids]
        if untrusted:
            raise ReleaseError(f"Key(s) {', '.join(untrusted)} are not release keys of this repository "
                               f"(library or other keys cannot sign releases).")
        if len(trusted) < role.threshold:
            raise ReleaseError(f"Publishing a release needs {role.threshold} different release keys; "
                               f"{len(trusted)} given.")
        return list(trusted.values())

    def publish(self, bundle: Path, version: Version, min_from: Version | None,
                release_signers: Sequence[CryptoSigner]) -> TargetFile:
        """Add ``bundle`` as the target for ``version`` and sign the new repository state."""
        signers = self._release_signers(release_signers)
        name = bundle_name(version)
        if name in self._targets.signed.targets:
            raise ReleaseError(f"{name} is already published; release a new version instead.")
        newest = [Version(str(c["version"])) for c in self.published().values()]
        if newest and version <= max(newest):
            raise ReleaseError(f"Version {version} is not newer than the published {max(newest)}; "
                               f"desks only move forward, so give a higher version.")
        bundle = Path(bundle)
        if not bundle.is_file():
            raise ReleaseError(f"{bundle} does not exist or is not a file.")
        data = bundle.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        atomic_write(self.targets_dir / f"{sha256}.{name}", data)
        custom = {"version": str(version), "min_from": str(min_from) if min_from else None}
        target = TargetFile(length=len(data), hashes={"sha256": sha256}, path=name,
                            unrecognized_fields={"custom": custom})
        self._targets.signed.targets[name] = target
        self._commit(signers)
        logger.info("published release %s (%d bytes)", name, len(data))
        return target

    def withdraw(self, version: Version, release_signers: Sequence[CryptoSigner]) -> None:
        """Stop offering a release; desks that installed it keep it (they never go back by themselves)."""
        signers = self._release_signers(release_signers)
        name = bundle_name(version)
        if name not in self._targets.signed.targets:
            raise ReleaseError(f"{name} is not published.")
        del self._targets.signed.targets[name]
        self._commit(signers)

    def refresh_timestamp(self) -> None:
        """Re-sign snapshot and timestamp (run hourly): desks refuse expired metadata."""
        now = self._clock()
        self._commit(None, sign_snapshot=self._snapshot.signed.expires - now < EXPIRY["snapshot"] / 2)

    def _sign(self, md: Metadata, role: str, signers: Sequence[CryptoSigner]) -> bytes:
        md.signed.version += 1
        md.signed.expires = self._clock() + EXPIRY[role]
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        return md.to_bytes(_SERIALIZER)

    def _commit(self, release_signers: Sequence[CryptoSigner] | None, *, sign_snapshot: bool = True) -> None:
        """Sign bottom-up; timestamp.json, written last, makes the new state visible."""
        if release_signers is not None:
            data = self._sign(self._targets, "targets", release_signers)
            atomic_write(self.metadata_dir / f"{self._targets.signed.version}.targets.json", data)
            self._snapshot.signed.meta["targets.json"] = _meta_file(self._targets.signed.version, data)
            sign_snapshot = True
        if sign_snapshot:
            data = self._sign(self._snapshot, "snapshot", [self._online["snapshot"]])
            atomic_write(self.metadata_dir / f"{self._snapshot.signed.version}.snapshot.json", data)
            self._timestamp.signed.snapshot_meta = _meta_file(self._snapshot.signed.version, data)
        data = self._sign(self._timestamp, "timestamp", [self._online["timestamp"]])
        atomic_write(self.metadata_dir / "timestamp.json", data)


def copy_root(repo: ReleaseRepository, dest: Path) -> None:
    """Write the repository's first root where a desk image expects its release trust anchor."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo.metadata_dir / "1.root.json", dest)
