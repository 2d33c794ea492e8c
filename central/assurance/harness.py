"""Equitability harness: identification error rates per demographic group, with their uncertainty.

Pure numpy over a similarity matrix of a labelled set (no I/O, no models), so
every figure can be checked by hand on a small matrix.

Definitions (leave-one-out over the labelled images; a probe never meets itself):

- **Mated search**: each image whose identity has another image is a probe
  against every other image. Its mate is *returned* when an image of the same
  identity is among the top ``rank`` candidates and scores at or above the
  threshold. **FNIR** = share of mated searches whose mate is not returned.
- **Non-mated search**: each image is a probe against every image of *other*
  identities (its own identity removed from the gallery). **FPIR** = share of
  non-mated searches returning any candidate at or above the threshold.
- **FNMR / FMR** (1:1 verification, at the same threshold): share of genuine
  pairs below it / impostor pairs at or above it. **TAR at FAR 1e-3**: the
  threshold is set on the group's own impostor pairs (``threshold_at_far``),
  and TAR is the share of its genuine pairs at or above that threshold.
- **Group membership**: a search belongs to a group when its probe's identity
  does. Genuine pairs belong to their identity's groups; an impostor pair (each
  unordered pair once) belongs to every group of either of its two identities,
  because with a symmetric score either image can be the probe.
- **Confidence intervals**: 95% Wilson score intervals on the counts. Images
  of one person are not independent, so the true uncertainty is wider;
  the number of identities is reported beside every figure for that reason.
- **Differential**: a group's FNIR or FPIR is flagged when it is more
  than ``ratio_limit`` times the overall rate *and* its interval lies wholly
  above the overall interval. Groups whose sex, ethnicity code or age band was
  not recorded are reported but never flagged, and neither is a group too
  small to support a conclusion (``SampleRule``). FNMR and FMR ratios are
  reported beside them but never flagged (see ``FLAGGED_RATES``).

FPIR grows with gallery size: a figure measured against a gallery of a few
hundred images says little about a library of a million, so the report gives
the gallery size beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.evaluation.metrics import threshold_at_far

FAR_TARGET = 1e-3
NOT_RECORDED = "not_recorded"
RATES = ("fnir", "fpir", "fnmr", "fmr")
# Only the identification rates are flagged: FNMR and FMR rest on thousands of pairs drawn from a few
# identities, whose Wilson intervals are far too narrow (pairs share images), so they are shown, not flagged.
FLAGGED_RATES = ("fnir", "fpir")
_Z95 = 1.959963984540054
_DET_POINTS = 400


@dataclass(frozen=True)
class SampleRule:
    """How much data a group needs before its figures support a conclusion.

    ``min_impostor`` defaults to 3 / FAR: with no false accept in that many
    impostor pairs, the 95% upper bound of the FAR is about the target itself
    (the "rule of three"), so fewer cannot show whether 1e-3 was met.
    """

    min_identities: int = 10
    min_mated: int = 100
    min_nonmated: int = 100
    min_impostor: int = int(3 / FAR_TARGET)


def wilson(errors: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``errors / n``; None when ``n`` is 0."""
    if n == 0:
        return None
    p = errors / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """A rate with what it rests on: ``errors`` of ``n``, and its 95% interval."""

    errors: int
    n: int

    @property
    def value(self) -> float | None:
        return self.errors / self.n if self.n else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson(self.errors, self.n)


@dataclass(frozen=True)
class Searches:
    """Per-probe scores the identification rates are read from.

    ``mate`` (one per mated search): the best same-identity score, or -inf when
    no mate is within the top ``rank``. ``nonmate`` (one per image): the best
    score against other identities, or -inf when there are none.
    """

    mated_probe: np.ndarray  # indices of the images that are mated probes
    mate: np.ndarray
    nonmate: np.ndarray


def searches(similarity: np.ndarray, identities: np.ndarray, rank: int) -> Searches:
    """Leave-one-out mated and non-mated searches over a square similarity matrix."""
    n = len(identities)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity is {similarity.shape}, identities has {n} entries")
    if rank < 1:
        raise ValueError("rank must be at least 1")
    scores = similarity.astype(np.float64, copy=True)
    np.fill_diagonal(scores, -np.inf)
    mated_probe, mate = [], []
    nonmate = np.full(n, -np.inf)
    for i in range(n):
        same = identities == identities[i]
        same[i] = False
        others = identities != identities[i]
        if others.any():
            nonmate[i] = scores[i, others].max()
        if same.any():
            best = scores[i, same].max()
            outranked = int(np.count_nonzero(scores[i, others] > best))  # ties go to the mate
            mated_probe.append(i)
            mate.append(best if outranked < rank else -np.inf)
    return Searches(np.array(mated_probe, dtype=np.int64), np.array(mate, dtype=np.float64), nonmate)


