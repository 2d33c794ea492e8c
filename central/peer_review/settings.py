"""The ``[peer_review]`` settings section: central's review key, where probes wait, and the reference libraries.

Pydantic only, so loading central's settings does not import the library or crypto code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings import StrictModel


class ReferenceLibrary(StrictModel):
    """A library snapshot central holds, from which the reviewer is shown the candidates' reference images."""

    path: Path = Field(description="The library snapshot file (SQLCipher) central built or holds.")
    key_file: Path = Field(description="The library lineage's key file (0600).")
    library_id: str = Field(default="national", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                            description="Which library this is (desks name each candidate's library by it).")


class PeerReviewSettings(StrictModel):
    """Peer review with the images (docs/desk-workflow.md, "Peer review by central")."""

    review_key: Path | None = Field(
        default=None, description="Central's X25519 review key (0600; `python -m central.peer_review review-key "
        "--out PATH` makes it and PATH.pub, the public half every desk is given as [peer_review] "
        "central_review_key). The ingest opens the probe each request carries with it. Unset: a request that "
        "carries a probe is refused (recorded on the audit page), one without is taken as before.")
    probe_dir: Path | None = Field(
        default=None, description="Where probes wait for their review, each encrypted under its own key "
        "(default: data_dir/review-probes). Both files are overwritten and removed when the review is answered "
        "or the case closes.")
    probe_max_days: int = Field(
        default=30, ge=1, le=365, description="A probe still held this many days after it arrived is destroyed "
        "anyway (the desk was withdrawn, or the case never came back).")
    libraries: list[ReferenceLibrary] = Field(
        default_factory=list, description="Snapshots to look the candidates' reference images up in, newest "
        "first, as [[peer_review.libraries]] tables with path and key_file. Empty: [[reports.libraries]].")
