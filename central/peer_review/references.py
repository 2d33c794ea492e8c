"""The candidates' reference images, from central's own copy of the library.

A request names each candidate's image by its library (``library_id``: a desk searches several, and
sources are per library), its ``source`` (stable across library versions) and subject ref. Central looks
the image up only in the snapshots it holds of that library (``[[peer_review.libraries]]``, else
``[[reports.libraries]]``, each with its ``library_id``), newest first, reading only the records and
thumbnails tables through the library format's own column list: no index is loaded for a page view.
A reference not found is said so, with why, never an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from library import cipher
from library.errors import SnapshotError
from library.records import ReferenceRecord
from library.snapshot import RECORD_COLUMNS, record_from_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """One candidate's reference image as central holds it, or why it is not shown."""

    rank: int
    record: ReferenceRecord | None
    jpeg: bytes | None
    library_version: int | None
    missing: str | None = None  # why no image: in words, for the reviewer

    @property
    def found(self) -> bool:
        return self.jpeg is not None


#: The library of a request from a desk that held one library (it names none).
DEFAULT_LIBRARY_ID = "national"


@dataclass(frozen=True)
class LibraryFile:
    path: Path
    key_file: Path
    library_id: str = DEFAULT_LIBRARY_ID


class ReferenceLibraries:
    """Look-ups in the snapshots central holds; each call opens and closes what it reads."""

    def __init__(self, files: Sequence[LibraryFile]) -> None:
        self.files = list(files)

    def find(self, rank: int, source: str | None, subject_ref: str, library_id: str | None = None) -> Reference:
        """The image named by (library, source), checked to be of ``subject_ref``: looked up only in that
        library's snapshots, so an image of another library with the same source is never shown."""
        if not self.files:
            return Reference(rank, None, None, None, "Central holds no copy of the reference library "
                             "([peer_review] libraries is not set).")
        library_id = library_id or DEFAULT_LIBRARY_ID
        files = [entry for entry in self.files if entry.library_id == library_id]
        if not files:
            return Reference(rank, None, None, None, f"Central holds no copy of the library {library_id!r} this "
                             "candidate came from (add it to [[peer_review.libraries]] with its library_id).")
        if not source:
            return Reference(rank, None, None, None, f"The desk could not name the image of {subject_ref}: its "
                             "library had been replaced when the review was asked for.")
        problems = []
        for entry in files:
            try:
                found = _lookup(entry, source)
            except (SnapshotError, OSError, ValueError) as e:
                logger.warning("reference library %s could not be read: %s", entry.path, e)
                problems.append(f"{entry.path.name} could not be read")
                continue
            if found is not None:
                record, jpeg, version = found
                if record.subject_ref != subject_ref:
                    return Reference(rank, None, None, version, f"Image {source} belongs to "
                                     f"{record.subject_ref} in central's library, not {subject_ref}: not shown.")
                return Reference(rank, record, jpeg, version)
        why = f"Image {source} of {subject_ref} is not in central's copy of the library"
        return Reference(rank, None, None, None, why + (f" ({'; '.join(problems)})." if problems else "."))


def _lookup(entry: LibraryFile, source: str) -> tuple[ReferenceRecord, bytes, int] | None:
    if not entry.path.is_file():  # connecting to a missing path would create an empty database there
        raise SnapshotError(f"{entry.path} does not exist")
    conn = cipher.connect(entry.path, cipher.read_key_file(entry.key_file), read_only=True)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        columns = ", ".join("r." + c.strip() for c in RECORD_COLUMNS.split(","))
        row = conn.execute(f"SELECT {columns}, h.jpeg FROM records r JOIN thumbnails h USING (record_id)"
                           " WHERE r.source = ?", (source,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return record_from_row(row[:-1]), bytes(row[-1]), int(version[0]) if version else 0


def age_on(born: date | None, on: date | None) -> int | None:
    """Whole years between two dates, when both are known."""
    if born is None or on is None:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
