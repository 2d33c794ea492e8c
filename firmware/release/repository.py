"""The release TUF repository: appliance software bundles, signed by release keys that never sign libraries.

A separate repository rather than a delegated role in the library repository:
its own root means a desk's trust in software releases and in libraries are
two anchors (``release-root.json`` and the library root), so a compromised
library signer cannot ship code and a release signer cannot ship a library,
and the two can be rotated, expired and served independently. A delegation
would give the same key separation but tie both to one root and one snapshot.

Roles (consistent snapshots, the same signed-repository skeleton as the library
repository, ``tufrepo.repository``)::

    root       3 offline keys, threshold 2   --root-keys-dir (kept offline)
    targets    3 release keys, threshold 2   --release-keys-dir (each held by a different person)
    snapshot   1 online key                  REPO/keys/snapshot.pem
    timestamp  1 online key                  REPO/keys/timestamp.pem

Each bundle is a target whose signed ``custom`` is ``{"version", "min_from"}``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from firmware.bundle import bundle_name
from firmware.errors import ReleaseError
from firmware.version import Version
from tufrepo.repository import Clock, OfflineKeys, SignedRepository, utc_now

logger = logging.getLogger(__name__)


def init_release_repository(repo_dir: Path, root_keys_dir: Path, release_keys_dir: Path, *,
                            root_keys: int = 3, root_threshold: int = 2, release_keys: int = 3,
                            release_threshold: int = 2, clock: Clock = utc_now) -> ReleaseRepository:
    """Create the keys and version 1 of every role (no bundles yet)."""
    release = OfflineKeys(Path(release_keys_dir), release_keys, release_threshold, "release", "release keys")
    ReleaseRepository.initialise(repo_dir, root_keys_dir, root_keys=root_keys, root_threshold=root_threshold,
                                 targets_keys=release, clock=clock)
    return ReleaseRepository(repo_dir, clock=clock)


class ReleaseRepository(SignedRepository):
    """An existing release repository, opened with its online snapshot and timestamp keys."""

    error = ReleaseError
    online_roles = ("snapshot", "timestamp")
    kind = "release repository"
    init_command = "`python -m firmware.release init`"

    def published(self) -> dict[str, dict[str, object]]:
        """Every bundle currently offered, with its signed custom metadata."""
        return {name: dict(tf.custom) for name, tf in self.target_files().items()}

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
        if name in self.target_files():
            raise ReleaseError(f"{name} is already published; release a new version instead.")
        newest = [Version(str(c["version"])) for c in self.published().values()]
        if newest and version <= max(newest):
            raise ReleaseError(f"Version {version} is not newer than the published {max(newest)}; "
                               f"desks only move forward, so give a higher version.")
        custom = {"version": str(version), "min_from": str(min_from) if min_from else None}
        target = self.add_target(bundle, name, custom, signers)
        logger.info("published release %s (%d bytes)", name, target.length)
        return target

    def withdraw(self, version: Version, release_signers: Sequence[CryptoSigner]) -> None:
        """Stop offering a release; desks that installed it keep it (they never go back by themselves)."""
        self.remove_target(bundle_name(version), self._release_signers(release_signers))


def copy_root(repo: ReleaseRepository, dest: Path) -> None:
    """Write the repository's first root where a desk image expects its release trust anchor."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo.metadata_dir / "1.root.json", dest)
