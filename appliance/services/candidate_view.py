"""What the officer sees about each candidate, in words: band, dates, time lapse, ages, image quality.

The policy asks the adjudicator to weigh the time lapse, the reference image's
quality and age-related change; a raw score asks them to weigh nothing. So each
candidate is described with the facts that bear on those judgements, and the
score is shown as its calibrated band (``models.calibration``) when the
embedder's manifest has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from library.records import ReferenceRecord


@dataclass(frozen=True)
class CandidateView:
    rank: int
    score: float
    band_name: str
    band_label: str
    subject_ref: str
    image_date: str
    time_lapse: str
    age_at_image: str
    reference_quality: str
    reference_quality_reasons: list[str]
    decision: str | None


def _years_months(start: date, end: date) -> tuple[int, int]:
    months = (end.year - start.year) * 12 + end.month - start.month - (1 if end.day < start.day else 0)
    return divmod(max(months, 0), 12)


def time_lapse(image_date: date | None, probe_date: date) -> str:
    if image_date is None:
        return "Unknown: the reference image has no date"
    years, months = _years_months(image_date, probe_date)
    if image_date > probe_date:
        return "Reference image dated after the probe: check the record"
    return f"{years} years {months} months" if years else f"{months} months"


def age_at_image(record: ReferenceRecord) -> str:
    if record.date_of_birth is not None and record.image_date is not None:
        years, _ = _years_months(record.date_of_birth, record.image_date)
        return f"{years} years"
    band = getattr(record, "age_band", None)
    return f"{band} (band recorded)" if band and band != "unknown" else "Unknown"


def reference_quality(record: ReferenceRecord) -> tuple[str, list[str]]:
    raw = getattr(record, "quality", None)
    if not raw:
        return "Not assessed", []
    try:
        data: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return "Not assessed", []
    verdict = {"pass": "Good", "warn": "Usable with care", "fail": "Poor"}.get(str(data.get("verdict")), "Unknown")
    return verdict, [str(r) for r in data.get("reasons", [])]


def band_of(score: float, manifest: Any) -> tuple[str, str]:
    """(band name, band wording) from the embedder's calibration, or an honest "not calibrated"."""
    try:
        from models.calibration import score_band

        band = score_band(score, manifest)
        return band.name, band.label
    except (ImportError, ValueError, AttributeError):
        return "uncalibrated", "This face model has no calibration: the score cannot be put in a band"


def describe(rank: int, score: float, record: ReferenceRecord, probe_date: date, manifest: Any,
             decision: str | None) -> CandidateView:
    name, label = band_of(score, manifest)
    quality, reasons = reference_quality(record)
    return CandidateView(
        rank=rank, score=score, band_name=name, band_label=label, subject_ref=record.subject_ref,
        image_date=record.image_date.isoformat() if record.image_date else "Not recorded",
        time_lapse=time_lapse(record.image_date, probe_date), age_at_image=age_at_image(record),
        reference_quality=quality, reference_quality_reasons=reasons, decision=decision,
    )


@dataclass(frozen=True)
class SearchScale:
    """How many records the search compared the face with, and what each band means at that size.

    ``records_searched`` is None when the library has been replaced since the
    search (the count of the version searched is no longer on the device).
    """

    records_searched: int | None
    bands: list[str]


def search_scale(records_searched: int | None, manifest: Any) -> SearchScale:
    """Each calibrated band stated at the library's size (``models.calibration.band_at_library_size``)."""
    calibration = getattr(manifest, "calibration", None)
    if records_searched is None or calibration is None:
        return SearchScale(records_searched, [])
    from models.calibration import BELOW, band_at_library_size, bands_of

    return SearchScale(records_searched, [band_at_library_size(band, records_searched)
                                          for band in bands_of(calibration) if band.name != BELOW])
