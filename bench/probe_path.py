"""Probe-to-candidates latency and enrolment throughput for each face pipeline, in one run.

    .venv/bin/python -m bench.probe_path [--faces DIR] [--embedder NAME ...] [--limit N]

For each pipeline (default: today's default and the candidates of issue 22)
the labelled photos are first enrolled in-process into a real encrypted library
snapshot in a temporary folder (decode, detect, quality, align, embed, write;
images per second), then every photo is searched as a probe against it: photo
bytes in, ranked candidates out (``FacePipeline.process`` then
``Snapshot.search``), timed end to end. Pipelines take turns photo by photo, so
load from other work on the machine hits them alike; the load average is
printed with the results, because on a shared 2-core box it moves every figure.
Nothing derived from the photos is kept: the temporary folder is deleted.

The last line printed is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, new_key
from models.errors import ImageRejectedError, NoFaceError
from models.evaluation.runner import labelled_images
from models.pipeline import FacePipeline

CANDIDATES = ("mobilefacenet_mirror", "sface_2021dec", "sface_dlib", "sface_dlib_int8", "sface_yunet_dlib_blazeface")


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_path", description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/dev"))
    parser.add_argument("--embedder", action="append", help=f"manifest name (repeat; default {CANDIDATES})")
    parser.add_argument("--limit", type=int, default=0, help="use every n-th photo only (0: all)")
    parser.add_argument("--k", type=int, default=10, help="candidates returned per search")
    args = parser.parse_args(argv)
    names = args.embedder or list(CANDIDATES)
    items = labelled_images(args.faces)
    if args.limit:
        items = items[:: max(1, len(items) // args.limit)]
    photos = [(identity, path, path.read_bytes()) for identity, path in items]
    pipelines = {name: FacePipeline.load(embedder=name) for name in names}
    results: dict[str, dict[str, float | int | str | None]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        snapshots: dict[str, Snapshot] = {}
        for name, pipeline in pipelines.items():
            key, path = new_key(), Path(tmp) / f"{name}.db"
            enrolled, started = 0, time.perf_counter()
            with SnapshotWriter.create(path, key, embedder_id=pipeline.embedder_id, dim=pipeline.dim) as writer:
                for identity, source, data in photos:
                    try:
                        result = pipeline.process(data)
                    except (NoFaceError, ImageRejectedError):
                        continue
                    writer.add(ReferenceRecord(subject_ref=identity, source=f"{identity}/{source.name}"),
                               result.template, result.thumbnail)
                    enrolled += 1
            seconds = time.perf_counter() - started
            snapshots[name] = Snapshot.open(path, key, expected_embedder=pipeline.embedder_id)
            results[name] = {"embedder": pipeline.embedder_id, "detector": pipeline.detector_id,
                             "enrolled": enrolled, "enrol_images_per_s": round(len(photos) / seconds, 1)}
        timings: dict[str, list[float]] = {name: [] for name in names}
        for _, _, data in photos:
            for name, pipeline in pipelines.items():
                started = time.perf_counter()
                try:
                    template = pipeline.process(data).template
                except (NoFaceError, ImageRejectedError):
                    continue
                snapshots[name].search(template, args.k)
                timings[name].append((time.perf_counter() - started) * 1000)
        for name, snapshot in snapshots.items():
            snapshot.close()
            results[name] |= {"probes": len(timings[name]),
                              "probe_to_candidates_p50_ms": _percentile(timings[name], 50),
                              "probe_to_candidates_p95_ms": _percentile(timings[name], 95),
                              "probe_to_candidates_mean_ms": round(statistics.fmean(timings[name]), 2)
                              if timings[name] else None}
    load = os.getloadavg()
    for name, figures in results.items():
        print(f"{name}: {figures}")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({"pipelines": results, "load_average": [round(v, 1) for v in load], "photos": len(photos)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
