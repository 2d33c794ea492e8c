"""Settings for the TUF repository: thresholds and how long each role's signature stays valid.

Expiry is the freeze defence: a desk refuses metadata past its expiry, so an
attacker who holds back updates can do so for at most one timestamp period
before every desk notices. Short online roles, long offline root.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from core.settings import StrictModel, load_settings


class PublishSettings(StrictModel):
    """The ``[publish]`` section of central's settings."""

    repo_dir: Path | None = Field(
        default=None,
        description="The TUF repository (metadata/, targets/, keys/) served to desks under /tuf. "
        "Unset: central serves no library updates.",
    )
    lineage_keys: list[Path] = Field(
        default_factory=list,
        description="The library lineages' key files this central publishes with (the --key-file of `python -m "
        "central.publish publish`, 0600). Named here so `python -m central backup` seals them, with the "
        "<key file>.retired-<id> keys a re-key leaves, and `restore` puts them back: a key file no setting "
        "names is not in the backup, and without it no further version of that library can be published.",
    )
    root_keys: int = Field(default=3, ge=1, le=9, description="How many offline root keys to create.")
    root_threshold: int = Field(
        default=2, ge=1, le=9,
        description="How many root keys must sign a new root: two people with two separate keys.",
    )
    root_expiry_days: int = Field(default=365, ge=30, le=3 * 365,
                                  description="Root is re-signed offline once a year.")
    targets_expiry_days: int = Field(default=90, ge=7, le=365,
                                     description="Targets (the list of libraries) is re-signed each quarter.")
    snapshot_expiry_days: int = Field(default=7, ge=1, le=90,
                                      description="Snapshot (the consistent set of metadata) weekly.")
    timestamp_expiry_hours: int = Field(
        default=24, ge=1, le=14 * 24,
        description="Timestamp daily: a desk notices a freeze (updates held back) within this time. "
        "Run `python -m central.publish refresh-timestamp` well inside it (e.g. hourly).",
    )

    @model_validator(mode="after")
    def _threshold_reachable(self) -> PublishSettings:
        if self.root_threshold > self.root_keys:
            raise ValueError(f"root_threshold {self.root_threshold} is more than root_keys {self.root_keys}")
        return self

    def expiry(self, role: str) -> timedelta:
        """How long a freshly signed ``role`` stays valid."""
        return {
            "root": timedelta(days=self.root_expiry_days),
            "targets": timedelta(days=self.targets_expiry_days),
            "snapshot": timedelta(days=self.snapshot_expiry_days),
            "timestamp": timedelta(hours=self.timestamp_expiry_hours),
        }[role]


class _PublishSection(StrictModel):
    """Only ``[publish]`` of central's file matters to the publishing tool; other sections are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    publish: PublishSettings = PublishSettings()


def load(path: Path | None) -> PublishSettings:
    """``[publish]`` from central's TOML file (optional), overridden by ``RFR_CENTRAL__PUBLISH__*``."""
    return load_settings(_PublishSection, path, "RFR_CENTRAL").publish


def database_url(database: str | None, data_dir: Path) -> str:
    """Central's store URL: ``database`` if set, else SQLite in ``data_dir`` (``CentralSettings.database_url``)."""
    return database or f"sqlite:///{(Path(data_dir) / 'central.db').absolute()}"


class _DatabaseSection(StrictModel):
    """Where central's database is, from central's file: publishing reads the device registry in it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    data_dir: Path | None = None
    database: str | None = None


def load_database_url(path: Path | None) -> str | None:
    """The database central's file (or ``RFR_CENTRAL__DATABASE``) names; None if it names none."""
    section = load_settings(_DatabaseSection, path, "RFR_CENTRAL")
    if section.database is None and section.data_dir is None:
        return None
    return database_url(section.database, section.data_dir or Path("."))
