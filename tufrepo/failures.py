"""What each python-tuf error means to the person who reads it: one table for every TUF client here.

python-tuf raises two documented families: ``RepositoryError`` (the signed
data is wrong: an attack or a mistake, so the offer is refused) and
``DownloadError`` (it could not be fetched: try again later). The desk's
library updater and the firmware update agent both ask this table, then wrap
the answer in their own error family with their own closing words, so a
reason code means the same on both and the wording is kept in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuf.api import exceptions as tuf_errors

TufError = tuf_errors.RepositoryError | tuf_errors.DownloadError


@dataclass(frozen=True)
class TufFailure:
    """A TUF error explained: a short ``reason`` for audit events, and whether the offer is ``refused``
    (the repository's data is wrong) or only unavailable (the repository could not be reached)."""

    reason: str
    refused: bool
    message: str

    @classmethod
    def of(cls, error: TufError, *, listing: str, download: str) -> TufFailure:
        """The table's row for ``error``, worded with ``listing`` (what the signed list is called, e.g.
        "library list") and ``download`` (what was being fetched, e.g. "library update")."""
        for error_type, reason, refused, text in _EXPLANATIONS:
            if isinstance(error, error_type):
                return cls(reason, refused, text.format(listing=listing, download=download, detail=error))
        raise TypeError(f"not a python-tuf RepositoryError or DownloadError: {error!r}")


# Most specific first, so every exception of either family has a row; ``{detail}`` is python-tuf's message.
_EXPLANATIONS: tuple[tuple[type[Exception], str, bool, str], ...] = (
    (tuf_errors.ExpiredMetadataError, "expired_metadata", True,
     "Central's signed {listing} has expired ({detail}). Either central has stopped re-signing it or "
     "something between this desk and central is replaying old data (a freeze). Nothing was installed."),
    (tuf_errors.EqualVersionNumberError, "metadata_rollback", True,
     "Central sent a signed {listing} that contradicts one already seen ({detail}). Nothing was installed."),
    (tuf_errors.BadVersionNumberError, "metadata_rollback", True,
     "Central's signed {listing} is older than one this desk has already seen ({detail}): a rollback. "
     "Nothing was installed."),
    (tuf_errors.UnsignedMetadataError, "bad_signature", True,
     "The {listing} is not signed by central's keys ({detail}): it was altered or signed with the wrong "
     "key. Nothing was installed."),
    (tuf_errors.LengthOrHashMismatchError, "altered_download", True,
     "A downloaded file does not match what central signed ({detail}): it was altered, truncated or mixed "
     "with files from another publication. It was discarded."),
    (tuf_errors.DownloadLengthMismatchError, "oversized_download", True,
     "A download was larger than central signed for ({detail}); it was stopped and discarded."),
    (tuf_errors.RepositoryError, "bad_metadata", True,
     "Central's signed {listing} failed verification ({detail}). Nothing was installed."),
    (tuf_errors.DownloadError, "unavailable", False,
     "Could not download the {download} from central ({detail})."),
)
