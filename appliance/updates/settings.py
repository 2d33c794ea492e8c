"""The ``[updates]`` section of the appliance's settings: where central is and what to trust."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings import StrictModel


class UpdateSettings(StrictModel):
    """Library updates from central. Absent: the desk keeps the library it was provisioned with."""

    central_url: str = Field(
        pattern=r"^https?://[^/\s]+$",
        description="Central's base URL, e.g. https://central.force.local:8100 (no path). Use https outside "
        "a test bench: TUF protects the content either way, TLS also hides which versions a desk fetches.",
    )
    trusted_root: Path = Field(
        description="central's 1.root.json, copied onto the desk at provisioning: the trust anchor for every "
        "update. Used only on first contact; afterwards the verified copy under data_dir/updates is used.",
    )
    ca_file: Path | None = Field(default=None, description="CA certificate(s) for central's HTTPS certificate.")
    poll_interval_s: int = Field(
        default=900, ge=0, le=86400,
        description="Check this often even without an announcement (0: only on announcements). Keep it well "
        "under central's timestamp expiry (1 day) so a freeze is noticed.",
    )
    max_download_mb: int = Field(default=4096, ge=1, le=65536,
                                 description="No single download may exceed this, whatever a server sends.")
    timeout_s: int = Field(default=30, ge=1, le=600, description="Network timeout for each request.")
    max_resumes: int = Field(default=5, ge=0, le=100, description="Resumes of one download after a cut link.")
