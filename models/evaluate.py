"""``python -m models.evaluate --faces DIR --json OUT``: accuracy and speed of the face pipeline.

DIR holds ``<identity>/<image>`` files. The command prints the figures and
writes them as JSON; the required top-level keys are those of the first
``--embedder`` (the default embedder when none is given), and every embedder's
figures are also under ``embedders``, keyed by embedder id, so several can be
compared in one run on the same detections. ``--calibration`` also prints a
``[calibration]`` table for each embedder's manifest.

Exit status: 0 on success, 2 when DIR or a manifest cannot be used (one line
on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

from core.errors import CustodyRfrError
from models.calibration import BAND_TARGETS, BELOW, BELOW_LABEL, ScoreBand, calibration_toml
from models.evaluation.report import format_summary, summarise
from models.evaluation.runner import run
from models.pipeline import DEFAULT_EMBEDDER, FacePipeline

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True, help="folder of <identity>/<image> files")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--embedder", action="append",
                        help=f"manifest name or path (repeat to compare; default {DEFAULT_EMBEDDER})")
    parser.add_argument("--calibration", action="store_true",
                        help="also print a [calibration] table for each embedder's manifest")
    return parser


def evaluate(faces: Path, embedders: list[str]) -> dict[str, Any]:
    """All figures: the first embedder's at the top level, every embedder's under ``embedders``.

    Embedders are grouped by the detector their manifest asks for; each group
    detects once per image. Each embedder's entry is a dict of figures that
    later sections (for example 1:N projections under ``projected``) can extend.
    """
    pipelines = [FacePipeline.load(embedder=name) for name in embedders]
    groups: dict[str, list[FacePipeline]] = {}
    for pipeline in pipelines:
        groups.setdefault(pipeline.detector_id, []).append(pipeline)
    per_embedder: dict[str, dict[str, Any]] = {}
    for detector_id, group in groups.items():
        records = run(faces, group)
        for p in group:
            per_embedder[p.embedder_id] = summarise(records, p.embedder_id) | {
                "detector": detector_id, "licence": p.embedder_manifest.licence.grade}
    per_embedder = {p.embedder_id: per_embedder[p.embedder_id] for p in pipelines}
    result = dict(per_embedder[pipelines[0].embedder_id])
    result["dataset"] = str(faces)
    result["embedders"] = per_embedder
    return result


def _calibration_table(summary: dict[str, Any], dataset: str) -> str:
    """The measured bands as a manifest ``[calibration]`` table, with the wording staff will read."""
    labels = {t.name: t.label for t in BAND_TARGETS} | {BELOW: BELOW_LABEL}
    bands = tuple(ScoreBand(b["name"], labels[b["name"]], b["threshold"], b["far"], b["tar"])
                  for b in summary["score_bands"])
    return calibration_toml(
        bands, status="dev-set", dataset=dataset, measured_on=date.today().isoformat(),
        genuine_pairs=summary["genuine"]["count"], impostor_pairs=summary["impostor"]["count"],
        source=f"python -m models.evaluate on {dataset}: {summary['images_with_template']} of "
               f"{summary['images']} images with a face, {summary['identities']} identities, leave-one-out.",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    embedders = args.embedder or [DEFAULT_EMBEDDER]
    if not args.faces.is_dir():  # before compiling any model
        print(f"evaluate: {args.faces} is not a folder of <identity>/<image> files", file=sys.stderr)
        return 2
    try:
        result = evaluate(args.faces, embedders)
    except (CustodyRfrError, FileNotFoundError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    for summary in result["embedders"].values():
        print(format_summary(summary))
        if args.calibration and summary["genuine"]:
            print(_calibration_table(summary, str(args.faces)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
