"""1:N identification figures at a force's library size, projected from the measured impostor score tail.

A development set holds a few hundred images; a force's library holds 100,000
to 20 million records. What a search returns at that size depends on how often
a *different* person scores above a threshold far out in the impostor tail,
further than any small set measures. This module states one model for that and
computes its figures, with per-identity bootstrap intervals; pure numpy, no I/O.

The model (each figure in ``MODEL`` below, repeated into every report):

- **Galleries of one record per person.** A mated search is one genuine pair:
  the probe against one reference image of the same person. A library holding
  several images per person finds the mate more often than this.
- **FMR(t)**, the chance that one comparison with a different person scores at
  or above ``t``: the measured impostor pairs up to the tail threshold ``u``
  (the top ``TAIL_FRACTION`` of impostor scores); above ``u`` a generalised
  Pareto distribution fitted by maximum likelihood to the excesses over ``u``:
  ``FMR(t) = p_u * (1 + xi (t - u) / sigma) ** (-1 / xi)`` (``xi = 0``: the
  exponential ``p_u * exp(-(t - u) / sigma)``).
- **FPIR_N(t) = 1 - (1 - FMR(t)) ** N**: a search of ``N`` records of other
  people returns someone at or above ``t`` unless every comparison falls below.
  The threshold for a target FPIR is where this equals it.
- **FNIR_N** at that threshold: the share of mated searches whose mate scores
  below it (the candidate list is taken to hold every record at or above the
  threshold; at FPIR 0.01 a non-mate outranks the mate in at most 1 % of searches).
- **Mate rank**: a mate scoring ``s`` is expected at rank ``1 + (N - 1) FMR(s)``;
  ``mate_rank_median`` is the median of that over the mated searches.

Its limits, stated in every report: comparisons are taken as independent and
alike for every probe (some people attract more impostors than others, which
raises the true FPIR above the model's); FMR beyond the measured range is an
extrapolation of the fitted tail, and at 20 million records the FMR needed is
far below one in the number of impostor pairs measured; the development set is
not custody photos. The intervals resample identities, not pairs (pairs of one
person are not independent), and cover the sampling of identities only, not the
model's assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GALLERIES = (100_000, 1_000_000, 20_000_000)
FPIRS = (0.003, 0.01)
TAIL_FRACTION = 0.01  # the top 1 % of impostor pairs is the tail the model is fitted to
MIN_EXCEEDANCES = 50  # fewer impostor pairs above u cannot support a fit
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 22  # fixed: the same scores give the same intervals
CI_LEVEL = 0.95

MODEL = {
    "gallery": "one record per person; a mated search is one genuine pair (probe, one reference of the same person)",
    "fmr": "measured impostor pairs below the tail threshold u (the top 1% of impostor scores); above u a "
           "generalised Pareto tail fitted by maximum likelihood: FMR(t) = p_u (1 + xi (t - u) / sigma)^(-1/xi)",
    "fpir": "FPIR_N(t) = 1 - (1 - FMR(t))^N for a search of N records of other people",
    "fnir": "share of mated searches whose mate scores below the threshold at which FPIR_N is the target",
    "mate_rank_median": "median over mated searches of the mate's expected rank 1 + (N - 1) FMR(mate score)",
    "ci": "95% percentile interval over bootstrap resamples of identities (not pairs), fixed seed",
    "limits": "assumes comparisons independent and alike for every probe (people who attract impostors make "
              "the true FPIR higher); beyond the measured FMR the tail is extrapolated; development photos, "
              "not custody photos; the intervals cover the sampling of identities, not the model",
}


class ProjectionError(ValueError):
    """The scores cannot support a projection (too few identities or impostor pairs); the message says which."""


@dataclass(frozen=True)
class PairScores:
    """Genuine and impostor pair scores with the identities behind them, so identities can be resampled."""

    genuine: np.ndarray
    genuine_identity: np.ndarray  # index of the identity of each genuine pair
    impostor: np.ndarray
    impostor_a: np.ndarray  # identity indices of each impostor pair's two images
    impostor_b: np.ndarray
    identities: int


def pair_scores_by_identity(similarity: np.ndarray, labels: Sequence[str] | np.ndarray) -> PairScores:
    """Every unordered pair ``i < j`` of a square similarity matrix, split and labelled by identity."""
    names, index = np.unique(np.asarray(labels), return_inverse=True)
    n = len(index)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity is {similarity.shape}, labels has {n} entries")
    rows, cols = np.triu_indices(n, k=1)
    scores = similarity[rows, cols].astype(np.float64)
    a, b = index[rows], index[cols]
    same = a == b
    return PairScores(scores[same], a[same], scores[~same], a[~same], b[~same], len(names))


class WeightedScores:
    """Scores with weights, sorted once, for weighted survival counts and quantiles."""

    def __init__(self, scores: np.ndarray, weights: np.ndarray | None = None) -> None:
        order = np.argsort(scores, kind="stable")
        self.scores = scores[order].astype(np.float64)
        self.weights = (np.ones(scores.size) if weights is None else weights[order]).astype(np.float64)
        # above[i]: total weight of scores[i:], so the weight at or above a score is one lookup.
        self.above = np.concatenate([np.cumsum(self.weights[::-1])[::-1], [0.0]])
        self.total = float(self.above[0])

    def survival(self, t: np.ndarray | float) -> np.ndarray:
        """Weighted share of scores at or above ``t``."""
        return self.above[np.searchsorted(self.scores, t, side="left")] / self.total

    def below(self, t: float) -> float:
        """Weighted share of scores strictly below ``t``."""
        return 1.0 - float(self.survival(t))

    def threshold_at(self, rate: float) -> float:
        """The lowest threshold whose weighted share at or above it is at most ``rate`` (as ``threshold_at_far``)."""
        allowed = rate * self.total + 1e-9
        # The first index whose weight at or above it is within the allowance; the threshold sits just above
        # the score before it (so that score and everything below are refused).
        i = int(np.searchsorted(-self.above[:-1], -allowed, side="left"))
        if i == 0:
            return float(self.scores[0])
        return float(np.nextafter(self.scores[i - 1], np.inf))


@dataclass(frozen=True)
class Tail:
    """A generalised Pareto tail above ``threshold``: ``FMR(t) = p_exceed * (1 + shape (t - u)/scale)^(-1/shape)``."""

    threshold: float
    p_exceed: float
    scale: float
    shape: float
    exceedances: float  # weighted count of impostor pairs above the threshold

    def survival(self, t: np.ndarray) -> np.ndarray:
        """FMR at ``t`` for ``t >= threshold`` (0 beyond the endpoint of a bounded tail)."""
        y = np.maximum(np.asarray(t, dtype=np.float64) - self.threshold, 0.0)
        if abs(self.shape) < 1e-9:
            return self.p_exceed * np.exp(-y / self.scale)
        base = 1.0 + self.shape * y / self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.p_exceed * np.power(np.maximum(base, 0.0), -1.0 / self.shape)
        return np.where(base > 0, out, 0.0)

    def inverse(self, fmr: float) -> float:
        """The score at which the tail's FMR equals ``fmr`` (``0 < fmr <= p_exceed``)."""
        ratio = self.p_exceed / fmr
        if abs(self.shape) < 1e-9:
            return self.threshold + self.scale * math.log(ratio)
        return self.threshold + self.scale / self.shape * (ratio**self.shape - 1.0)

    def to_dict(self) -> dict[str, float]:
        return {"threshold": round(self.threshold, 6), "fmr_at_threshold": round(self.p_exceed, 8),
                "scale": round(self.scale, 6), "shape": round(self.shape, 4),
                "exceedances": round(self.exceedances, 1),
                "endpoint": None if self.shape >= 0 else round(self.threshold - self.scale / self.shape, 4)}


