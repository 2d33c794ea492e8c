"""Similarity scores shown to staff as bands with a measured false-accept rate, per embedder.

A raw cosine means nothing to a custody officer, and the same number means
different things for different embedders. So the UI shows a band ("strong",
"moderate", "weak", "below threshold") and how often a *different* person
reached that band on the calibration set. Thresholds and rates come only from
the embedder's manifest ``[calibration]`` table; ``measure_bands`` produces
that table from genuine and impostor scores (``python -m models.evaluate``
prints it ready to paste).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.evaluation.metrics import far_at, tar_at, threshold_at_far
from models.manifest import Calibration, ModelManifest

BELOW = "below threshold"


@dataclass(frozen=True)
class ScoreBand:
    """The band a score falls in, with the FAR measured at the band's lower threshold."""

    name: str
    label: str
    threshold: float
    far: float
    tar: float | None = None


@dataclass(frozen=True)
class BandTarget:
    """A band to calibrate: its name, the words staff see, and the FAR its threshold is chosen for."""

    name: str
    label: str
    far: float


# Bands from the highest threshold down. Names and wording are fixed here so every
# embedder's bands read the same; only the thresholds (and measured rates) differ.
BAND_TARGETS: tuple[BandTarget, ...] = (
    BandTarget("strong", "Strong similarity: a different person scored this high in about 1 in 10,000 "
               "comparisons on the calibration set", 1e-4),
    BandTarget("moderate", "Moderate similarity: at the operating threshold; a different person scored "
               "this high in about 1 in 1,000 comparisons", 1e-3),
    BandTarget("weak", "Weak similarity: below the operating threshold; a different person scored this "
               "high in about 1 in 100 comparisons. Treat as a lead only", 1e-2),
)
BELOW_LABEL = "Below threshold: not a candidate; many different people score this high"
OPERATING_FAR = 1e-3


def bands_of(calibration: Calibration) -> tuple[ScoreBand, ...]:
    """The manifest's bands, or, for a manifest that has only its operating threshold, two bands around it.

    The fallback keeps a placeholder manifest usable; its FAR is the nominal
    1e-3 the threshold was chosen for, which the manifest's status and source say.
    """
    if calibration.bands:
        return tuple(ScoreBand(b.name, b.label, b.threshold, b.far, b.tar) for b in calibration.bands)
    return (
        ScoreBand("moderate", BAND_TARGETS[1].label, calibration.threshold_far_1e_3, OPERATING_FAR),
        ScoreBand(BELOW, BELOW_LABEL, -1.0, 1.0),
    )


def score_band(score: float, manifest: ModelManifest) -> ScoreBand:
    """The band of one cosine similarity under ``manifest``'s calibration (highest band it reaches)."""
    if manifest.calibration is None:
        raise ValueError(f"{manifest.ref} has no [calibration] table: only embedders have one")
    if not math.isfinite(score):
        raise ValueError(f"a similarity score must be finite, not {score}")
    bands = bands_of(manifest.calibration)
    for band in bands:
        if score >= band.threshold:
            return band
    return bands[-1]


def _round_up(value: float, places: int) -> float:
    """Round a threshold up, so that storing it with fewer digits never raises the FAR."""
    factor = 10**places
    return math.ceil(value * factor - 1e-9) / factor


def measure_bands(genuine: np.ndarray, impostor: np.ndarray, targets: tuple[BandTarget, ...] = BAND_TARGETS,
                  places: int = 4) -> tuple[ScoreBand, ...]:
    """Bands whose thresholds meet each target FAR, with FAR and TAR re-measured at the stored threshold.

    Thresholds are rounded up to ``places`` decimals and then measured again, so
    the FAR written in the manifest is the FAR of the number written beside it.
    A target FAR finer than one impostor pair cannot be resolved; the band still
    gets a threshold (above every impostor seen) and its measured FAR is 0.
    """
    bands = []
    for target in targets:
        threshold = min(_round_up(threshold_at_far(impostor, target.far), places), 1.0)
        bands.append(ScoreBand(target.name, target.label, threshold,
                               far_at(impostor, threshold), tar_at(genuine, threshold)))
    bands.append(ScoreBand(BELOW, BELOW_LABEL, -1.0, 1.0, 1.0))
    return tuple(bands)


def calibration_toml(bands: tuple[ScoreBand, ...], *, status: str, source: str, dataset: str,
                     measured_on: str, genuine_pairs: int, impostor_pairs: int) -> str:
    """A ``[calibration]`` table for an embedder manifest, ready to paste."""
    operating = next(b for b in bands if b.name == "moderate")
    lines = [
        "[calibration]",
        f'"threshold_far_1e-3" = {operating.threshold}',
        f'status = "{status}"',
        f'source = """{source}"""',
        f'dataset = "{dataset}"',
        f"measured_on = {measured_on}",
        f"genuine_pairs = {genuine_pairs}",
        f"impostor_pairs = {impostor_pairs}",
    ]
    for band in bands:
        lines += ["", "[[calibration.bands]]", f'name = "{band.name}"', f'label = "{band.label}"',
                  f"threshold = {band.threshold}", f"far = {band.far:.6f}"]
        if band.tar is not None:
            lines.append(f"tar = {band.tar:.4f}")
    return "\n".join(lines) + "\n"


# Band wording at a library's size. A band's FAR is a rate per comparison; a search compares the probe with
# every record, so at a million records "1 in 10,000" means about a hundred different people per search.
BAND_TITLES = {"strong": "Strong similarity", "moderate": "Moderate similarity", "weak": "Weak similarity"}


def expected_different_people(far: float, records: int) -> float:
    """How many records of other people are expected at or above a band's threshold in one search: FAR x records."""
    if records < 0:
        raise ValueError(f"a library cannot hold {records} records")
    if not 0 <= far <= 1:
        raise ValueError(f"a false-accept rate must be between 0 and 1, not {far}")
    return far * records


def _two_figures(value: float) -> str:
    """A count a person reads at a glance: whole, two significant figures, with thousands separators."""
    if value < 10:
        return f"{round(value):,}"
    rounded = round(value, 1 - math.floor(math.log10(value)))
    return f"{round(rounded):,}"


def people_at_library_size(far: float, records: int) -> str:
    """``about 100 different people`` (FAR 1e-4 x 1,000,000 records), or how rarely when fewer than one."""
    expected = expected_different_people(far, records)
    if expected >= 1.5:
        return f"about {_two_figures(expected)} different people"
    if expected >= 0.5:
        return "about 1 different person"
    if expected == 0:
        return "no different person measured"
    return f"about 1 different person in every {_two_figures(1 / expected)} searches"


def band_at_library_size(band: ScoreBand, records: int) -> str:
    """One band stated at the size of the library searched, in the words the desk shows.

    The estimate assumes every record is a different person from the one
    photographed and that the calibration set's rate holds for the library's
    photos; the sentence says "expected" because it is an average over searches.
    """
    title = BAND_TITLES.get(band.name, band.name.capitalize())
    expected = expected_different_people(band.far, records)
    where = f"in a search of {records:,} records"
    if expected == 0:
        return (f"{title}: no different person reached this band on the calibration set, so how many would "
                f"{where} cannot be estimated from it.")
    people = people_at_library_size(band.far, records)
    if expected < 0.5:
        return (f"{title}: {where}, a different person is expected to score this high in about 1 search "
                f"in {_two_figures(1 / expected)}.")
    verb = "is" if expected < 1.5 else "are"
    return f"{title}: {where}, {people} {verb} expected to score this high."
