"""Apply central's signed desk configuration (accounts, thresholds, retention) after a verified refresh.

Runs inside the library updater's check, on the same ngclient ``Updater``
that has just refreshed the signed metadata, so a configuration passes
exactly the checks a library does (root chain, signatures, expiry, versions,
length and hash) before this module looks at it. Then, in order:

1. ``choose_config`` (pure): the newest configuration target, only if newer
   than the applied one; if central's newest is older, or the same version
   with other content, that is a rollback or a conflict and is refused.
2. The verified file is sealed (``core.keywrap.SealedDocument``): central
   encrypted it to every desk it trusted, because it carries account names
   and password hashes. The desk opens it with its key-wrapping key; then the
   plaintext must be what its signed description says (digest and version),
   and must parse with the strict schema in ``core.desk_config`` (known roles
   only, a device administrator kept).
3. ``DeskConfigStore.apply`` writes accounts and configuration in one transaction.

Every outcome that changes or refuses something is a ``config_change`` audit
event; the same refusal is recorded once, not on every poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater

from appliance.storage.desk_config import AppliedConfig, DeskConfigStore
from appliance.storage.library_keys import LibraryKeys
from appliance.updates.audit import ACTOR, AuditLike, RefusalRecord
from appliance.updates.trust import (
    DocumentRefusedError,
    DocumentResult,
    UpdateError,
    UpdateRefusedError,
    UpdateUnavailableError,
    explain_tuf_error,
)
from core.desk_config import MAX_CONFIG_BYTES, ConfigTargetInfo, DeskConfig, config_digest, is_config
from core.errors import WireFormatError
from core.keywrap import MAX_SEALED_DOCUMENT_BYTES, SealedDocument, UnwrapError
from tufrepo.failures import TufError

logger = logging.getLogger(__name__)

AUDIT_TYPE = "config_change"


class ConfigRefusedError(DocumentRefusedError):
    """Not applied; the desk keeps the one it has."""


@dataclass(frozen=True)
class ConfigOffer:
    name: str
    length: int
    info: ConfigTargetInfo

    @property
    def version(self) -> int:
        return self.info.config_version


ConfigResult = DocumentResult  # what one check did (appliance.updates.trust)


def _keeps(applied: AppliedConfig | None) -> str:
    return (f"This desk keeps configuration version {applied.version}." if applied
            else "This desk keeps its local settings and accounts.")


def choose_config(applied: AppliedConfig | None, offers: Iterable[ConfigOffer]) -> ConfigOffer | None:
    """The configuration to apply, ``None`` when up to date, or a refusal (rollback or conflicting version)."""
    offers = list(offers)
    if not offers:
        return None
    newest = max(offers, key=lambda o: o.version)
    if applied is None or newest.version > applied.version:
        return newest
    if newest.version < applied.version:
        raise ConfigRefusedError(
            f"Central offers configuration version {newest.version} at most, older than the applied version "
            f"{applied.version}. Configurations never go back a version; it was not applied. {_keeps(applied)} "
            f"Tell the RFR team: central's repository may have been restored from an old backup or tampered with.",
            "rollback")
    if newest.info.digest != applied.digest:
        raise ConfigRefusedError(
            f"Central offers configuration version {newest.version} with content other than the version "
            f"{applied.version} already applied; it was not applied. {_keeps(applied)} Tell the RFR team to "
            f"publish a new version.", "conflicting_version")
    return None


class ConfigUpdater:
    """Chooses, verifies and applies signed configurations for one desk."""

    def __init__(self, store: DeskConfigStore, audit: AuditLike, keys: LibraryKeys,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._audit = audit
        self._keys = keys  # the desk's id and key-wrapping key open the sealed document
        self._clock = clock
        self._refusals = RefusalRecord(audit, AUDIT_TYPE, "configuration")
        self.last_result: ConfigResult | None = None

    def applied_version(self) -> int:
        applied = self._store.applied()
        return applied.version if applied else 0

    def check(self, updater: Updater, names: Iterable[str]) -> ConfigResult:
        """Apply the newest configuration among ``names`` (targets ``updater`` has verified); never raises
        for configuration problems: they are in the result and the audit log."""
        applied = self._store.applied()
        target: str | None = None
        try:
            offer = choose_config(applied, self._offers(updater, names, applied))
            if offer is None:
                result = ConfigResult("up_to_date", applied.version if applied else 0,
                                      "The applied configuration is the newest published.")
            else:
                target = offer.name
                result = self._apply(updater, offer, applied)
        except UpdateRefusedError as e:
            result = ConfigResult("refused", applied.version if applied else 0, str(e), target, e.reason)
            self._refusals.record(result.reason, result.target, result.message, config_version=result.version)
        except UpdateError as e:
            result = ConfigResult("unavailable", applied.version if applied else 0, str(e), target, e.reason)
            logger.warning("configuration update unavailable: %s", e)
        self.last_result = result
        return result

    def _offers(self, updater: Updater, names: Iterable[str], applied: AppliedConfig | None) -> list[ConfigOffer]:
        offers = []
        for name in names:
            try:
                target = updater.get_targetinfo(name)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise self._explain(e, applied) from e
            if target is None or not is_config(target.custom):
                continue
            try:
                info = ConfigTargetInfo.from_dict(target.custom)
                if info.name != name:
                    raise WireFormatError(f"describes itself as {info.name}")
            except WireFormatError as e:
                logger.warning("ignored configuration target %s: %s", name, e)
                continue
            offers.append(ConfigOffer(name, target.length, info))
        return offers

    def _apply(self, updater: Updater, offer: ConfigOffer, applied: AppliedConfig | None) -> ConfigResult:
        keeps = _keeps(applied)
        if offer.length > MAX_SEALED_DOCUMENT_BYTES:
            raise ConfigRefusedError(f"{offer.name} is {offer.length} bytes, over the {MAX_SEALED_DOCUMENT_BYTES}-"
                                     f"byte limit for a sealed configuration; it was not downloaded. {keeps}",
                                     "invalid_config")
        data = self._open(offer, self._download(updater, offer, applied), keeps)
        if len(data) > MAX_CONFIG_BYTES or config_digest(data) != offer.info.digest:
            raise ConfigRefusedError(f"{offer.name} is not what central's signed description says (its digest "
                                     f"differs). It was not applied. {keeps} Tell the RFR team.", "result_mismatch")
        try:
            config = DeskConfig.parse(data)
        except WireFormatError as e:
            raise ConfigRefusedError(f"{offer.name} was refused: {e} Nothing was applied. {keeps}",
                                     "invalid_config") from e
        if config.version != offer.version:
            raise ConfigRefusedError(
                f"{offer.name} holds configuration version {config.version}, not the version {offer.version} "
                f"central signed it as (an old configuration replayed under a new name?). It was not applied. "
                f"{keeps} Tell the RFR team.", "result_mismatch")
        changes = self._store.apply(config, offer.info.digest, self._clock())
        self._refusals.clear()
        previous = applied.version if applied else None
        logger.info("configuration v%d applied from %s", config.version, offer.name)
        self._audit.record(AUDIT_TYPE, ACTOR, "ok", config_version=config.version, previous_version=previous,
                           target=offer.name, digest=offer.info.digest, top_k=config.thresholds.top_k,
                           viable_match_days=config.retention.viable_match_days, accounts_created=changes.created,
                           accounts_updated=changes.updated, accounts_disabled=changes.disabled,
                           search_authorisations_changed=changes.authorisations)
        return ConfigResult("applied", config.version,
                            f"Configuration version {config.version} applied (was {previous or 'none'}).", offer.name)

    def _open(self, offer: ConfigOffer, sealed: bytes, keeps: str) -> bytes:
        """The configuration's plaintext, opened with this desk's key-wrapping key."""
        try:
            document = SealedDocument.from_bytes(sealed)
        except WireFormatError as e:
            raise ConfigRefusedError(f"{offer.name} is not a sealed configuration: {e} Nothing was applied. {keeps}",
                                     "invalid_config") from e
        if self._keys.private is None:
            raise ConfigRefusedError(f"{offer.name} cannot be opened: this desk has no key-wrapping key (run "
                                     f"`python -m provisioning device-keygen`). Nothing was applied. {keeps}",
                                     "not_for_this_desk")
        try:
            return document.open(self._keys.device_id, self._keys.private)
        except UnwrapError as e:
            raise ConfigRefusedError(f"{offer.name} cannot be opened on this desk: {e} Nothing was applied. {keeps} "
                                     f"Ask the RFR team to publish the configuration again.",
                                     "not_for_this_desk") from e

    def _download(self, updater: Updater, offer: ConfigOffer, applied: AppliedConfig | None) -> bytes:
        target = updater.get_targetinfo(offer.name)
        if target is None:  # pragma: no cover - listed a moment ago from the same trusted metadata
            raise UpdateUnavailableError(f"{offer.name} is no longer offered.")
        try:
            # ngclient writes the file only once length and hash match what central signed.
            path = Path(updater.download_target(target))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise self._explain(e, applied) from e
        except OSError as e:
            raise UpdateError(f"The desk could not store {offer.name} ({e}). {_keeps(applied)}") from e
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    @staticmethod
    def _explain(error: TufError, applied: AppliedConfig | None) -> UpdateError:
        """TUF's verdict with the library wording replaced: the reason codes are the same as for libraries."""
        explained = explain_tuf_error(error, 0)
        message = f"The signed configuration failed verification ({error}). Nothing was applied. {_keeps(applied)}"
        if isinstance(explained, UpdateRefusedError):
            return ConfigRefusedError(message, explained.reason)
        return UpdateUnavailableError(f"Could not download the configuration from central ({error}). "
                                      f"{_keeps(applied)} The desk tries again later.")
