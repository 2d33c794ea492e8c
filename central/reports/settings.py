"""The ``[reports]`` settings section: which reference libraries the annual report describes.

Pydantic only, so loading central's settings does not import the library code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings import StrictModel


class LibrarySource(StrictModel):
    """One reference library to describe in the annual report."""

    name: str = Field(min_length=1, max_length=80,
                      description="What the public report calls this library, e.g. 'Custody images (national)'.")
    path: Path = Field(description="The library snapshot file (SQLCipher) central holds for this library.")
    key_file: Path = Field(description="The library lineage's key file (0600).")


class ReportsSettings(StrictModel):
    """Oversight reports (``/reports``)."""

    libraries: list[LibrarySource] = Field(
        default_factory=list,
        description="Reference libraries whose composition the annual public report gives, as "
        "[[reports.libraries]] tables with name, path and key_file. Empty: the report says none is configured.",
    )
