"""Turn per-image records into the figures of the evaluation report (a JSON-able dict).

The top-level keys the report must carry (``REQUIRED_KEYS``) are fixed because
the same command is run on a held-out set and compared mechanically; anything
else is extra detail under its own key.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.calibration import measure_bands
from models.evaluation.metrics import pair_scores, rank1_hits, verification
from models.evaluation.runner import ImageRecord

REQUIRED_KEYS = ("images", "identities", "detection_rate", "rank1", "tar_at_far_1e-2", "tar_at_far_1e-3",
                 "eer", "threshold_at_far_1e-3", "latency_ms")
STAGES = ("decode", "detect", "align", "embed")


def _finite(value: float) -> float | None:
    """JSON has no NaN: an unmeasurable figure (no impostor pairs, say) becomes null."""
    return value if math.isfinite(value) else None


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def latency_ms(records: Sequence[ImageRecord], embedder_id: str) -> dict[str, float | None]:
    """Median milliseconds per stage over the images that reached it (quality assessment included)."""
    per_stage: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "quality")}
    for record in records:
        for stage in ("decode", "detect", "quality"):
            if stage in record.timings_ms:
                per_stage[stage].append(record.timings_ms[stage])
        if embedder_id in record.embed_ms:
            align, embed = record.embed_ms[embedder_id]
            per_stage["align"].append(align)
            per_stage["embed"].append(embed)
    return {stage: _median(values) for stage, values in per_stage.items()}


def summarise(records: Sequence[ImageRecord], embedder_id: str) -> dict[str, Any]:
    """Every figure for one embedder: the required keys first, then the detail behind them."""
    n = len(records)
    with_template = [r for r in records if embedder_id in r.templates]
    labels = np.array([r.identity for r in with_template])
    templates = (np.vstack([r.templates[embedder_id] for r in with_template]).astype(np.float64)
                 if with_template else np.empty((0, 0)))
    similarity = templates @ templates.T
    genuine, impostor = pair_scores(similarity, labels)
    hits = int(rank1_hits(similarity, labels).sum())
    ver = verification(genuine, impostor) if genuine.size and impostor.size else None
    bands = measure_bands(genuine, impostor) if ver is not None else ()
    quality = Counter(r.quality.verdict for r in records if r.quality is not None)

    def figure(value: float | None) -> float | None:
        return None if value is None else _finite(round(value, 4))

    return {
        "images": n,
        "identities": len({r.identity for r in records}),
        "detection_rate": figure(len(with_template) / n if n else math.nan),
        "rank1": figure(hits / len(with_template) if with_template else math.nan),
        "tar_at_far_1e-2": figure(ver.tar_at_far[1e-2] if ver else None),
        "tar_at_far_1e-3": figure(ver.tar_at_far[1e-3] if ver else None),
        "eer": figure(ver.eer if ver else None),
        "threshold_at_far_1e-3": figure(ver.threshold_at_far[1e-3] if ver else None),
        "latency_ms": latency_ms(records, embedder_id),
        # Detail beyond the required keys.
        "embedder": embedder_id,
        "images_with_template": len(with_template),
        "detection_rate_raw": figure(sum(r.raw_detected for r in records) / n if n else math.nan),
        "rank1_all_images": figure(hits / n if n else math.nan),
        "threshold_at_far_1e-2": figure(ver.threshold_at_far[1e-2] if ver else None),
        "eer_threshold": figure(ver.eer_threshold if ver else None),
        "genuine": {k: figure(v) if isinstance(v, float) else v for k, v in ver.genuine.to_dict().items()}
        if ver else None,
        "impostor": {k: figure(v) if isinstance(v, float) else v for k, v in ver.impostor.to_dict().items()}
        if ver else None,
        "score_bands": [{"name": b.name, "threshold": b.threshold, "far": b.far, "tar": b.tar} for b in bands],
        "quality": {verdict: quality.get(verdict, 0) for verdict in ("pass", "warn", "fail")},
        "not_used": [{"file": str(r.path), "reason": r.reason(embedder_id)} for r in records
                     if embedder_id not in r.templates],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The figures as a few lines a person reads in a terminal."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    latency = ", ".join(f"{k} {v} ms" for k, v in summary["latency_ms"].items())
    lines = [
        f"embedder {summary['embedder']}",
        f"  images {summary['images']}, identities {summary['identities']}, "
        f"templates {summary['images_with_template']}",
        f"  detection rate {pct(summary['detection_rate_raw'])} raw, {pct(summary['detection_rate'])} after retry",
        f"  rank-1 {pct(summary['rank1'])} over images with a face, {pct(summary['rank1_all_images'])} over all",
        f"  TAR {pct(summary['tar_at_far_1e-2'])} at FAR 1e-2, {pct(summary['tar_at_far_1e-3'])} at FAR 1e-3; "
        f"EER {pct(summary['eer'])}",
        f"  threshold at FAR 1e-3 {pct(summary['threshold_at_far_1e-3'])}, "
        f"at FAR 1e-2 {pct(summary['threshold_at_far_1e-2'])}",
    ]
    for kind in ("genuine", "impostor"):
        stats = summary[kind]
        if stats:
            lines.append(f"  {kind} scores: {stats['count']} pairs, mean {pct(stats['mean'])}, "
                         f"min {pct(stats['min'])}, max {pct(stats['max'])}")
    for band in summary["score_bands"]:
        tar = "" if band["tar"] is None else f", TAR {band['tar']:.3f}"
        lines.append(f"  band {band['name']!r}: cosine >= {band['threshold']}, FAR {band['far']:.5f}{tar}")
    q = summary["quality"]
    lines.append(f"  quality: {q['pass']} pass, {q['warn']} warn, {q['fail']} fail")
    lines.append(f"  median latency: {latency}")
    for item in summary["not_used"]:
        lines.append(f"  not used: {item['file']}: {item['reason']}")
    return "\n".join(lines)
