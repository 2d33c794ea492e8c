"""Fetch and verify release bundles with python-tuf's ngclient; the release root is the only trust anchor.

ngclient checks the root chain, signatures and thresholds of every role,
versions never going back, expiry, and the target's length and sha256. This
module only lists what the verified targets metadata offers and maps TUF's
errors, through the one table in ``tufrepo.failures``, to the agent's two
families: refused (an attack or a mistake, the desk keeps its version) and
unavailable (try again later).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater

from firmware.agent.state import Offer
from firmware.errors import FirmwareError, UpdateRefusedError, UpdateUnavailableError
from firmware.version import Version
from tufrepo.failures import TufError, TufFailure

logger = logging.getLogger(__name__)


def explain(error: TufError) -> UpdateRefusedError | UpdateUnavailableError:
    """A TUF error as the agent's own, with a reason word and a message a person can act on."""
    failure = TufFailure.of(error, listing="release list", download="release")
    if failure.refused:
        return UpdateRefusedError(failure.reason, failure.message)
    return UpdateUnavailableError(f"{failure.message} The agent tries again at its next run.")


class ReleaseClient:
    """One TUF session against the release repository; metadata cached under ``state_dir/tuf``."""

    def __init__(self, repository_url: str, state_dir: Path, trusted_root: Path) -> None:
        base = repository_url.rstrip("/")
        self.metadata_url, self.targets_url = f"{base}/metadata/", f"{base}/targets/"
        self.metadata_dir = state_dir / "tuf" / "metadata"
        self.download_dir = state_dir / "tuf" / "downloads"
        self.trusted_root = trusted_root
        self._updater: Updater | None = None

    def _open(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = None
        if not (self.metadata_dir / "root.json").exists():
            try:
                bootstrap = self.trusted_root.read_bytes()
            except OSError as e:
                raise FirmwareError(f"Cannot read the release trust anchor {self.trusted_root} ({e}).") from e
        return Updater(str(self.metadata_dir), self.metadata_url, str(self.download_dir), self.targets_url,
                       bootstrap=bootstrap)

    def offers(self) -> list[Offer]:
        """Refresh the signed metadata and list every bundle it offers."""
        try:
            self._updater = self._open()
            self._updater.refresh()
            # ngclient lists no targets; targets.json on disk is the copy refresh() just verified and stored.
            listing = Metadata[Targets].from_bytes((self.metadata_dir / "targets.json").read_bytes())
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise explain(e) from e
        offers = []
        for name, target in listing.signed.targets.items():
            try:
                custom = target.custom
                min_from = custom.get("min_from")
                offers.append(Offer(name, Version(str(custom["version"])), Version(min_from) if min_from else None))
            except (FirmwareError, KeyError, AttributeError) as e:
                logger.warning("ignoring release target %s with unreadable custom metadata (%s)", name, e)
        return offers

    def download(self, offer: Offer) -> Path:
        """The verified bundle file (length and sha256 checked against the signed targets metadata)."""
        if self._updater is None:
            raise FirmwareError("offers() must be called before download().")
        try:
            info = self._updater.get_targetinfo(offer.name)
            if info is None:
                raise UpdateRefusedError("missing_target", f"{offer.name} is no longer offered.")
            dest = self.download_dir / offer.name
            dest.unlink(missing_ok=True)
            return Path(self._updater.download_target(info, str(dest)))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise explain(e) from e
