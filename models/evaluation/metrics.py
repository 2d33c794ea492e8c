"""Verification and identification figures from a similarity matrix: pure numpy, no I/O.

Conventions, stated once because every figure depends on them:

- A pair is *accepted* when its score is ``>= threshold``.
- Genuine pairs are same-identity pairs ``i < j``; impostor pairs are
  different-identity pairs ``i < j``. Each unordered pair counts once.
- ``threshold_at_far(impostor, far)`` is the lowest threshold at which the
  measured false-accept rate is at most ``far``; TAR is then measured at that
  same threshold, so TAR@FAR never borrows from a threshold that breaks the FAR.
- Rank-1 is leave-one-out: each image is a probe against every other image,
  and it is a hit when the highest-scoring other image shares its identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreStats:
    """Summary of one score population, for the report and for spotting a broken model at a glance."""

    count: int
    mean: float
    min: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_stats(scores: np.ndarray) -> ScoreStats:
    """Count, mean, min and max; NaN for an empty population rather than a crash."""
    if scores.size == 0:
        return ScoreStats(0, float("nan"), float("nan"), float("nan"))
    return ScoreStats(int(scores.size), float(scores.mean()), float(scores.min()), float(scores.max()))


def pair_scores(similarity: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores from the upper triangle (``i < j``) of a square similarity matrix."""
    n = len(labels)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity is {similarity.shape}, labels has {n} entries")
    rows, cols = np.triu_indices(n, k=1)
    same = labels[rows] == labels[cols]
    scores = similarity[rows, cols].astype(np.float64)
    return scores[same], scores[~same]


def rank1_hits(similarity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-probe leave-one-out hit (bool): is the best other image the same identity?

    A probe whose identity has no other image can never hit; it counts as a
    miss, as it would at the desk when the person's only reference is missing.
    """
    n = len(labels)
    if n < 2:
        return np.zeros(n, dtype=bool)
    scores = similarity.astype(np.float64, copy=True)
    np.fill_diagonal(scores, -np.inf)
    return labels[scores.argmax(axis=1)] == labels


def far_at(impostor: np.ndarray, threshold: float) -> float:
    """Fraction of impostor pairs accepted at ``threshold``."""
    return float(np.count_nonzero(impostor >= threshold) / impostor.size) if impostor.size else float("nan")


def tar_at(genuine: np.ndarray, threshold: float) -> float:
    """Fraction of genuine pairs accepted at ``threshold``."""
    return float(np.count_nonzero(genuine >= threshold) / genuine.size) if genuine.size else float("nan")


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate on ``impostor`` is at most ``far``.

    With ``k = floor(far * n)`` impostors allowed through, the threshold sits
    just above the (k+1)-th highest impostor score, so exactly the k highest
    (fewer on ties) are accepted. Too few impostor pairs to resolve ``far``
    (k = 0 still fine) is the caller's caveat to report, not an error here.
    """
    if impostor.size == 0:
        raise ValueError("no impostor pairs: a false-accept rate cannot be measured")
    if not 0 <= far < 1:
        raise ValueError(f"far must be in [0, 1), not {far}")
    descending = np.sort(impostor.astype(np.float64))[::-1]
    allowed = min(int(np.floor(far * descending.size + 1e-9)), descending.size - 1)
    return float(np.nextafter(descending[allowed], np.inf))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs.

    Sweeps every observed score as a threshold; at the crossing the two error
    rates are rarely exactly equal on finite data, so the EER is their mean at
    the threshold where they are closest.
    """
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("the EER needs both genuine and impostor pairs")
    gen = np.sort(genuine.astype(np.float64))
    imp = np.sort(impostor.astype(np.float64))
    thresholds = np.unique(np.concatenate([gen, imp, [np.inf]]))
    frr = np.searchsorted(gen, thresholds, side="left") / gen.size
    far = (imp.size - np.searchsorted(imp, thresholds, side="left")) / imp.size
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2), float(thresholds[best])


@dataclass(frozen=True)
class Verification:
    """The verification figures the report and the calibration need."""

    tar_at_far: dict[float, float]
    threshold_at_far: dict[float, float]
    eer: float
    eer_threshold: float
    genuine: ScoreStats
    impostor: ScoreStats


def verification(genuine: np.ndarray, impostor: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
                 ) -> Verification:
    """TAR and threshold at each target FAR, EER, and score summaries."""
    thresholds = {far: threshold_at_far(impostor, far) for far in fars}
    rate, at = eer(genuine, impostor)
    return Verification(
        tar_at_far={far: tar_at(genuine, t) for far, t in thresholds.items()},
        threshold_at_far=thresholds,
        eer=rate,
        eer_threshold=at,
        genuine=score_stats(genuine),
        impostor=score_stats(impostor),
    )
