"""``python -m central.assurance evaluate --faces DIR --groups CSV --json OUT``: accuracy per demographic group.

DIR holds ``<identity>/<image>`` files; CSV gives each identity's sex, ethnicity
code and age band (``central.assurance.groups``). The operating threshold is the
embedder manifest's calibrated ``threshold_far_1e-3``. Writes the JSON report
and a DET chart (``OUT`` with ``.det.png``, or ``--chart``), and prints a summary.
The report also carries the 1:N figures at a force's library size that
``python -m models.evaluate`` gives (``projected``, ``projection_model``,
``direct_check``), computed by the same module on the same templates.

Exit status: 0 on success (whether or not a differential is flagged: the
report says so), 2 when DIR, the CSV or the embedder cannot be used (one line
on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from central.assurance import report
from central.assurance.groups import GroupsFileError, read_groups
from central.assurance.harness import SampleRule, evaluate
from core.errors import CustodyRfrError
from models.evaluation.distractors import distractor_templates
from models.evaluation.identification import BOOTSTRAP_RESAMPLES, format_identification, identification_report
from models.evaluation.runner import labelled_images, run
from models.pipeline import DEFAULT_EMBEDDER, FacePipeline

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m central.assurance", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ev = commands.add_parser("evaluate", help="error rates per group on a labelled set")
    ev.add_argument("--faces", type=Path, required=True, help="folder of <identity>/<image> files")
    ev.add_argument("--groups", type=Path, required=True, help="CSV: identity,sex,ethnicity_code,age_band")
    ev.add_argument("--json", type=Path, required=True, help="write the report here")
    ev.add_argument("--chart", type=Path, help="DET chart PNG (default: the JSON path with .det.png)")
    ev.add_argument("--embedder", default=DEFAULT_EMBEDDER, help=f"manifest name or path (default {DEFAULT_EMBEDDER})")
    ev.add_argument("--rank", type=int, default=10, help="candidates a search returns, as at the desk (default 10)")
    ev.add_argument("--ratio", type=float, default=1.5,
                    help="flag a group whose rate exceeds this multiple of the overall rate (default 1.5)")
    ev.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES,
                    help=f"identity bootstrap resamples for the 1:N intervals (default {BOOTSTRAP_RESAMPLES})")
    return parser


def _fail(message: str) -> int:
    print(f"assurance: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.rank < 1 or args.ratio <= 1 or args.resamples < 0:
        return _fail("--rank must be at least 1, --ratio more than 1 and --resamples 0 or more")
    try:
        groups = read_groups(args.groups)
        identities = {identity for identity, _path in labelled_images(args.faces)}
    except (GroupsFileError, FileNotFoundError) as e:
        return _fail(str(e))
    unlabelled = sorted(identities - set(groups))
    if unlabelled:
        return _fail(f"{len(unlabelled)} identities in {args.faces} have no row in {args.groups} "
                     f"(label them, with unknown where not recorded): {', '.join(unlabelled[:5])}")
    try:
        pipeline = FacePipeline.load(embedder=args.embedder)
    except (CustodyRfrError, FileNotFoundError) as e:
        return _fail(str(e))
    calibration = pipeline.embedder_manifest.calibration
    if calibration is None:
        return _fail(f"{pipeline.embedder_id} has no [calibration] table: no operating threshold")
    threshold = calibration.threshold_far_1e_3
    records = run(args.faces, [pipeline])
    try:
        distractors = distractor_templates([pipeline])  # through this embedder's own detector, as models.evaluate
    except CustodyRfrError as e:
        return _fail(str(e))
    usable = [r for r in records if pipeline.embedder_id in r.templates]
    if len(usable) < 2:
        return _fail(f"only {len(usable)} images in {args.faces} yielded a face template")
    templates = np.vstack([r.templates[pipeline.embedder_id] for r in usable]).astype(np.float64)
    labels = [r.identity for r in usable]
    rule = SampleRule()
    overall, per_group = evaluate(templates @ templates.T, labels, groups, threshold, rank=args.rank,
                                  ratio_limit=args.ratio, rule=rule)
    scale = identification_report(templates, labels, distractors.templates[pipeline.embedder_id],
                                  distractors.sources, resamples=args.resamples)
    chart_path = args.chart or args.json.with_suffix(".det.png")
    result = report.build(
        overall, per_group, embedder=pipeline.embedder_id, detector=pipeline.detector_id, threshold=threshold,
        threshold_source=f"manifest [calibration] threshold_far_1e-3 (status {calibration.status})",
        rank=args.rank, ratio_limit=args.ratio, rule=rule,
        dataset={"faces": str(args.faces), "groups": str(args.groups), "images": len(records),
                 "images_with_template": len(usable), "identities": len(set(labels)),
                 "det_chart": str(chart_path)},
    ) | scale
    chart_path.write_bytes(report.chart(overall, per_group, f"DET per group: {pipeline.embedder_id}"))
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(report.summary(result))
    print(format_identification(result))
    print(f"wrote {args.json} and {chart_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