def _profile(theta: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grimshaw's profile: for each theta = shape/scale, the best shape and the log-likelihood per unit weight."""
    # A few thetas at a time: a large set's tail has hundreds of thousands of excesses.
    chunks = np.array_split(theta, max(theta.size // 8, 1))
    shape = np.concatenate([np.log1p(np.outer(chunk, y)) @ w for chunk in chunks])
    shape /= w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = -(np.log(shape / theta) + shape + 1.0)
    return shape, loglik


def fit_gpd(excess: np.ndarray, weights: np.ndarray | None = None, exponential: bool = False) -> tuple[float, float]:
    """(scale, shape) of a generalised Pareto fit to positive excesses by weighted maximum likelihood.

    The two-parameter likelihood is maximised over one parameter, theta =
    shape / scale, on a grid refined twice (the shape then follows in closed
    form), which needs numpy only. Shapes below -0.5 are not searched: there
    the maximum-likelihood estimator is irregular, and an impostor tail that
    short would not need extrapolating. ``exponential`` fixes the shape at 0.
    """
    y = np.asarray(excess, dtype=np.float64)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.size < 2 or np.any(y < 0) or w.sum() <= 0:
        raise ProjectionError("a tail fit needs at least two non-negative excesses with positive weight")
    mean = float(y @ w / w.sum())
    if exponential or mean <= 0:
        return max(mean, 1e-12), 0.0
    y_max = float(y.max())
    low = -(1.0 - 1e-9) / y_max
    # Log-spaced on each side of 0 (the exponential), from the bounded end to heavy tails (shape up to ~5).
    negative = -np.geomspace(-low, 1e-6 / mean, 120)
    positive = np.geomspace(1e-6 / mean, 200.0 / mean, 120)
    grid = np.concatenate([negative, positive])
    best_theta = grid[0]
    for _ in range(3):
        shape, loglik = _profile(grid, y, w)
        loglik = np.where(np.isfinite(loglik) & (shape >= -0.5), loglik, -np.inf)
        if not np.isfinite(loglik).any():
            return mean, 0.0
        k = int(np.argmax(loglik))
        best_theta = grid[k]
        left, right = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
        grid = np.linspace(left, right, 41)
    exponential_loglik = -(math.log(mean) + 1.0)
    shape_best, loglik_best = _profile(np.array([best_theta]), y, w)
    if not loglik_best[0] > exponential_loglik:
        return mean, 0.0
    return float(shape_best[0] / best_theta), float(shape_best[0])


def fit_tail(impostor: WeightedScores, tail_fraction: float = TAIL_FRACTION, exponential: bool = False) -> Tail:
    """The impostor tail above the score that leaves ``tail_fraction`` of the (weighted) pairs above it."""
    u = impostor.threshold_at(tail_fraction)
    start = int(np.searchsorted(impostor.scores, u, side="left"))
    excess = impostor.scores[start:] - u
    weights = impostor.weights[start:]
    if weights.sum() < MIN_EXCEEDANCES or excess.size < MIN_EXCEEDANCES:
        raise ProjectionError(f"only {weights.sum():.0f} impostor pairs above the tail threshold; at least "
                              f"{MIN_EXCEEDANCES} are needed (about {MIN_EXCEEDANCES / tail_fraction:.0f} "
                              "impostor pairs in all)")
    scale, shape = fit_gpd(excess, weights, exponential)
    return Tail(threshold=u, p_exceed=float(weights.sum() / impostor.total), scale=scale, shape=shape,
                exceedances=float(weights.sum()))


def fmr_for_fpir(fpir: float, gallery: int) -> float:
    """The per-comparison FMR at which ``gallery`` independent comparisons give ``fpir``: 1 - (1 - fpir)^(1/N)."""
    return -math.expm1(math.log1p(-fpir) / gallery)


def fpir_for_fmr(fmr: np.ndarray | float, gallery: int) -> np.ndarray:
    """FPIR_N = 1 - (1 - FMR)^N, computed without cancellation for tiny FMR."""
    return -np.expm1(gallery * np.log1p(-np.asarray(fmr, dtype=np.float64)))


@dataclass(frozen=True)
class FmrModel:
    """FMR(t): measured below the tail threshold, the fitted tail above it."""

    impostor: WeightedScores
    tail: Tail

    def fmr(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return np.where(t < self.tail.threshold, self.impostor.survival(t), self.tail.survival(t))

    def threshold(self, fmr: float) -> float:
        """The score at which FMR falls to ``fmr``: measured where it can be, the fitted tail beyond."""
        if fmr >= self.tail.p_exceed:
            return self.impostor.threshold_at(fmr)
        return self.tail.inverse(fmr)


def _projection(model: FmrModel, genuine: WeightedScores, median_genuine: float, gallery: int,
                fpirs: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for fpir in fpirs:
        threshold = model.threshold(fmr_for_fpir(fpir, gallery))
        out[f"threshold_at_fpir_{fpir:g}"] = threshold
        out[f"fnir_at_fpir_{fpir:g}"] = genuine.below(threshold)
    out["mate_rank_median"] = 1.0 + (gallery - 1) * float(model.fmr(np.array([median_genuine]))[0])
    return out


def _weighted_median(values: WeightedScores) -> float:
    half = values.total / 2
    i = int(np.searchsorted(np.cumsum(values.weights), half, side="left"))
    return float(values.scores[min(i, values.scores.size - 1)])


def project(scores: PairScores, galleries: Sequence[int] = GALLERIES, fpirs: Sequence[float] = FPIRS,
            identity_weights: np.ndarray | None = None, tail_fraction: float = TAIL_FRACTION,
            exponential: bool = False) -> tuple[Tail, dict[int, dict[str, float]]]:
    """The tail fit and, per gallery size, the thresholds, FNIR at each FPIR and the median mate rank.

    ``identity_weights`` (how many times each identity was drawn) weights a
    genuine pair by its identity's count and an impostor pair by the product
    of its two identities' counts: the same figures on a resampled set.
    """
    k = np.ones(scores.identities) if identity_weights is None else identity_weights.astype(np.float64)
    g_weights = k[scores.genuine_identity]
    i_weights = k[scores.impostor_a] * k[scores.impostor_b]
    keep_g, keep_i = g_weights > 0, i_weights > 0
    if not keep_g.any() or not keep_i.any():
        raise ProjectionError("a projection needs genuine and impostor pairs")
    impostor = WeightedScores(scores.impostor[keep_i], i_weights[keep_i])
    genuine = WeightedScores(scores.genuine[keep_g], g_weights[keep_g])
    model = FmrModel(impostor, fit_tail(impostor, tail_fraction, exponential))
    median = _weighted_median(genuine)
    return model.tail, {n: _projection(model, genuine, median, n, fpirs) for n in galleries}


def _interval(values: list[float]) -> list[float] | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _rounded(key: str, value: float) -> float:
    if key.startswith("mate_rank"):
        return round(value, 1)
    return round(value, 6 if key.startswith("threshold") else 4)


def projected(scores: PairScores, galleries: Sequence[int] = GALLERIES, fpirs: Sequence[float] = FPIRS,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, exponential: bool = False
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``projected`` (keyed by gallery size as a string, each figure with its ``_ci`` pair) and the model used.

    Each bootstrap resample draws identities with replacement; one whose tail
    cannot be fitted (too few impostor pairs drawn) is skipped and counted.
    """
    tail, point = project(scores, galleries, fpirs, exponential=exponential)
    rng = np.random.default_rng(seed)
    draws: dict[int, dict[str, list[float]]] = {n: {key: [] for key in point[n]} for n in galleries}
    shapes: list[float] = []
    skipped = 0
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, scores.identities, scores.identities), minlength=scores.identities)
        try:
            resampled_tail, figures = project(scores, galleries, fpirs, counts, exponential=exponential)
        except ProjectionError:
            skipped += 1
            continue
        shapes.append(resampled_tail.shape)
        for n in galleries:
            for key, value in figures[n].items():
                draws[n][key].append(value)
    out: dict[str, Any] = {}
    for n in galleries:
        entry: dict[str, Any] = {}
        for key, value in point[n].items():
            entry[key] = _rounded(key, value)
            interval = _interval(draws[n][key])
            entry[f"{key}_ci"] = None if interval is None else [_rounded(key, v) for v in interval]
        out[str(n)] = entry
    shape_ci = _interval(shapes)
    model = dict(MODEL)
    model.update({
        "tail": tail.to_dict() | {"shape_ci": None if shape_ci is None else [round(v, 4) for v in shape_ci],
                                  "family": "exponential" if exponential else "generalised Pareto"},
        "genuine_pairs": int(scores.genuine.size), "impostor_pairs": int(scores.impostor.size),
        "identities": scores.identities,
        "bootstrap": {"resamples": resamples, "skipped": skipped, "seed": seed, "unit": "identity",
                      "level": CI_LEVEL},
    })
    return out, model


@dataclass(frozen=True)
class DirectSearches:
    """Each probe searched against every other image of the set and every distractor.

    ``mate``: one score per mated search (probe, one other image of the same
    identity), with the probe's index in ``mate_probe`` and the number of
    non-mates scoring above it in ``outranked``. ``nonmate_max``: per probe, the
    best score among its non-mates (other identities' images and distractors).
    """

    mate: np.ndarray
    mate_probe: np.ndarray
    outranked: np.ndarray
    nonmate_max: np.ndarray
    probe_identity: np.ndarray
    gallery: np.ndarray  # per probe: the records it is searched against (non-mates and one mate)
    identities: int


def direct_searches(templates: np.ndarray, labels: Sequence[str] | np.ndarray, distractors: np.ndarray
                    ) -> DirectSearches:
    """Leave-one-out searches of a labelled set padded with distractor templates (rows L2-normalised)."""
    names, index = np.unique(np.asarray(labels), return_inverse=True)
    n = len(index)
    if templates.shape[0] != n:
        raise ValueError(f"{templates.shape[0]} templates for {n} labels")
    own = templates.astype(np.float64) @ templates.T.astype(np.float64)
    extra = (templates.astype(np.float64) @ distractors.T.astype(np.float64)) if distractors.size else np.empty((n, 0))
    mates, mate_probe, outranked = [], [], []
    nonmate_max = np.full(n, -np.inf)
    gallery = np.zeros(n, dtype=np.int64)
    for i in range(n):
        same = index == index[i]
        same[i] = False
        nonmate = np.concatenate([own[i, index != index[i]], extra[i]])
        nonmate.sort()
        gallery[i] = nonmate.size + 1
        if nonmate.size:
            nonmate_max[i] = nonmate[-1]
        for score in own[i, same]:
            mates.append(score)
            mate_probe.append(i)
            outranked.append(nonmate.size - np.searchsorted(nonmate, score, side="right"))
    return DirectSearches(np.array(mates, dtype=np.float64), np.array(mate_probe, dtype=np.int64),
                          np.array(outranked, dtype=np.int64), nonmate_max, index, gallery, len(names))


def _direct_figures(found: DirectSearches, fpirs: Sequence[float], k: np.ndarray) -> dict[str, float]:
    probe_w = k[found.probe_identity]
    nonmate = WeightedScores(found.nonmate_max[probe_w > 0], probe_w[probe_w > 0])
    mate_w = probe_w[found.mate_probe]
    mates = WeightedScores(found.mate[mate_w > 0], mate_w[mate_w > 0])
    out = {}
    for fpir in fpirs:
        threshold = nonmate.threshold_at(fpir)
        out[f"threshold_at_fpir_{fpir:g}"] = threshold
        out[f"fnir_at_fpir_{fpir:g}"] = mates.below(threshold)
    ranks = WeightedScores((found.outranked + 1).astype(np.float64)[mate_w > 0], mate_w[mate_w > 0])
    out["mate_rank_median"] = _weighted_median(ranks)
    return out


def direct_check(found: DirectSearches, fpirs: Sequence[float] = FPIRS, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Measured FNIR at each FPIR and median mate rank in the padded gallery, with identity-bootstrap intervals.

    The FPIR is measured over the probes' non-mated searches, so at FPIR 0.003
    a few hundred probes let through at most one: read the interval, not the
    point. The gallery stays fixed while probe identities are resampled.
    """
    if found.mate.size == 0 or not np.isfinite(found.nonmate_max).any():
        raise ProjectionError("a direct check needs mated and non-mated searches")
    point = _direct_figures(found, fpirs, np.ones(found.identities))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in point}
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, found.identities, found.identities), minlength=found.identities)
        if not counts[found.probe_identity[found.mate_probe]].any():
            continue
        for key, value in _direct_figures(found, fpirs, counts.astype(np.float64)).items():
            draws[key].append(value)
    out: dict[str, Any] = {}
    for key, value in point.items():
        out[key] = _rounded(key, value)
        interval = _interval(draws[key])
        out[f"{key}_ci"] = None if interval is None else [_rounded(key, v) for v in interval]
    out.update({"gallery_size_median": int(np.median(found.gallery)), "gallery_size_min": int(found.gallery.min()),
                "gallery_size_max": int(found.gallery.max()), "probes": int(found.nonmate_max.size),
                "mated_searches": int(found.mate.size)})
    return out


def identification_report(templates: np.ndarray, labels: Sequence[str] | np.ndarray, distractors: np.ndarray,
                          distractor_sources: Mapping[str, int], resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """``projected``, ``projection_model`` and ``direct_check`` for one embedder's templates of a labelled set.

    The direct check also carries the model's own figures at the direct
    gallery's size (``model_at_this_size``), so the model is checked against a
    measurement where one can be made. Figures that the scores cannot support
    are replaced by ``{"error": why}``.
    """
    labels = np.asarray(labels)
    similarity = templates.astype(np.float64) @ templates.T.astype(np.float64)
    scores = pair_scores_by_identity(similarity, labels)
    out: dict[str, Any] = {}
    try:
        out["projected"], out["projection_model"] = projected(scores, resamples=resamples, seed=seed)
    except ProjectionError as e:
        out["projected"], out["projection_model"] = {}, {"error": str(e)}
    try:
        found = direct_searches(templates, labels, distractors)
        direct = direct_check(found, resamples=resamples, seed=seed)
        direct["distractors"] = int(distractors.shape[0])
        direct["distractor_sources"] = dict(distractor_sources)
        size = direct["gallery_size_median"]
        if out["projected"]:
            _tail, at_size = project(scores, galleries=(size,))
            direct["model_at_this_size"] = {key: _rounded(key, v) for key, v in at_size[size].items()}
        out["direct_check"] = direct
    except ProjectionError as e:
        out["direct_check"] = {"error": str(e)}
    return out


def format_identification(report: Mapping[str, Any]) -> str:
    """A few terminal lines: the projected figures per gallery size, then the direct check."""
    def ci(entry: Mapping[str, Any], key: str, fmt: str) -> str:
        value, interval = entry.get(key), entry.get(f"{key}_ci")
        if value is None:
            return "n/a"
        text = format(value, fmt)
        return text if not interval else f"{text} [{format(interval[0], fmt)}, {format(interval[1], fmt)}]"

    lines = []
    model = report.get("projection_model", {})
    if "error" in model:
        lines.append(f"  1:N projection: not possible: {model['error']}")
    elif report.get("projected"):
        tail = model["tail"]
        lines.append(f"  1:N projection ({tail['family']} tail above {tail['threshold']:.4f}, shape "
                     f"{tail['shape']}, {tail['exceedances']:.0f} impostor pairs above; 95% identity bootstrap):")
        for size, entry in report["projected"].items():
            lines.append(f"    N={int(size):>10,}: FNIR {ci(entry, 'fnir_at_fpir_0.003', '.3f')} at FPIR 0.003, "
                         f"{ci(entry, 'fnir_at_fpir_0.01', '.3f')} at FPIR 0.01; median mate rank "
                         f"{ci(entry, 'mate_rank_median', '.1f')}")
    direct = report.get("direct_check", {})
    if "error" in direct:
        lines.append(f"  direct check: not possible: {direct['error']}")
    elif direct:
        lines.append(f"  direct check, gallery of {direct['gallery_size_median']} records ({direct['distractors']} "
                     f"distractor faces): FNIR {ci(direct, 'fnir_at_fpir_0.003', '.3f')} at FPIR 0.003, "
                     f"{ci(direct, 'fnir_at_fpir_0.01', '.3f')} at FPIR 0.01; median mate rank "
                     f"{ci(direct, 'mate_rank_median', '.0f')}")
        model_here = direct.get("model_at_this_size")
        if model_here:
            lines.append(f"    the model at that size: FNIR {model_here['fnir_at_fpir_0.003']:.3f} / "
                         f"{model_here['fnir_at_fpir_0.01']:.3f}, median mate rank "
                         f"{model_here['mate_rank_median']:.1f}")
    return "\n".join(lines)
