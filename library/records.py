"""What the library holds about each reference image, and what a search returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class ReferenceRecord:
    subject_ref: str
    source: str
    sex: str | None = None
    ethnicity_code: str | None = None
    date_of_birth: date | None = None
    image_date: date | None = None
    record_id: int | None = None


@dataclass(frozen=True)
class Candidate:
    """A potential match for a human to adjudicate: never an identification."""

    rank: int
    score: float
    record: ReferenceRecord
