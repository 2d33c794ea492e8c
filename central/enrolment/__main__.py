"""``python -m central.enrolment``: build reference-library snapshots, deltas and composition reports.

    enrol --images DIR [--csv FILE] --out SNAPSHOT_DB --key-file KEYFILE [--version N]
          [--resume] [--reuse-key] [--no-progress] [--library-id ID --database URL]
          [--workers N | --scheduler tls://HOST:8786 [--tls-ca-file F --tls-cert F --tls-key F]
           [--allow-plaintext]] [--batch-size N]
    delta --base OLD_DB --target NEW_DB --key-file KEYFILE --out DELTA
    composition --library DB --key-file KEYFILE [--as-of YYYY-MM-DD] [--json OUT] [--library-id ID --database URL]
    demo-import --out DIR [--faces DIR]
    demo-subset --from DIR --out DIR [--subjects N]
    demo-libraries --database URL --device-id ID [--expires-in-minutes N]

Errors the operator can fix are printed as one sentence and exit non-zero;
per-image problems and bad manifest rows never stop an enrolment and are
listed in the summary. ``enrol`` runs in this process by default; with
``--workers N`` (a local Dask cluster) or ``--scheduler`` (an existing one) the
face pipeline runs on Dask workers and this process still writes the library,
which comes out the same (``central.enrolment.distributed``).

With ``--library-id`` (and central's ``--database``, or ``RFR_CENTRAL__DATABASE``), the built version's
composition is kept in central's ``library_compositions`` beside that library's authorisation record
(``central.libraries.store``), so the record of who is in each version is made when it is built.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date, timedelta
from pathlib import Path

from central.enrolment import demo_libraries
from central.enrolment.demo import build_demo_import
from central.enrolment.enrol import EnrolReport, Manifest, enrol, read_manifest
from central.libraries.store import LibraryStore
from core.errors import CustodyRfrError
from library.composition import composition
from library.delta import make_delta
from library.snapshot import Snapshot, read_key_file

_LIST_LIMIT = 50


def _print_report(report: EnrolReport, out: Path, key_file: Path) -> None:
    resumed = f" ({report.resumed} from the interrupted run)" if report.resumed else ""
    print(f"Enrolled {report.enrolled} images{resumed} of {report.subjects} subjects into {out}")
    if report.key_created:
        print(f"Key written to {key_file} (owner-only); keep it apart from the snapshot.")
    print(f"{len(report.outcomes)} images in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s)")
    if report.rejected_rows:
        print(f"Rejected manifest rows ({len(report.rejected_rows)}):")
        for row in report.rejected_rows[:_LIST_LIMIT]:
            print(f"  line {row.line} ({row.subject_ref or '-'}): {row.reason}")
        if len(report.rejected_rows) > _LIST_LIMIT:
            print(f"  ... and {len(report.rejected_rows) - _LIST_LIMIT} more")
    for title, items in (("Skipped", report.skipped), ("Enrolled with a warning", report.flagged)):
        if items:
            print(f"{title} ({len(items)}):")
            for o in items[:_LIST_LIMIT]:
                print(f"  {o.source}: {o.reason}")
            if len(items) > _LIST_LIMIT:
                print(f"  ... and {len(items) - _LIST_LIMIT} more (see the log)")
    for warning in report.warnings:
        print(f"Warning: {warning}")


def _run_enrol(args: argparse.Namespace, manifest: Manifest) -> EnrolReport:
    """In this process, or with the pipeline on a Dask cluster (imported only then: it is a heavy dependency)."""
    if not (args.scheduler or args.workers):
        from models.pipeline import DEFAULT_EMBEDDER, FacePipeline

        pipeline = FacePipeline.load(embedder=args.embedder or DEFAULT_EMBEDDER)
        return enrol(args.images, args.out, args.key_file, pipeline, metadata=manifest,
                     version=args.version, resume=args.resume, reuse_key=args.reuse_key,
                     progress=not args.no_progress)
    from distributed import Security

    from central.enrolment.distributed import DaskTemplater, cluster_client, local_inference_threads

    security = None
    if args.tls_ca_file or args.tls_cert or args.tls_key:
        security = Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert,
                            tls_client_key=args.tls_key, require_encryption=True)
    with cluster_client(args.scheduler, args.workers, security=security,
                        allow_plaintext=args.allow_plaintext) as client:
        threads = args.inference_threads or (local_inference_threads(args.workers) if args.workers else None)
        templater = DaskTemplater(client, batch_size=args.batch_size, inference_threads=threads)
        return enrol(args.images, args.out, args.key_file, templater, metadata=manifest, version=args.version,
                     resume=args.resume, reuse_key=args.reuse_key, progress=not args.no_progress)


def _enrol(args: argparse.Namespace) -> int:
    if args.scheduler and args.workers:
        print("central.enrolment: give --scheduler (an existing cluster) or --workers (a local one), not both.",
              file=sys.stderr)
        return 2
    if args.embedder is not None:
        from models.manifest import fused_names, manifest_names

        shipped = sorted(set(manifest_names()) | set(fused_names()))
        if args.embedder not in shipped:
            print(f"central.enrolment: --embedder {args.embedder!r} is not a shipped face model; choose one of "
                  f"{', '.join(shipped)}.", file=sys.stderr)
            return 2
        if args.scheduler or args.workers:
            print("central.enrolment: --embedder runs in-process only; leave out --workers and --scheduler "
                  "(a cluster's workers load the default pipeline).", file=sys.stderr)
            return 2
    manifest = read_manifest(args.csv) if args.csv else Manifest()
    try:
        report = _run_enrol(args, manifest)
    except KeyboardInterrupt:
        print(f"\nInterrupted. What was enrolled is kept; rerun the same command with --resume to finish "
              f"{args.out}.", file=sys.stderr)
        return 130
    _print_report(report, args.out, args.key_file)
    if report.enrolled and args.library_id:
        snapshot = Snapshot.open(args.out, read_key_file(args.key_file))
        try:
            _keep_composition(args, composition(snapshot, date.today()))
        finally:
            snapshot.close()
    return 0 if report.enrolled else 1


def _keep_composition(args: argparse.Namespace, report: dict[str, object]) -> None:
    """Store the version's composition with its library's authorisation record at central."""
    store = LibraryStore(args.database)
    try:
        if store.get(args.library_id) is None:
            print(f"Warning: central has no library {args.library_id!r} yet; its composition is kept and will show "
                  "once the library is requested on central's /libraries page.")
        store.record_composition(args.library_id, int(report["library_version"]),  # type: ignore[call-overload]
                                 report)
    finally:
        store.close()
    print(f"Composition of {args.library_id} version {report['library_version']} kept in central's database.")


def _delta(args: argparse.Namespace) -> int:
    key = read_key_file(args.key_file)
    base, target = Snapshot.open(args.base, key), Snapshot.open(args.target, key)
    try:
        info = make_delta(base, target, args.out, key)
    finally:
        base.close()
        target.close()
    print(f"Delta {args.out}: version {info.base_version} -> {info.result_version}, "
          f"{info.added} added, {info.removed} removed")
    print(f"base digest {info.base_digest}\nresult digest {info.result_digest}")
    return 0


def _composition(args: argparse.Namespace) -> int:
    snapshot = Snapshot.open(args.library, read_key_file(args.key_file))
    try:
        report = composition(snapshot, args.as_of)
    finally:
        snapshot.close()
    print(f"Library version {report['library_version']}: {report['records']} images of {report['subjects']} "
          f"subjects (as of {report['as_of']})")
    for title, name in (("Sex", "by_sex"), ("Ethnicity code", "by_ethnicity_code"),
                        ("Age at image date", "by_age_range"), ("Image age", "by_image_age")):
        counts: dict[str, int] = report[name]  # type: ignore[assignment]
        print(f"{title}:")
        for category, n in counts.items():
            share = n / report["records"] if report["records"] else 0.0  # type: ignore[operator]
            print(f"  {category:<14}{n:>10}  {share:6.1%}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"Written to {args.json}")
    if args.library_id:
        _keep_composition(args, report)
    return 0


def _demo_import(args: argparse.Namespace) -> int:
    demo = build_demo_import(args.out, faces_dir=args.faces)
    print(f"Demo import: {demo.subjects} subjects, {demo.images} images in {demo.images_dir}")
    print(f"Metadata: {demo.csv_path}; {len(demo.probes)} probe images kept out of the library in "
          f"{demo.probes[0].parent if demo.probes else '-'}")
    print(f"Next: python -m central.enrolment enrol --images {demo.images_dir} --csv {demo.csv_path} "
          f"--out library-v1.db --key-file library-v1.key")
    if args.faces:
        print("These images are for internal evaluation only: never commit this folder.")
    return 0


def _demo_subset(args: argparse.Namespace) -> int:
    count = demo_libraries.subset(args.source, args.out, args.subjects)
    print(f"Demo subset: {count} subjects in {args.out / 'images'} ({args.out / 'subjects.csv'})")
    return 0


def _demo_libraries(args: argparse.Namespace) -> int:
    """Print ``name=value`` lines a shell script reads: which temporary library to build, and until when."""
    demo = demo_libraries.set_up(args.database, args.device_id, expires_in=timedelta(minutes=args.expires_in_minutes))
    print(f"substantive_id={demo.substantive_id}")
    print(f"temporary_id={demo.temporary_id}")
    print(f"temporary_expires_at={demo.temporary_expires_at.isoformat(timespec='seconds')}")
    print(f"temporary_new={int(demo.temporary_is_new)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m central.enrolment",
                                     description="Build reference-library snapshots, deltas and reports.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enrol", help="enrol a folder of <subject>/<image> files into a new snapshot")
    p.add_argument("--images", type=Path, required=True, help="folder with one sub-folder per subject")
    p.add_argument("--csv", type=Path, help="manifest: subject_ref,sex,ethnicity_code,date_of_birth,image_date "
                   "[,age_band][,image]")
    p.add_argument("--out", type=Path, required=True, help="snapshot file to create (must not exist)")
    p.add_argument("--key-file", type=Path, required=True,
                   help="key file to create (must not exist unless --reuse-key or --resume)")
    p.add_argument("--version", type=int, default=1, help="library version number (default 1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build of --out")
    p.add_argument("--reuse-key", action="store_true",
                   help="build with the existing --key-file (the next version of that key's library)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--embedder", default=None, help="face model (a shipped manifest name, as the desks' [models] "
                   "embedder); default: the default pipeline. In-process only, not with --workers/--scheduler")
    p.add_argument("--workers", type=int, help="run the face pipeline on a local Dask cluster of N processes")
    p.add_argument("--scheduler", help="run the face pipeline on an existing Dask cluster (tls://host:port)")
    p.add_argument("--tls-ca-file", help="CA that signed the cluster's certificates (or use Dask's config)")
    p.add_argument("--tls-cert", help="this coordinator's client certificate")
    p.add_argument("--tls-key", help="its private key")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="accept a tcp:// scheduler (only on an isolated network the site has approved)")
    p.add_argument("--batch-size", type=int, default=16, help="images per cluster task (default 16)")
    p.add_argument("--inference-threads", type=int,
                   help="OpenVINO threads per worker (default: this machine's cores / --workers; all cores on "
                        "--scheduler workers)")
    p.set_defaults(run=_enrol)
    d = sub.add_parser("delta", help="write the delta from one library version to the next")
    d.add_argument("--base", type=Path, required=True, help="the version devices have")
    d.add_argument("--target", type=Path, required=True, help="the new version (same key and face model)")
    d.add_argument("--key-file", type=Path, required=True, help="the lineage's key file")
    d.add_argument("--out", type=Path, required=True, help="delta file to write")
    d.set_defaults(run=_delta)
    c = sub.add_parser("composition", help="counts by sex, ethnicity code, age range and image age")
    c.add_argument("--library", type=Path, required=True, help="snapshot file")
    c.add_argument("--key-file", type=Path, required=True, help="its key file")
    c.add_argument("--as-of", type=date.fromisoformat, default=date.today(), help="date for image ages")
    c.add_argument("--json", type=Path, help="also write the counts as JSON here")
    c.set_defaults(run=_composition)
    m = sub.add_parser("demo-import", help="build a demo import folder from registry-package photos")
    m.add_argument("--out", type=Path, required=True, help="new or empty folder to write")
    m.add_argument("--faces", type=Path, help="optional labelled set <identity>/<image> (e.g. ../shared/faces/dev)")
    m.set_defaults(run=_demo_import)
    ms = sub.add_parser("demo-subset", help="copy a few subjects of a demo import (for the demo temporary library)")
    ms.add_argument("--from", dest="source", type=Path, required=True, help="a demo-import folder")
    ms.add_argument("--out", type=Path, required=True, help="folder to (re)write")
    ms.add_argument("--subjects", type=int, default=6)
    ms.set_defaults(run=_demo_subset)
    ml = sub.add_parser("demo-libraries", help="request, authorise (a second account) and grant the demo's "
                        "substantive library and a temporary one expiring soon")
    ml.add_argument("--database", required=True, help="central's database URL")
    ml.add_argument("--device-id", required=True, help="the demo desk")
    ml.add_argument("--expires-in-minutes", type=int, default=30)
    ml.set_defaults(run=_demo_libraries)
    for q in (p, c):
        q.add_argument("--library-id", help="the library at central this version belongs to: keep its composition "
                       "with the library's authorisation record (needs --database)")
        q.add_argument("--database", default=os.environ.get("RFR_CENTRAL__DATABASE"),
                       help="central's database URL (default: RFR_CENTRAL__DATABASE)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "library_id", None) and not args.database:
        parser.error("--library-id needs central's database: give --database URL or set RFR_CENTRAL__DATABASE.")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.run(args)
    except CustodyRfrError as e:
        print(f"central.enrolment: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
