"""Apply central's signed library authorisation manifest for this desk, after a verified refresh.

Runs inside the library updater's check, on the same ngclient ``Updater`` that has just refreshed the
signed metadata, before the libraries are looked at (so a library authorised in this manifest is fetched
in the same check). A manifest passes exactly the checks a library does (root chain, signatures, expiry,
versions, length and hash) before this module reads it; then, in ``apply_verified``:

1. it must parse strictly (``core.library_authorisation.AuthorisationManifest``) and be what its signed
   description says (digest, version, desk);
2. it must name this desk: a manifest for another desk is refused whole (it would authorise that desk's
   libraries here);
3. its version must be newer than the applied one: an older manifest, even validly signed, is a rollback
   and is refused (it could re-authorise a library central has since suspended).

Then ``AuthorisationStore.apply`` keeps it, ``authorisation_applied`` is audited with what changed, and
``on_applied`` runs (the expiry sweep destroys retired libraries at once). Refusals are
``authorisation_refused`` with a reason, each recorded once while it lasts, like configuration refusals.
Test desks are given their manifest through ``apply_verified`` too: the same path, after the TUF step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater

from appliance.storage.authorisation import AuthorisationStore
from appliance.updates.audit import ACTOR, AuditLike, RefusalRecord
from appliance.updates.trust import (
    DocumentRefusedError,
    DocumentResult,
    UpdateError,
    UpdateRefusedError,
    UpdateUnavailableError,
    explain_tuf_error,
)
from core.errors import WireFormatError
from core.library_authorisation import (
    MAX_MANIFEST_BYTES,
    AuthorisationManifest,
    AuthorisationTargetInfo,
    is_authorisation,
    manifest_digest,
)
from tufrepo.failures import TufError

logger = logging.getLogger(__name__)

APPLIED, REFUSED = "authorisation_applied", "authorisation_refused"


class AuthorisationRefusedError(DocumentRefusedError):
    """Not applied; the desk keeps the one it has."""


@dataclass(frozen=True)
class AuthorisationOffer:
    name: str
    length: int
    info: AuthorisationTargetInfo

    @property
    def version(self) -> int:
        return self.info.manifest_version


AuthorisationResult = DocumentResult  # what one check did (appliance.updates.trust)


def _keeps(version: int) -> str:
    return (f"This desk keeps library authorisation version {version}." if version
            else "This desk has no library authorisation yet and searches no library.")


class AuthorisationUpdater:
    """Chooses, verifies and applies this desk's signed authorisation manifests."""

    def __init__(self, store: AuthorisationStore, audit: AuditLike, device_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._audit = audit
        self.device_id = device_id
        self._clock = clock
        self._refusals = RefusalRecord(audit, REFUSED, "library authorisation")
        self.last_result: AuthorisationResult | None = None
        #: Called with each manifest applied (the expiry sweep); never raises into a check.
        self.on_applied: Callable[[AuthorisationManifest], None] | None = None

    def applied_version(self) -> int:
        return self._store.applied_version()

    # --- the check, on verified metadata -------------------------------------------------------

    def check(self, updater: Updater, names: Iterable[str]) -> AuthorisationResult:
        """Apply the newest manifest for this desk among ``names`` (targets ``updater`` has verified)."""
        applied = self._store.applied_version()
        target: str | None = None
        try:
            offer = self._choose(self._offers(updater, names), applied)
            if offer is None:
                result = AuthorisationResult("up_to_date", applied, "The applied library authorisation is the "
                                             "newest published for this desk.")
            else:
                target = offer.name
                result = self.apply_verified(self._download(updater, offer, applied), offer.info, offer.name)
        except UpdateRefusedError as e:
            result = self._refused(e, target, applied)
        except UpdateError as e:
            result = AuthorisationResult("unavailable", applied, str(e), target, e.reason)
            logger.warning("library authorisation unavailable: %s", e)
        self.last_result = result
        return result

    def verification_failed(self, error: UpdateRefusedError) -> AuthorisationResult:
        """The signed metadata itself was refused (wrong key, rollback of the listing, expiry): no manifest in
        it can be believed, so none is applied; recorded as an authorisation refusal too."""
        applied = self._store.applied_version()
        result = AuthorisationResult("refused", applied, f"The signed list from central failed verification, so "
                                     f"no library authorisation in it was applied. {_keeps(applied)} ({error})",
                                     None, error.reason)
        self._refusals.record(result.reason, None, result.message, manifest_version=applied)
        self.last_result = result
        return result

    def _refused(self, e: UpdateRefusedError, target: str | None, applied: int) -> AuthorisationResult:
        result = AuthorisationResult("refused", applied, str(e), target or e.target, e.reason)
        self._refusals.record(result.reason, result.target, result.message, manifest_version=applied)
        return result

    def _offers(self, updater: Updater, names: Iterable[str]) -> list[AuthorisationOffer]:
        offers = []
        for name in names:
            try:
                target = updater.get_targetinfo(name)
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
                raise self._explain(e) from e
            if target is None or not is_authorisation(target.custom):
                continue
            try:
                info = AuthorisationTargetInfo.from_dict(target.custom)
                if info.name != name:
                    raise WireFormatError(f"describes itself as {info.name}")
            except WireFormatError as e:
                logger.warning("ignored authorisation target %s: %s", name, e)
                continue
            if info.device_id != self.device_id:
                continue  # another desk's manifest: not ours to look at
            offers.append(AuthorisationOffer(name, target.length, info))
        return offers

    def _choose(self, offers: list[AuthorisationOffer], applied: int) -> AuthorisationOffer | None:
        if not offers:
            return None
        newest = max(offers, key=lambda o: o.version)
        if newest.version > applied:
            return newest
        if newest.version < applied:
            raise AuthorisationRefusedError(
                f"Central offers library authorisation version {newest.version} at most, older than the applied "
                f"version {applied}. An authorisation never goes back a version (it could re-authorise a library "
                f"since suspended); it was not applied. {_keeps(applied)} Tell the RFR team: central's repository "
                f"may have been restored from an old backup or tampered with.", "rollback")
        current = self._store.applied()
        if current is not None and newest.info.digest != current.digest:
            raise AuthorisationRefusedError(
                f"Central offers library authorisation version {newest.version} with content other than the "
                f"version already applied; it was not applied. {_keeps(applied)} Tell the RFR team to publish a "
                f"new version.", "conflicting_version")
        return None

    def _download(self, updater: Updater, offer: AuthorisationOffer, applied: int) -> bytes:
        if offer.length > MAX_MANIFEST_BYTES:
            raise AuthorisationRefusedError(f"{offer.name} is {offer.length} bytes, over the {MAX_MANIFEST_BYTES}-"
                                            f"byte limit; it was not downloaded. {_keeps(applied)}", "invalid_manifest")
        target = updater.get_targetinfo(offer.name)
        if target is None:  # pragma: no cover - listed a moment ago from the same trusted metadata
            raise UpdateUnavailableError(f"{offer.name} is no longer offered.")
        try:
            # ngclient writes the file only once length and hash match what central signed.
            path = Path(updater.download_target(target))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
            raise self._explain(e) from e
        except OSError as e:
            raise UpdateError(f"The desk could not store {offer.name} ({e}). {_keeps(applied)}") from e
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    # --- applying a verified manifest ----------------------------------------------------------

    def apply_verified(self, document: bytes, info: AuthorisationTargetInfo, target: str) -> AuthorisationResult:
        """Apply ``document``, whose bytes TUF has verified as the target ``target`` described by ``info``.

        Raises ``AuthorisationRefusedError`` (not applied) for a document that is not what was signed, not for
        this desk or not newer; otherwise applies, audits and returns the result.
        """
        applied = self._store.applied_version()
        keeps = _keeps(applied)
        if len(document) > MAX_MANIFEST_BYTES or manifest_digest(document) != info.digest:
            raise AuthorisationRefusedError(f"{target} is not what central's signed description says (its digest "
                                            f"differs). It was not applied. {keeps} Tell the RFR team.",
                                            "result_mismatch")
        try:
            manifest = AuthorisationManifest.parse(document)
        except WireFormatError as e:
            raise AuthorisationRefusedError(f"{target} was refused: {e} It was not applied. {keeps}",
                                            "invalid_manifest") from e
        if manifest.device_id != self.device_id or info.device_id != self.device_id:
            raise AuthorisationRefusedError(
                f"{target} is the library authorisation of desk {manifest.device_id!r}, not of this desk "
                f"({self.device_id}). It was not applied. {keeps} Tell the RFR team.", "not_for_this_desk")
        if manifest.version != info.manifest_version:
            raise AuthorisationRefusedError(
                f"{target} holds authorisation version {manifest.version}, not the version {info.manifest_version} "
                f"central signed it as (an old manifest replayed under a new name?). It was not applied. {keeps} "
                f"Tell the RFR team.", "result_mismatch")
        if manifest.version <= applied:
            raise AuthorisationRefusedError(
                f"{target} is library authorisation version {manifest.version}, not newer than the applied version "
                f"{applied}; it was not applied. {keeps}", "rollback")
        previous = self._store.manifest()
        self._store.apply(document, manifest, info.digest, self._clock())
        self._refusals.clear()
        before = {lib.library_id: lib for lib in previous.libraries} if previous else {}
        now = {lib.library_id: lib for lib in manifest.libraries}
        logger.info("library authorisation v%d applied from %s", manifest.version, target)
        self._audit.record(
            APPLIED, ACTOR, "ok", manifest_version=manifest.version, previous_version=applied or None, target=target,
            digest=info.digest,
            libraries=[{"library_id": lib.library_id, "name": lib.name, "kind": lib.kind, "status": lib.status,
                        "review_due": lib.review_due.isoformat(),
                        "expires_at": lib.expires_at.isoformat() if lib.expires_at else None}
                       for lib in manifest.libraries],
            added=sorted(set(now) - set(before)), removed=sorted(set(before) - set(now)),
            suspended=sorted(i for i, lib in now.items() if lib.status == "suspended"
                             and (i not in before or before[i].status != "suspended")),
            retired=sorted(manifest.retired))
        result = AuthorisationResult("applied", manifest.version, f"Library authorisation version "
                                     f"{manifest.version} applied (was {applied or 'none'}).", target)
        if self.on_applied is not None:
            try:
                self.on_applied(manifest)
            except Exception:
                logger.exception("after library authorisation v%d: the expiry sweep failed", manifest.version)
        return result

    @staticmethod
    def _explain(error: TufError) -> UpdateError:
        explained = explain_tuf_error(error, 0)
        if isinstance(explained, UpdateRefusedError):
            return AuthorisationRefusedError(f"The signed library authorisation failed verification ({error}). "
                                             f"Nothing was applied.", explained.reason)
        return UpdateUnavailableError(f"Could not download the library authorisation from central ({error}). "
                                      f"The desk tries again later.")
