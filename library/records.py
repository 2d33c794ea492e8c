"""What the library holds about each reference image, and what a search returns.

The vocabularies here (sex, ethnicity code, age band) are the ones the force's
policy reports count by, so records, the CSV manifest and the composition
report all share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

SEXES = ("M", "F")
ETHNICITY_CODES = tuple(f"IC{n}" for n in range(1, 10))
# Age at the image date. Used when the date of birth is unknown (custody systems often record only a band).
AGE_BANDS = ("under 13", "13-15", "16-17", "18-24", "25-34", "35-44", "45-54", "55+")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ReferenceRecord:
    """One reference image's metadata; ``source`` is its identity across library versions.

    ``record_id`` is local to one snapshot file (it is the index label), so two
    versions of a library may give the same image different ids; ``source``
    (the image reference from the import, ``<subject>/<file>``) never changes.
    ``quality`` is the JSON of a ``models.quality.QualityReport`` when it was assessed.
    """

    subject_ref: str
    source: str
    sex: str | None = None
    ethnicity_code: str | None = None
    date_of_birth: date | None = None
    image_date: date | None = None
    record_id: int | None = None
    age_band: str | None = None
    quality: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A potential match for a human to adjudicate: never an identification."""

    rank: int
    score: float
    record: ReferenceRecord