def det_curve(mate: np.ndarray, nonmate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPIR, FNIR) at every threshold seen, thinned to a few hundred points for drawing."""
    if mate.size == 0 or nonmate.size == 0:
        return np.empty(0), np.empty(0)
    thresholds = np.unique(np.concatenate([mate[np.isfinite(mate)], nonmate[np.isfinite(nonmate)]]))
    if thresholds.size > _DET_POINTS:
        thresholds = np.unique(np.quantile(thresholds, np.linspace(0, 1, _DET_POINTS)))
    thresholds = np.append(thresholds, np.inf)
    mate_sorted, nonmate_sorted = np.sort(mate), np.sort(nonmate)
    fnir = np.searchsorted(mate_sorted, thresholds, side="left") / mate.size
    fpir = (nonmate.size - np.searchsorted(nonmate_sorted, thresholds, side="left")) / nonmate.size
    return fpir, fnir


@dataclass
class GroupResult:
    """Every figure for one group (or overall), with the counts behind it and what they can support."""

    key: str
    recorded: bool
    identities: int
    images: int
    gallery_images: int
    fnir: Rate
    fpir: Rate
    fnmr: Rate
    fmr: Rate
    tar: Rate | None  # at the group's own FAR 1e-3 threshold; None when no threshold can be set
    tar_threshold: float | None
    n_genuine: int
    n_impostor: int
    too_small: list[str]
    det: tuple[np.ndarray, np.ndarray]
    differentials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def conclusive(self) -> bool:
        return not self.too_small

    def statement(self) -> str:
        """One plain sentence on what the figures can and cannot say."""
        if self.too_small:
            return (f"{self.key}: too small to support a conclusion ({'; '.join(self.too_small)}). "
                    "The figures are shown for completeness only.")
        flagged = [d["rate"].upper() for d in self.differentials if d["flagged"]]
        if flagged:
            return (f"{self.key}: {', '.join(flagged)} higher than overall beyond the set ratio, with "
                    "non-overlapping 95% intervals: a differential to investigate.")
        if not self.recorded:
            return f"{self.key}: demographic not recorded; reported, never compared."
        return f"{self.key}: no differential beyond the set ratio that the data can show."

    def to_dict(self) -> dict[str, Any]:
        def rate(r: Rate | None) -> float | None:
            return None if r is None or r.value is None else round(r.value, 6)

        def ci(r: Rate | None) -> list[float] | None:
            interval = None if r is None else r.ci
            return None if interval is None else [round(interval[0], 6), round(interval[1], 6)]

        return {
            "fnir": rate(self.fnir), "fnir_ci95": ci(self.fnir), "n_mated_searches": self.fnir.n,
            "fpir": rate(self.fpir), "fpir_ci95": ci(self.fpir), "n_nonmated_searches": self.fpir.n,
            "fnmr": rate(self.fnmr), "fnmr_ci95": ci(self.fnmr),
            "fmr": rate(self.fmr), "fmr_ci95": ci(self.fmr),
            "tar_at_far_1e-3": rate(self.tar), "tar_at_far_1e-3_ci95": ci(self.tar),
            "threshold_at_far_1e-3": None if self.tar_threshold is None else round(self.tar_threshold, 6),
            "n_genuine": self.n_genuine, "n_impostor": self.n_impostor,
            "identities": self.identities, "images": self.images, "gallery_images": self.gallery_images,
            "recorded": self.recorded, "conclusive": self.conclusive, "too_small": list(self.too_small),
            "differentials": self.differentials, "statement": self.statement(),
        }


def _group(key: str, recorded: bool, members: np.ndarray, identities: np.ndarray, found: Searches,
           pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], threshold: float, rule: SampleRule
           ) -> GroupResult:
    """Figures over the probes (and pairs) whose identity is in ``members`` (a bool per image)."""
    rows, cols, same, scores = pairs
    mate = found.mate[members[found.mated_probe]]
    nonmate = found.nonmate[members & np.isfinite(found.nonmate)]
    genuine = scores[same & members[rows]]
    impostor = scores[~same & (members[rows] | members[cols])]
    tar = tar_threshold = None
    if impostor.size and genuine.size and impostor.size >= 1 / FAR_TARGET:
        tar_threshold = threshold_at_far(impostor, FAR_TARGET)
        tar = Rate(int(np.count_nonzero(genuine >= tar_threshold)), int(genuine.size))
    n_identities = len(set(identities[members].tolist()))
    too_small = []
    if n_identities < rule.min_identities:
        too_small.append(f"{n_identities} identities, fewer than {rule.min_identities}")
    if mate.size < rule.min_mated:
        too_small.append(f"{mate.size} mated searches, fewer than {rule.min_mated}")
    if nonmate.size < rule.min_nonmated:
        too_small.append(f"{nonmate.size} non-mated searches, fewer than {rule.min_nonmated}")
    if impostor.size < rule.min_impostor:
        too_small.append(f"{impostor.size} impostor comparisons, fewer than {rule.min_impostor} needed to "
                         f"resolve FAR {FAR_TARGET:g}")
    return GroupResult(
        key=key, recorded=recorded, identities=n_identities, images=int(members.sum()),
        gallery_images=_gallery(identities, members),
        fnir=Rate(int(np.count_nonzero(mate < threshold)), int(mate.size)),
        fpir=Rate(int(np.count_nonzero(nonmate >= threshold)), int(nonmate.size)),
        fnmr=Rate(int(np.count_nonzero(genuine < threshold)), int(genuine.size)),
        fmr=Rate(int(np.count_nonzero(impostor >= threshold)), int(impostor.size)),
        tar=tar, tar_threshold=tar_threshold, n_genuine=int(genuine.size), n_impostor=int(impostor.size),
        too_small=too_small, det=det_curve(mate, nonmate),
    )


def _differentials(group: GroupResult, overall: GroupResult, ratio_limit: float) -> list[dict[str, Any]]:
    out = []
    for name in RATES:
        mine, base = getattr(group, name), getattr(overall, name)
        if mine.value is None or base.value is None:
            continue
        ratio = mine.value / base.value if base.value > 0 else (None if mine.value == 0 else math.inf)
        separate = mine.ci is not None and base.ci is not None and mine.ci[0] > base.ci[1]
        exceeds = ratio is not None and ratio > ratio_limit
        out.append({"rate": name, "ratio_to_overall": None if ratio is None or math.isinf(ratio) else round(ratio, 3),
                    "exceeds_ratio": exceeds, "intervals_separate": separate,
                    "flagged": exceeds and separate and group.conclusive and group.recorded
                    and name in FLAGGED_RATES})
    return out


def group_keys(labels: Mapping[str, str]) -> list[tuple[str, bool]]:
    """``("sex=F", True)``, ``("ethnicity_code=not_recorded", False)``...: the groups one identity is in."""
    return [(f"{column}={value}", value != NOT_RECORDED) for column, value in labels.items()]


def evaluate(similarity: np.ndarray, identities: Sequence[str], groups: Mapping[str, Mapping[str, str]],
             threshold: float, rank: int = 10, ratio_limit: float = 1.5, rule: SampleRule | None = None
             ) -> tuple[GroupResult, dict[str, GroupResult]]:
    """Overall and per-group figures; ``groups`` maps each identity to its labels (column -> value)."""
    rule = rule or SampleRule()
    labels = np.asarray(identities)
    missing = sorted(set(labels.tolist()) - set(groups))
    if missing:
        raise ValueError(f"identities without group labels: {', '.join(missing[:5])}")
    found = searches(similarity, labels, rank)
    rows, cols = np.triu_indices(len(labels), k=1)
    pairs = (rows, cols, labels[rows] == labels[cols], similarity[rows, cols].astype(np.float64))
    overall = _group("overall", True, np.ones(len(labels), dtype=bool), labels, found, pairs, threshold, rule)
    membership: dict[tuple[str, bool], set[str]] = {}
    for identity in set(labels.tolist()):
        for key in group_keys(groups[identity]):
            membership.setdefault(key, set()).add(identity)
    results = {}
    for (key, recorded), members in sorted(membership.items()):
        mask = np.isin(labels, sorted(members))
        result = _group(key, recorded, mask, labels, found, pairs, threshold, rule)
        result.differentials = _differentials(result, overall, ratio_limit)
        results[key] = result
    return overall, results


def _gallery(labels: np.ndarray, members: np.ndarray) -> int:
    """Median gallery size of the group's non-mated searches (every image but the probe identity's own)."""
    sizes = [len(labels) - int(np.count_nonzero(labels == identity)) for identity in labels[members]]
    return int(np.median(sizes)) if sizes else 0
