"""``python -m models.evaluate --faces DIR --json OUT``: accuracy and speed of the face pipeline.

DIR holds ``<identity>/<image>`` files. The command prints the figures and
writes them as JSON; the required top-level keys are those of the first
``--embedder`` (the default embedder when none is given), and every embedder's
figures are also under ``embedders``, keyed by embedder id, so several can be
compared in one run on the same detections (``--candidates`` runs every
pipeline of issue 22, ``CANDIDATES``). ``--calibration`` also prints a
``[calibration]`` table for each embedder's manifest.

Each embedder's figures include 1:N identification at a force's library size
(``projected``, keyed ``100000``, ``1000000`` and ``20000000``, and the model
behind it in ``projection_model``; see ``models.evaluation.identification``)
and a ``direct_check``: the same searches against the set padded with every
face the pinned registry packages hold (``models.evaluation.distractors``).

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

import numpy as np

from core.errors import CustodyRfrError
from models.calibration import BAND_TARGETS, BELOW, BELOW_LABEL, ScoreBand, calibration_toml
from models.evaluation.distractors import Distractors, distractor_templates
from models.evaluation.identification import BOOTSTRAP_RESAMPLES, format_identification, identification_report
from models.evaluation.report import format_summary, summarise
from models.evaluation.runner import ImageRecord, run
from models.pipeline import DEFAULT_EMBEDDER, FacePipeline

logger = logging.getLogger(__name__)

# Every pipeline issue 22 compares (``--candidates``): the default first, then the other fusions, the
# single embedders, and the evaluation-only MobileFaceNet. The two-detector fusion runs BlazeFace as well.
CANDIDATES = ("sface_dlib_int8", "sface_dlib", "sface_yunet_dlib_blazeface", "sface_dlib_mirror_two_detectors",
              "sface_dlib_mobilefacenet", "sface_2021dec", "mobilefacenet_mirror", "mobilefacenet", "dlib_resnet")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True, help="folder of <identity>/<image> files")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--embedder", action="append",
                        help=f"manifest name or path (repeat to compare; default {DEFAULT_EMBEDDER})")
    parser.add_argument("--candidates", action="store_true",
                        help=f"compare every candidate pipeline in one run: {', '.join(CANDIDATES)}")
    parser.add_argument("--calibration", action="store_true",
                        help="also print a [calibration] table for each embedder's manifest")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                        help=f"identity bootstrap resamples for the 1:N intervals (default {BOOTSTRAP_RESAMPLES})")
    return parser


def identification(records: list[ImageRecord], embedder_id: str, distractors: Distractors,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """``projected``, ``projection_model`` and ``direct_check`` for one embedder's templates."""
    usable = [r for r in records if embedder_id in r.templates]
    if not usable:
        return {"projected": {}, "projection_model": {"error": "no image yielded a template"},
                "direct_check": {"error": "no image yielded a template"}}
    templates = np.vstack([r.templates[embedder_id] for r in usable])
    return identification_report(templates, [r.identity for r in usable], distractors.templates[embedder_id],
                                 distractors.sources, resamples=resamples)


def evaluate(faces: Path, embedders: list[str], resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """All figures: the first embedder's at the top level, every embedder's under ``embedders``.

    Embedders are grouped by the detector their manifest asks for; each group
    detects once per image. Each embedder's entry holds its verification
    figures, its detector and licence grade, and its 1:N figures (``projected``,
    ``projection_model``, ``direct_check``).
    """
    pipelines = [FacePipeline.load(embedder=name) for name in embedders]
    groups: dict[str, list[FacePipeline]] = {}
    for pipeline in pipelines:
        groups.setdefault(pipeline.detector_id, []).append(pipeline)
    per_embedder: dict[str, dict[str, Any]] = {}
    for detector_id, group in groups.items():
        records = run(faces, group)
        # Distractors go through the same detector as the group's probes: an embedder's crops assume it.
        distractors = distractor_templates(group)
        for p in group:
            per_embedder[p.embedder_id] = (
                summarise(records, p.embedder_id)
                | {"detector": detector_id, "licence": p.embedder_manifest.licence.grade}
                | identification(records, p.embedder_id, distractors, resamples))
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
    embedders = list(CANDIDATES) if args.candidates else args.embedder or [DEFAULT_EMBEDDER]
    if args.candidates and args.embedder:
        print("evaluate: give --candidates or --embedder, not both", file=sys.stderr)
        return 2
    if not args.faces.is_dir():  # before compiling any model
        print(f"evaluate: {args.faces} is not a folder of <identity>/<image> files", file=sys.stderr)
        return 2
    if args.resamples < 0:
        print("evaluate: --resamples must be 0 or more", file=sys.stderr)
        return 2
    try:
        result = evaluate(args.faces, embedders, args.resamples)
    except (CustodyRfrError, FileNotFoundError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    for summary in result["embedders"].values():
        print(format_summary(summary))
        print(format_identification(summary))
        if args.calibration and summary["genuine"]:
            print(_calibration_table(summary, str(args.faces)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
