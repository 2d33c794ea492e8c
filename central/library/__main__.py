"""``python -m central.library``: build reference-library snapshots.

    enrol --images DIR [--csv FILE] --out SNAPSHOT_DB --key-file KEYFILE [--version N]
    demo-import --out DIR [--faces DIR]

Errors the operator can fix are printed as one sentence and exit non-zero;
per-image problems never stop an enrolment and are listed in the summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from central.library.demo import build_demo_import
from central.library.enrol import EnrolReport, enrol, read_metadata
from core.errors import CustodyRfrError

_LIST_LIMIT = 50


def _print_report(report: EnrolReport, out: Path, key_file: Path) -> None:
    print(f"Enrolled {report.enrolled} images of {report.subjects} subjects into {out}")
    print(f"Key written to {key_file} (owner-only); keep it apart from the snapshot.")
    print(f"{len(report.outcomes)} images in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s)")
    for title, items in (("Skipped", report.skipped), ("Enrolled with a warning", report.flagged)):
        if items:
            print(f"{title} ({len(items)}):")
            for o in items[:_LIST_LIMIT]:
                print(f"  {o.source}: {o.reason}")
            if len(items) > _LIST_LIMIT:
                print(f"  ... and {len(items) - _LIST_LIMIT} more (see the log)")
    for warning in report.warnings:
        print(f"Warning: {warning}")


def _enrol(args: argparse.Namespace) -> int:
    from models.pipeline import FacePipeline

    metadata = read_metadata(args.csv) if args.csv else None
    pipeline = FacePipeline.load()
    report = enrol(args.images, args.out, args.key_file, pipeline, metadata=metadata, version=args.version)
    _print_report(report, args.out, args.key_file)
    return 0 if report.enrolled else 1


def _demo_import(args: argparse.Namespace) -> int:
    demo = build_demo_import(args.out, faces_dir=args.faces)
    print(f"Demo import: {demo.subjects} subjects, {demo.images} images in {demo.images_dir}")
    print(f"Metadata: {demo.csv_path}; {len(demo.probes)} probe images kept out of the library in "
          f"{demo.probes[0].parent if demo.probes else '-'}")
    print(f"Next: python -m central.library enrol --images {demo.images_dir} --csv {demo.csv_path} "
          f"--out library-v1.db --key-file library-v1.key")
    if args.faces:
        print("These images are for internal evaluation only: never commit this folder.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central.library",
                                     description="Build reference-library snapshots.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enrol", help="enrol a folder of <subject>/<image> files into a new snapshot")
    p.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per subject")
    p.add_argument("--csv", type=Path, help="subject metadata: " + "subject_ref,sex,ethnicity_code,"
                   "date_of_birth,image_date")
    p.add_argument("--out", type=Path, required=True, help="snapshot file to create (must not exist)")
    p.add_argument("--key-file", type=Path, required=True, help="key file to create (must not exist)")
    p.add_argument("--version", type=int, default=1, help="library version number (default 1)")
    p.set_defaults(run=_enrol)
    d = sub.add_parser("demo-import", help="build a demo import folder from registry-package photos")
    d.add_argument("--out", type=Path, required=True, help="new or empty folder to write")
    d.add_argument("--faces", type=Path, help="optional labelled set <identity>/<image> (e.g. ../shared/faces/dev)")
    d.set_defaults(run=_demo_import)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.run(args)
    except CustodyRfrError as e:
        print(f"central.library: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
