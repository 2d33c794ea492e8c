"""The reference libraries a public report describes, and their composition.

Central knows a library by a snapshot file and its lineage key file, named in
settings (``[[reports.libraries]]``, ``central.reports.settings``). Composition is counted from the file as it
is when the report is made (``library.composition``), not as it was on a past
date; the report states the version it counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from central.reports.settings import LibrarySource
from library.composition import composition
from library.errors import SnapshotError
from library.snapshot import Snapshot, read_key_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LibraryComposition:
    """Counts of one library's records by the policy's categories (``unknown`` included)."""

    name: str
    version: int | None  # None: the library could not be read, and every count is empty
    as_of: date
    records: int
    subjects: int
    by_sex: dict[str, int]
    by_ethnicity_code: dict[str, int]
    by_age_range: dict[str, int]
    by_image_age: dict[str, int]

    @property
    def available(self) -> bool:
        return self.version is not None


def describe(source: LibrarySource, as_of: date) -> LibraryComposition:
    """The composition of ``source``; an unreadable library is reported as unavailable, not a crash."""
    try:
        if not source.path.is_file():  # opening a missing path would create an empty database there
            raise SnapshotError(f"{source.path} does not exist")
        snapshot = Snapshot.open(source.path, read_key_file(source.key_file))
    except (SnapshotError, OSError, ValueError) as e:
        logger.warning("library %r could not be read for the report: %s", source.name, e)
        return LibraryComposition(source.name, None, as_of, 0, 0, {}, {}, {}, {})
    try:
        counts = composition(snapshot, as_of)
    finally:
        snapshot.close()
    return LibraryComposition(
        name=source.name, version=_int(counts["library_version"]), as_of=as_of,
        records=_int(counts["records"]), subjects=_int(counts["subjects"]),
        by_sex=_table(counts["by_sex"]), by_ethnicity_code=_table(counts["by_ethnicity_code"]),
        by_age_range=_table(counts["by_age_range"]), by_image_age=_table(counts["by_image_age"]),
    )


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected a count, got {value!r}")
    return value


def _table(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a count table, got {value!r}")
    return {str(k): _int(v) for k, v in value.items()}
