"""Enrolment throughput on 1, 2 and 4 Dask workers against the in-process build, plus the index build's memory.

    .venv/bin/python bench/enrol_scale.py [--faces ../shared/faces/dev] [--images 2400] [--workers 1,2,4]
                                          [--index-n 200000]

The import folder is made of symlinks to the labelled set, repeated under new
subject names until it holds ``--images`` photos, in a temporary directory:
the photos are never copied into the repository. Each run enrols the whole
folder into a new snapshot; images/s counts the enrolment itself (cluster
start and model loading are reported apart, as they are paid once per run of
millions). Every build's content digest must equal the in-process one.

``--index-n`` builds a snapshot of that many synthetic templates in a child
process and reports its peak RSS beside the index size, to show what the
streamed index build (``SnapshotWriter.finalize``) holds. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from central.enrolment.distributed import DaskTemplater, cluster_client, local_inference_threads
from central.enrolment.enrol import enrol, iter_images
from library.digest import content_digest
from library.snapshot import Snapshot, read_key_file

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces" / "dev"


def build_import(faces: Path, images: int, root: Path) -> int:
    """Symlinked subject folders, the set repeated as ``<identity>-rN``; returns the image count."""
    identities = sorted(p for p in faces.iterdir() if p.is_dir())
    per_repeat = sum(1 for d in identities for f in d.iterdir() if f.is_file())
    for repeat in range(math.ceil(images / per_repeat)):
        for identity in identities:
            (root / f"{identity.name}-r{repeat}").symlink_to(identity.resolve(), target_is_directory=True)
    return sum(1 for _ in iter_images(root))


def _digest(db: Path, key: Path) -> str:
    snapshot = Snapshot.open(db, read_key_file(key))
    try:
        return content_digest(snapshot)
    finally:
        snapshot.close()


def index_memory(n: int, dim: int = 192) -> dict[str, float | int]:
    """Run in a child: n synthetic unit templates through SnapshotWriter; peak RSS against index size."""
    from library import cipher
    from library.records import ReferenceRecord
    from library.snapshot import SnapshotWriter, new_key

    rng = np.random.default_rng(0)
    key = new_key()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.db"
        writer = SnapshotWriter.create(path, key, embedder_id="synthetic", dim=dim)
        for start in range(0, n, 10000):
            block = rng.standard_normal((min(10000, n - start), dim)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            for i, vector in enumerate(block, start=start):
                writer.add(ReferenceRecord(subject_ref=f"S{i}", source=f"S{i}/0.jpg"), vector, b"\xff\xd8x")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        started = time.perf_counter()
        writer.finalize()
        seconds = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn = cipher.connect(path, key)
        (index_bytes,) = conn.execute("SELECT sum(length(data)) FROM index_arrays").fetchone()
        conn.close()
    return {"n": n, "templates_bytes": n * dim * 4, "index_bytes": int(index_bytes),
            "rss_before_finalize": rss_before, "rss_peak": rss_peak, "finalize_growth_bytes": rss_peak - rss_before,
            "finalize_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--images", type=int, default=2400)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--index-n", type=int, default=0)
    parser.add_argument("--index-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.index_child:
        print(json.dumps(index_memory(args.index_child)))
        return
    result: dict[str, object] = {"cores": os.cpu_count(), "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="rfr-enrol-scale-") as tmp:
        work = Path(tmp)
        images_dir = work / "import"
        images_dir.mkdir()
        result["images"] = build_import(args.faces, args.images, images_dir)
        from models.pipeline import FacePipeline

        report = enrol(images_dir, work / "inproc.db", work / "inproc.key", FacePipeline.load(), progress=False)
        reference = _digest(work / "inproc.db", work / "inproc.key")
        result["in_process"] = {"ips": round(report.images_per_second, 1), "enrolled": report.enrolled,
                                "seconds": round(report.seconds, 1)}
        print(f"in-process: {report.images_per_second:.1f} images/s", file=sys.stderr)
        runs: dict[str, dict[str, float | bool]] = {}
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.perf_counter()
            with cluster_client(workers=workers) as client:
                templater = DaskTemplater(client, batch_size=args.batch_size,
                                          inference_threads=local_inference_threads(workers))
                ready = time.perf_counter() - started
                db, key = work / f"w{workers}.db", work / f"w{workers}.key"
                report = enrol(images_dir, db, key, templater, progress=False)
            runs[str(workers)] = {"ips": round(report.images_per_second, 1), "seconds": round(report.seconds, 1),
                                  "startup_s": round(ready, 1), "same_digest": _digest(db, key) == reference}
            print(f"{workers} workers: {report.images_per_second:.1f} images/s", file=sys.stderr)
        base = runs[min(runs, key=int)]["ips"]
        for run in runs.values():
            run["ratio_to_1"] = round(float(run["ips"]) / float(base), 2)
        result["dask"] = runs
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.index_n:
        child = subprocess.run([sys.executable, __file__, "--index-child", str(args.index_n)], check=True,
                               capture_output=True, text=True)
        result["index_build"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
