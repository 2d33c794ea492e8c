"""Pure decisions about library updates: which verified target fits this desk, and why one is refused.

No I/O here (like python-tuf's ``TrustedMetadataSet``): every function takes
what is installed and what central offers, and returns a choice or raises an
``UpdateError`` whose message a custody officer or a technician can act on.
Each error also has a short ``reason`` code for the audit event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import CustodyRfrError
from core.library_announce import LibraryTargetInfo
from tufrepo.failures import TufError, TufFailure

_KEEPS = "This desk keeps using library version {version}."


class UpdateError(CustodyRfrError):
    """A library update did not happen; the installed library is unchanged and still searched."""

    reason = "update_failed"
    target: str | None = None  # the target being installed when it failed, if any


class UpdateRefusedError(UpdateError):
    """What central offered is not acceptable: wrong, altered, old or not for this desk. Not retried blindly."""

    reason = "refused"


class DocumentRefusedError(UpdateRefusedError):
    """A signed document central offered (a configuration, an authorisation manifest) is not applied; the desk
    keeps the one it has. ``reason`` is the audited word for why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DocumentResult:
    """What one check of a signed document did; ``version`` is the document in effect afterwards (0: none)."""

    outcome: str  # "applied", "up_to_date", "refused" or "unavailable"
    version: int
    message: str
    target: str | None = None
    reason: str | None = None


class RollbackRefusedError(UpdateRefusedError):
    reason = "rollback"


class EmbedderRefusedError(UpdateRefusedError):
    reason = "wrong_face_model"


class DeltaBaseRefusedError(UpdateRefusedError):
    reason = "delta_base_mismatch"


class ResultMismatchRefusedError(UpdateRefusedError):
    reason = "result_mismatch"


class KeyRefusedError(UpdateRefusedError):
    """The content key of an update was not wrapped for this desk (revoked, or registered too late), or is
    not published, or does not open: the update stays closed to this desk."""

    reason = "library_key_unavailable"


class VerificationRefusedError(UpdateRefusedError):
    """Signed metadata or a download failed TUF verification (signature, expiry, version, length, hash)."""

    reason = "verification_failed"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UpdateUnavailableError(UpdateError):
    """Central could not be reached or the download failed; the next check tries again."""

    reason = "unavailable"


@dataclass(frozen=True)
class InstalledLibrary:
    """What the desk is searching now."""

    version: int
    digest: str
    embedder_id: str
    key_id: str | None = None  # the content key it is encrypted under; a delta must be under the same key


@dataclass(frozen=True)
class Offer:
    """A target from verified metadata: its name, signed length and what it claims to be."""

    name: str
    length: int
    info: LibraryTargetInfo

    @property
    def version(self) -> int:
        return self.info.library_version


def choose_update(installed: InstalledLibrary, offers: Iterable[Offer], *, prefer_full: bool = False
                  ) -> Offer | None:
    """The newest target this desk can install, ``None`` when up to date, or a refusal.

    A delta is usable only on top of exactly the library it was built from
    (same version, same content digest, same content key: a re-keyed lineage
    always moves by a full version); a full library always is. At equal
    versions the delta wins because it is smaller, unless ``prefer_full`` (the desk wants a new base:
    ``library.store.wants_new_base``). If central's newest version
    is older than the installed one, that is a rollback and is refused, even
    though the metadata is validly signed.
    """
    offers = list(offers)
    keeps = _KEEPS.format(version=installed.version)
    if not offers:
        return None
    newest = max(o.version for o in offers)
    if newest < installed.version:
        raise RollbackRefusedError(
            f"Central offers library version {newest} at most, older than the installed version "
            f"{installed.version}. Libraries never go back a version; the update was refused. {keeps} "
            f"Tell the RFR team: central's repository may have been restored from an old backup or tampered with."
        )
    newer = [o for o in offers if o.version > installed.version]
    if not newer:
        return None
    ours = [o for o in newer if o.info.embedder_id == installed.embedder_id]
    if not ours:
        other = max(newer, key=lambda o: o.version)
        raise EmbedderRefusedError(
            f"Library version {other.version} was built for face model {other.info.embedder_id}, but this desk "
            f"uses {installed.embedder_id}; it was not installed. {keeps} The desk needs a software update first."
        )
    usable = [o for o in ours if o.info.kind == "full" or _fits(installed, o.info)]
    if not usable:
        delta = max(ours, key=lambda o: o.version)
        raise DeltaBaseRefusedError(
            f"Update {delta.name} changes library version {delta.info.base_version} "
            f"(content {_short(delta.info.base_digest)}), but this desk has version {installed.version} "
            f"(content {_short(installed.digest)}); it was not applied. {keeps} "
            f"Ask the RFR team to publish a full library version {delta.version}."
        )
    return max(usable, key=lambda o: (o.version, o.info.kind == ("full" if prefer_full else "delta")))


def _fits(installed: InstalledLibrary, info: LibraryTargetInfo) -> bool:
    return (info.base_version == installed.version and info.base_digest == installed.digest
            and info.key_id == installed.key_id)


def _short(digest: str | None) -> str:
    return (digest or "?")[-12:]


def check_claims(offer: Offer, version: int, digest: str, embedder_id: str, previous: int) -> None:
    """Before installing: does the verified file say it is what central's signed description says?

    TUF proves the bytes are central's; this proves central described them
    consistently (a mislabelled file is a publishing mistake, never installed).
    """
    info = offer.info
    if (version, embedder_id, digest) != (info.library_version, info.embedder_id, info.result_digest):
        raise ResultMismatchRefusedError(
            f"{offer.name} is not what central's signed description says (it holds version {version}, content "
            f"{_short(digest)}; described as version {info.library_version}, content {_short(info.result_digest)}). "
            f"It was not installed. {_KEEPS.format(version=previous)} Tell the RFR team."
        )


# What the desk calls the signed list and the download in ``TufFailure``'s sentences.
_LISTING, _DOWNLOAD = "library list", "library update"


def explain_tuf_error(error: TufError, installed_version: int) -> UpdateError:
    """Turn a python-tuf exception into an error worded for the desk, keeping its type family."""
    keeps = _KEEPS.format(version=installed_version)
    failure = TufFailure.of(error, listing=_LISTING, download=_DOWNLOAD)
    if failure.refused:
        return VerificationRefusedError(f"{failure.message} {keeps} Tell the RFR team if this happens again.",
                                        failure.reason)
    return UpdateUnavailableError(f"{failure.message} {keeps} The desk tries again later.")
