"""Who is in a library: the counts the force's policy requires it to keep and publish.

Counted by sex, by ethnicity code (IC1-IC9), by age range at the image date and
by the age of the image itself, each with an explicit "unknown" so gaps in
the custody records are visible rather than silently dropped. Age comes from
the date of birth when both dates are known, otherwise from the recorded age
band (which is the age at the image date).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import TYPE_CHECKING

from library.records import AGE_BANDS, ETHNICITY_CODES, SEXES, UNKNOWN

if TYPE_CHECKING:
    from library.snapshot import Snapshot

IMAGE_AGES = ("under 1 year", "1-5 years", "5-10 years", "10+ years")
_AGE_LIMITS = ((13, "under 13"), (16, "13-15"), (18, "16-17"), (25, "18-24"), (35, "25-34"), (45, "35-44"),
               (55, "45-54"))


def years_between(start: date, end: date) -> int:
    """Whole years from ``start`` to ``end`` (an age: a birthday counts on the day)."""
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def age_band(date_of_birth: date | None, image_date: date | None, recorded_band: str | None) -> str:
    if date_of_birth is not None and image_date is not None and image_date >= date_of_birth:
        age = years_between(date_of_birth, image_date)
        return next((band for limit, band in _AGE_LIMITS if age < limit), "55+")
    return recorded_band if recorded_band in AGE_BANDS else UNKNOWN


def image_age(image_date: date | None, as_of: date) -> str:
    """How old the image is on ``as_of``; an image dated in the future is a data error, so unknown."""
    if image_date is None or image_date > as_of:
        return UNKNOWN
    years = years_between(image_date, as_of)
    if years < 1:
        return IMAGE_AGES[0]
    if years < 5:
        return IMAGE_AGES[1]
    if years < 10:
        return IMAGE_AGES[2]
    return IMAGE_AGES[3]


def _ordered(counts: Counter[str], keys: tuple[str, ...]) -> dict[str, int]:
    """Every category in policy order, zeros included, so reports from different versions line up."""
    return {k: counts.get(k, 0) for k in (*keys, UNKNOWN)}


def composition(snapshot: Snapshot, as_of: date) -> dict[str, object]:
    """Counts of the library's records by sex, ethnicity code, age range and image age on ``as_of``."""
    sexes: Counter[str] = Counter()
    ethnicities: Counter[str] = Counter()
    ages: Counter[str] = Counter()
    image_ages: Counter[str] = Counter()
    subjects: set[str] = set()
    total = 0
    for record in snapshot.records():
        total += 1
        subjects.add(record.subject_ref)
        sexes[record.sex if record.sex in SEXES else UNKNOWN] += 1
        ethnicities[record.ethnicity_code if record.ethnicity_code in ETHNICITY_CODES else UNKNOWN] += 1
        ages[age_band(record.date_of_birth, record.image_date, record.age_band)] += 1
        image_ages[image_age(record.image_date, as_of)] += 1
    return {
        "library_version": snapshot.version,
        "content_digest": snapshot.digest,
        "as_of": as_of.isoformat(),
        "records": total,
        "subjects": len(subjects),
        "by_sex": _ordered(sexes, SEXES),
        "by_ethnicity_code": _ordered(ethnicities, ETHNICITY_CODES),
        "by_age_range": _ordered(ages, AGE_BANDS),
        "by_image_age": _ordered(image_ages, IMAGE_AGES),
    }
