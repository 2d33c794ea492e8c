"""The harness's output: the JSON for the record, a summary to read, and the DET chart.

The JSON's ``overall`` and ``groups`` (keyed ``sex=F``, ``ethnicity_code=IC3``,
``age_band=25-34``...) each carry ``fnir``, ``fpir``, ``tar_at_far_1e-3``,
``n_genuine`` and ``n_impostor``, with intervals, search counts and a plain
statement of what the figures can support. ``definitions`` repeats how each
figure is measured, so the file stands on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from central.assurance.harness import FAR_TARGET, GroupResult, SampleRule
from central.reports.charts import det_chart

DEFINITIONS = {
    "fnir": "False negative identification rate: share of mated searches (each image against all other "
            "images, leave-one-out) whose mate is not among the top `rank` candidates at or above the threshold.",
    "fpir": "False positive identification rate: share of non-mated searches (each image against every "
            "image of other identities) returning any candidate at or above the threshold.",
    "fnmr": "False non-match rate (1:1): share of genuine pairs scoring below the threshold.",
    "fmr": "False match rate (1:1): share of impostor pairs scoring at or above the threshold.",
    "tar_at_far_1e-3": "True accept rate of the group's genuine pairs at the threshold where the group's own "
                       "impostor pairs have a false accept rate of at most 1e-3.",
    "group_membership": "A search belongs to the group of its probe's identity; a genuine pair to its "
                        "identity's groups; an impostor pair (each unordered pair once) to the groups of "
                        "either identity.",
    "ci95": "95% Wilson score interval on the counts; images of one person are not independent, so the "
            "true uncertainty is wider.",
    "differential": "FNIR or FPIR flagged when a group's rate exceeds `ratio_limit` times the overall rate "
                    "and its interval lies wholly above the overall one, for groups that are recorded and "
                    "large enough (see `sample_rule`). FNMR and FMR ratios are shown, never flagged: their "
                    "pairs share images, so their intervals are too narrow to trust.",
    "not_recorded": "Sex, ethnicity code or age band unknown, empty or IC9: reported, never compared.",
}


def build(overall: GroupResult, groups: Mapping[str, GroupResult], *, embedder: str, detector: str,
          threshold: float, threshold_source: str, rank: int, ratio_limit: float, rule: SampleRule,
          dataset: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able report; the detector is named because the faces found, distractors included, depend on it."""
    return {
        "embedder": embedder,
        "detector": detector,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "rank": rank,
        "far_target": FAR_TARGET,
        "ratio_limit": ratio_limit,
        "sample_rule": {"min_identities": rule.min_identities, "min_mated_searches": rule.min_mated,
                        "min_nonmated_searches": rule.min_nonmated, "min_impostor": rule.min_impostor},
        "dataset": dataset,
        "overall": overall.to_dict(),
        "groups": {key: result.to_dict() for key, result in groups.items()},
        "flagged": sorted(key for key, result in groups.items() if any(d["flagged"] for d in result.differentials)),
        "too_small": sorted(key for key, result in groups.items() if result.too_small),
        "definitions": DEFINITIONS,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary(report: Mapping[str, Any]) -> str:
    """A table a person can read in a terminal, then one statement per group."""
    lines = [f"Embedder {report['embedder']}, threshold {report['threshold']} ({report['threshold_source']}), "
             f"rank {report['rank']}",
             f"{'group':<28}{'ids':>5}{'FNIR':>8}{'mated':>7}{'FPIR':>8}{'nonmated':>9}"
             f"{'TAR@1e-3':>10}{'genuine':>9}{'impostor':>10}"]
    rows = {"overall": report["overall"], **report["groups"]}
    for key, g in rows.items():
        lines.append(f"{key:<28}{g['identities']:>5}{_pct(g['fnir']):>8}{g['n_mated_searches']:>7}"
                     f"{_pct(g['fpir']):>8}{g['n_nonmated_searches']:>9}{_pct(g['tar_at_far_1e-3']):>10}"
                     f"{g['n_genuine']:>9}{g['n_impostor']:>10}")
    lines.append("")
    lines.extend(g["statement"] for g in rows.values())
    return "\n".join(lines)


def chart(overall: GroupResult, groups: Mapping[str, GroupResult], title: str) -> bytes:
    """DET curves for the overall set and every group with searches of both kinds (PNG)."""
    curves, points = {}, {}
    for key, result in {"overall": overall, **groups}.items():
        fpir, fnir = result.det
        if fpir.size == 0:
            continue
        label = key if result.conclusive else f"{key} (too small)"
        curves[label] = (fpir.tolist(), fnir.tolist())
        if result.fpir.value is not None and result.fnir.value is not None:
            points[label] = (result.fpir.value, result.fnir.value)
    return det_chart(curves, points, title)
