"""Sign each desk's authorisation manifest into the library repository, and tell the fleet to look.

Called by ``python -m central.publish publish-authorisations`` and by the library pages right after an
action, when central's settings name the repository. For every desk concerned
(``central.libraries.manifest.desks``) the manifest is rebuilt from the tables; one that says the same as
the desk's newest is not signed again. A new one is kept in ``authorisation_manifests`` first (so its
version is never reused, even if signing fails), then signed as a plain TUF target
(``authorisation-<device>-vNNNNNN.json``, custom ``AuthorisationTargetInfo``) replacing that desk's older
one, and the publication is written to the library log. The announcement (kind ``authorisation``) makes
desks check at once; the running server retains it on MQTT (``central.publish.announcer``).
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from central.libraries import manifest as manifests
from central.libraries.store import LibraryStore
from central.publish.announcer import ANNOUNCEMENT_FILE
from central.publish.repository import PublishError, TufRepository
from central.publish.settings import PublishSettings
from core.files import atomic_write
from core.library_announce import LibraryAnnouncement
from core.library_authorisation import AUTHORISATION_KIND, AuthorisationManifest, AuthorisationTargetInfo

#: The library log's ``library_id`` for an action on manifests rather than on one library.
MANIFESTS = "*manifests*"
_LOCK_FILE = ".authorisations.lock"


@dataclass(frozen=True)
class Published:
    device_id: str
    version: int
    target: str
    libraries: tuple[str, ...]
    retired: tuple[str, ...]


def publish_authorisations(repo: TufRepository, store: LibraryStore, registered: Iterable[str], actor: str,
                           now: datetime | None = None, revoked: Iterable[str] = ()) -> list[Published]:
    """Sign a new manifest for each desk whose authorisations changed; what was published."""
    moment = now or datetime.now(UTC)
    done: list[Published] = []
    for device_id in manifests.desks(store, registered, revoked):
        manifest = manifests.build(store, device_id, moment)
        if not manifests.changed(store, manifest):
            continue
        done.append(_publish_one(repo, store, manifest, actor, moment))
    if done:
        last = done[-1]
        info = repo.published_authorisations()[last.target]
        announcement = LibraryAnnouncement.now(last.version, last.target, AUTHORISATION_KIND, info.digest)
        atomic_write(repo.repo_dir / ANNOUNCEMENT_FILE, announcement.to_bytes())
    return done


def publish_to(repo_dir: str | Path, settings: PublishSettings, store: LibraryStore, registered: Iterable[str],
               actor: str, now: datetime | None = None, revoked: Iterable[str] = ()) -> list[Published]:
    """Open the repository afresh and publish, one publisher at a time (several web workers may act at once:
    each must sign on top of the other's targets, not beside them)."""
    with _exclusive(Path(repo_dir)):
        return publish_authorisations(TufRepository(Path(repo_dir), settings), store, registered, actor, now,
                                      revoked)


@contextmanager
def _exclusive(repo_dir: Path) -> Iterator[None]:
    try:
        handle = open(repo_dir / _LOCK_FILE, "a")  # noqa: SIM115 (held for the with block below)
    except OSError as e:
        raise PublishError(f"Cannot use the library repository {repo_dir}: {e.strerror or e}.") from e
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish_one(repo: TufRepository, store: LibraryStore, manifest: AuthorisationManifest, actor: str,
                 now: datetime) -> Published:
    document = manifest.to_bytes()
    info = AuthorisationTargetInfo.of(document)  # parses it: central never signs what a desk would refuse
    if not store.add_manifest(manifest.device_id, manifest.issued_at, document, info.digest, manifest.version):
        raise PublishError(f"Another publication for {manifest.device_id} happened at the same time; publish the "
                           "authorisations again.")
    with tempfile.TemporaryDirectory(prefix="rfr-authorisation-") as work:
        path = Path(work) / info.name
        path.write_bytes(document)
        repo.publish_authorisation(path, info)
    published = Published(manifest.device_id, manifest.version, info.name,
                          tuple(lib.library_id for lib in manifest.libraries), tuple(manifest.retired))
    store.log_action(MANIFESTS, "publish_manifest", actor,
                     {"device_id": published.device_id, "version": published.version, "target": published.target,
                      "libraries": list(published.libraries), "retired": list(published.retired),
                      "digest": info.digest}, now)
    return published
