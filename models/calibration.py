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
