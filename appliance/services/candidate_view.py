"""What the officer sees about each candidate, in words: band, dates, time lapse, ages, image quality.

A library holds several images of one person, so a search returns the same
person more than once; judging each image apart asks for ten decisions where
there are four people, and lets one person be "viable" at rank 1 and "not
viable" at rank 2. So candidates are grouped by subject (``group_by_subject``):
each person once, ranked by their best score, with their other images beside
the best one, and the people whose best score is below the threshold set apart.

The policy asks the adjudicator to weigh the time lapse, the reference image's
quality and age-related change; a raw score asks them to weigh nothing. So each
candidate is described with the facts that bear on those judgements, and the
score is shown as its calibrated band (``models.calibration``) when the
embedder's manifest has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from library.records import ReferenceRecord
from models.calibration import BELOW as BELOW_BAND


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
    # Whose image this is, for grouping: the library's subject reference, or the image itself when the
    # library no longer says (each such image then stands alone rather than merging strangers).
    subject_key: str = ""
    # Which library the image came from (record ids and subject references are per library), and what the
    # page calls it: a candidate is labelled with its library in words, never by colour alone.
    library_id: str = "national"
    library_name: str = ""
    library_kind: str = ""

    @property
    def library_label(self) -> str:
        kind = {"temporary": "temporary library", "substantive": "permitted library"}.get(self.library_kind)
        name = self.library_name or self.library_id
        return f"{name} ({kind})" if kind else name

    @property
    def below_threshold(self) -> bool:
        return self.band_name == BELOW_BAND

    @property
    def bars(self) -> int:
        """How many of three bars the band meter fills: a cue that is not colour alone (WCAG 1.4.1)."""
        return BAND_BARS.get(self.band_name, 0)


BAND_BARS = {"strong": 3, "moderate": 2, "weak": 1, BELOW_BAND: 0}


@dataclass(frozen=True)
class PersonView:
    """One person among the candidates: their best-scoring image first, the rest beside it."""

    number: int  # 1 for the best-scoring person: what the page calls them ("Person 1")
    subject_ref: str
    images: tuple[CandidateView, ...] = field(default_factory=tuple)

    @property
    def best(self) -> CandidateView:
        return self.images[0]

    @property
    def others(self) -> tuple[CandidateView, ...]:
        return self.images[1:]

    @property
    def library_label(self) -> str:
        """The library this person's images came from (grouping never joins images of two libraries)."""
        return self.best.library_label

    @property
    def ranks(self) -> list[int]:
        return [v.rank for v in self.images]

    @property
    def lead_rank(self) -> int:
        """The rank that stands for this person in forms and peer review requests (their best image)."""
        return self.best.rank

    @property
    def below_threshold(self) -> bool:
        return self.best.below_threshold

    @property
    def decision(self) -> str | None:
        """The person's recorded decision (the same on every image of theirs), or None before adjudication."""
        return self.best.decision


def group_by_subject(views: list[CandidateView]) -> list[PersonView]:
    """Each subject once, best score first; within a person, images by score (then rank)."""
    by_key: dict[str, list[CandidateView]] = {}
    for v in views:
        by_key.setdefault(v.subject_key or f"rank:{v.rank}", []).append(v)
    groups = [sorted(images, key=lambda v: (-v.score, v.rank)) for images in by_key.values()]
    groups.sort(key=lambda images: (-images[0].score, images[0].rank))
    return [PersonView(n, images[0].subject_ref, tuple(images)) for n, images in enumerate(groups, start=1)]


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
             decision: str | None, subject_key: str = "", library_id: str = "national", library_name: str = "",
             library_kind: str = "") -> CandidateView:
    name, label = band_of(score, manifest)
    quality, reasons = reference_quality(record)
    return CandidateView(
        rank=rank, score=score, band_name=name, band_label=label, subject_ref=record.subject_ref,
        image_date=record.image_date.isoformat() if record.image_date else "Not recorded",
        time_lapse=time_lapse(record.image_date, probe_date), age_at_image=age_at_image(record),
        reference_quality=quality, reference_quality_reasons=reasons, decision=decision,
        subject_key=subject_key or record.subject_ref, library_id=library_id, library_name=library_name,
        library_kind=library_kind,
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
