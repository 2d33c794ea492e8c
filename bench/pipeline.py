"""Face pipeline benchmark: stage latency and accuracy per precision, a second runtime, enrolment throughput.

Run from the repository root (about 5 minutes on 2 cores; ``--quick`` about 1)::

    .venv/bin/python -m bench.pipeline [--faces DIR] [--quick]

Everything is measured in one run so the ratios compare like with like on a
machine whose load changes from minute to minute (other work on the box slows
every figure; the load average is printed with the results):

1. Precision sweep. For FP32, FP16, BF16 and INT8 the detector and every
   embedder are compiled for the CPU and the whole labelled face set is run
   through decode, detect, align and embed, timing each stage per image and
   scoring the templates leave-one-out (rank-1, TAR at FAR 1e-3). Precisions
   take turns photo by photo, so a change in load hits them alike. FP32 and
   INT8 pin ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX512-BF16 the
   plugin otherwise computes in bfloat16 by default, which is what the BF16
   row measures. FP16 is the IR saved with ``compress_to_fp16`` (FP16 weights,
   f32 compute: x86 CPUs without AVX512-FP16 have no f16 arithmetic). INT8 is
   NNCF post-training quantisation calibrated on every fifth image of the set
   (letterboxed inputs for the detector, aligned crops for the embedders);
   accuracy is still scored on the whole set.
2. Second runtime. OpenVINO and LiteRT (``ai-edge-litert``, the ``.tflite``
   files' native runtime) run the very same ``.tflite`` file on the same real
   input, both f32 on 2 threads; the ratio is LiteRT time over OpenVINO time.
   MobileFaceNet's file is exported for batch 2, so both runtimes get batch 2.
   The dlib embedder has no ``.tflite`` (it is rebuilt from TF.js weights), so it
   has no second-runtime row.
3. Enrolment throughput. Images per second for decode-to-template on many
   photos: one thread with one synchronous request (``LATENCY``) against worker
   threads sharing ``AsyncInferQueue``s compiled with ``THROUGHPUT``, which keep
   several requests in flight while Python decodes and aligns.

The last line printed is JSON with the key figures.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import openvino as ov

from models.convert import ensure_ir, source_path
from models.detector import DetectedFace, FaceDetector
from models.embedder import FaceEmbedder
from models.errors import ImageRejectedError
from models.image import decode_image
from models.manifest import load_manifest
from models.pipeline import DEFAULT_DETECTOR, default_face_index

logger = logging.getLogger("bench.pipeline")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = REPO.parent / "shared" / "faces" / "dev"
EMBEDDERS = ("mobilefacenet", "dlib_resnet")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
STAGES = ("decode", "detect", "align", "embed")
CALIBRATION_STRIDE = 5

_Stage = TypeVar("_Stage", FaceDetector, FaceEmbedder)


@dataclass(frozen=True)
class Sample:
    path: Path
    identity: str


def load_samples(faces: Path, quick: bool) -> list[Sample]:
    """The labelled photos: ``MANIFEST.tsv`` (identity, file) if present, else one folder per identity."""
    listing = faces / "MANIFEST.tsv"
    if listing.exists():
        with listing.open(encoding="utf-8") as fh:
            samples = [Sample(faces / row["file"], row["identity"]) for row in csv.DictReader(fh, delimiter="\t")]
    else:
        samples = [Sample(p, p.parent.name) for p in sorted(faces.glob("*/*")) if p.suffix.lower() in {
            ".jpg", ".jpeg", ".png"}]
    if quick:  # every third identity keeps genuine pairs for every identity kept
        kept = sorted({s.identity for s in samples})[::3]
        samples = [s for s in samples if s.identity in kept]
    return samples


# --------------------------------------------------------------------------- compiled models


class SyncModel:
    """One compiled model with one request, called like ``models.runtime.CompiledModel``."""

    def __init__(self, compiled: ov.CompiledModel) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.outputs = len(compiled.outputs)

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: tensor})
        return [np.array(self.request.get_output_tensor(i).data, copy=True) for i in range(self.outputs)]


class _Slot:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.outputs: list[np.ndarray] = []


class QueuedModel:
    """A compiled model behind an ``AsyncInferQueue``: many threads may call it, each waits for its own result."""

    def __init__(self, compiled: ov.CompiledModel, jobs: int) -> None:
        self.queue = ov.AsyncInferQueue(compiled, jobs)
        self.queue.set_callback(self._finished)
        self.outputs = len(compiled.outputs)
        self._submit = threading.Lock()

    def _finished(self, request: ov.InferRequest, slot: _Slot) -> None:
        slot.outputs = [np.array(request.get_output_tensor(i).data, copy=True) for i in range(self.outputs)]
        slot.done.set()

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        slot = _Slot()
        with self._submit:  # start_async waits for a free request; one submitter at a time
            self.queue.start_async({0: tensor}, slot)
        slot.done.wait()
        return slot.outputs


def compile_model(core: ov.Core, model: ov.Model | Path, precision: str, hint: str = "LATENCY") -> ov.CompiledModel:
    config: dict[str, str] = {"PERFORMANCE_HINT": hint}
    config["INFERENCE_PRECISION_HINT"] = "bf16" if precision == "bf16" else "f32"
    source = core.read_model(str(model)) if isinstance(model, Path) else model
    return core.compile_model(source, "CPU", config)


def fp16_model(core: ov.Core, ir: Path, workdir: Path) -> ov.Model:
    """The IR re-saved with FP16 weights (half the file size), read back as OpenVINO would from disk."""
    target = workdir / f"{ir.stem}-fp16.xml"
    ov.save_model(core.read_model(str(ir)), str(target), compress_to_fp16=True)
    return core.read_model(str(target))


def int8_model(core: ov.Core, ir: Path, calibration: Sequence[np.ndarray]) -> ov.Model:
    """NNCF post-training quantisation of the FP32 IR on the given input tensors."""
    import nncf  # bench-only dependency (pyproject [bench])

    nncf.set_log_level(logging.ERROR)
    return nncf.quantize(core.read_model(str(ir)), nncf.Dataset(list(calibration)),
                         subset_size=len(calibration), fast_bias_correction=True)


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median_ms": round(percentile(values, 50), 3), "p95_ms": round(percentile(values, 95), 3)}


def scores(templates: np.ndarray, identities: np.ndarray) -> dict[str, float]:
    """Leave-one-out rank-1 and TAR at FAR 1e-3 / 1e-2 over all pairs, cosine similarity."""
    sims = templates @ templates.T
    np.fill_diagonal(sims, -np.inf)
    rank1 = float(np.mean(identities[sims.argmax(axis=1)] == identities))
    upper = np.triu_indices(len(identities), 1)
    same = (identities[:, None] == identities[None, :])[upper]
    pair_scores = sims[upper]
    genuine, impostor = pair_scores[same], pair_scores[~same]
    out = {"rank1": round(rank1, 4), "genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size)}
    for far, key in ((1e-3, "tar_far_1e-3"), (1e-2, "tar_far_1e-2")):
        threshold = float(np.quantile(impostor, 1 - far))
        out[key] = round(float(np.mean(genuine > threshold)), 4)
        out[f"threshold_far_{far:.0e}"] = round(threshold, 4)
    return out


@dataclass
class PassResult:
    """Per-stage times and templates from one pass over the face set."""

    times: dict[str, list[float]] = field(default_factory=lambda: {"decode": [], "detect": []})
    templates: dict[str, list[np.ndarray]] = field(default_factory=dict)
    identities: list[str] = field(default_factory=list)
    missed: int = 0
    rejected: int = 0


def run_photo(data: bytes, identity: str, detector: FaceDetector, embedders: dict[str, FaceEmbedder],
              result: PassResult) -> None:
    """Decode, detect, align and embed one photo, timing each stage (align/embed per embedder)."""
    clock = time.perf_counter
    t0 = clock()
    try:
        image = decode_image(data)
    except ImageRejectedError:  # the desk refuses it too (e.g. a WebP file named .jpg)
        result.rejected += 1
        return
    t1 = clock()
    faces = detector.detect(image)
    t2 = clock()
    result.times["decode"].append((t1 - t0) * 1e3)
    result.times["detect"].append((t2 - t1) * 1e3)
    if not faces:
        result.missed += 1
        return
    face = faces[default_face_index(faces)]
    for name, embedder in embedders.items():
        t3 = clock()
        crop = embedder.align(image, face)
        t4 = clock()
        template = embedder.embed(crop)
        t5 = clock()
        result.templates.setdefault(name, []).append(template)
        result.times.setdefault(f"align:{name}", []).append((t4 - t3) * 1e3)
        result.times.setdefault(f"embed:{name}", []).append((t5 - t4) * 1e3)
    result.identities.append(identity)


def run_passes(samples: Sequence[Sample], variants: dict[str, tuple[FaceDetector, dict[str, FaceEmbedder]]]
               ) -> dict[str, PassResult]:
    """Every photo through every variant in turn, after one warm-up photo each."""
    results = {key: PassResult() for key in variants}
    for detector, embedders in variants.values():
        run_photo(samples[0].path.read_bytes(), samples[0].identity, detector, embedders, PassResult())
    for sample in samples:
        data = sample.path.read_bytes()
        for key, (detector, embedders) in variants.items():
            run_photo(data, sample.identity, detector, embedders, results[key])
    return results


def calibration_inputs(samples: Sequence[Sample], detector: FaceDetector, embedders: dict[str, FaceEmbedder]
                       ) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Model inputs for INT8 calibration from every fifth photo: letterboxed photos and aligned crops."""
    det_inputs: list[np.ndarray] = []
    emb_inputs: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    for sample in samples[::CALIBRATION_STRIDE]:
        try:
            image = decode_image(sample.path.read_bytes())
        except ImageRejectedError:
            continue
        det_inputs.append(detector._preprocess(image)[0])
        faces = detector.detect(image)
        if not faces:
            continue
        face = faces[default_face_index(faces)]
        for name, embedder in embedders.items():
            emb_inputs[name].append(embedder.preprocess(embedder.align(image, face)))
    return det_inputs, emb_inputs


def with_model(obj: _Stage, model: Callable[[np.ndarray], list[np.ndarray]]) -> _Stage:
    """A shallow copy of a detector or embedder whose inference goes to ``model`` instead.

    The production classes compile their IR with the desk's settings; the bench
    needs other precisions and an async queue behind the same pre/post-processing.
    """
    clone = copy.copy(obj)
    clone.model = model  # type: ignore[assignment]
    return clone


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(max(3, repeats // 10)):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def litert_comparison(core: ov.Core, tflite: Path, tensor: np.ndarray, repeats: int) -> dict[str, float]:
    """OpenVINO (f32) and LiteRT (XNNPACK, f32) on the same ``.tflite`` file and input; ratio = LiteRT / OpenVINO."""
    from ai_edge_litert.interpreter import Interpreter  # bench-only dependency (pyproject [bench])

    interpreter = Interpreter(model_path=str(tflite), num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outs = interpreter.get_output_details()

    def run_litert() -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], tensor)
        interpreter.invoke()
        return [interpreter.get_tensor(o["index"]) for o in outs]

    compiled = compile_model(core, ov.convert_model(str(tflite)), "fp32")
    request = compiled.create_infer_request()

    def run_ov() -> list[np.ndarray]:
        request.infer({0: tensor})
        return [request.get_output_tensor(i).data for i in range(len(compiled.outputs))]

    diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(
        sorted(run_ov(), key=lambda a: a.size), sorted(run_litert(), key=lambda a: a.size), strict=True))
    ov_ms = statistics.median(time_calls(run_ov, repeats))
    lite_ms = statistics.median(time_calls(run_litert, repeats))
    return {"openvino_ms": round(ov_ms, 3), "litert_ms": round(lite_ms, 3),
            "litert_over_openvino": round(lite_ms / ov_ms, 2), "max_abs_output_diff": float(f"{diff:.3g}")}


def enrol_throughput(samples: Sequence[Sample], detector: FaceDetector, embedder: FaceEmbedder,
                     workers: int = 0) -> float:
    """Images per second from file bytes to template; ``workers`` > 0 runs that many threads."""
    blobs = [s.path.read_bytes() for s in samples]

    def enrol(data: bytes) -> np.ndarray | None:
        try:
            image = decode_image(data)
        except ImageRejectedError:
            return None
        faces = detector.detect(image)
        if not faces:
            return None
        return embedder.embed(embedder.align(image, faces[default_face_index(faces)]))

    t0 = time.perf_counter()
    if workers:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(enrol, blobs))
    else:
        for data in blobs:
            enrol(data)
    return len(blobs) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="labelled faces (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a third of the identities, fewer repeats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    samples = load_samples(args.faces, args.quick)
    if not samples:
        parser.error(f"no labelled photos under {args.faces}")
    repeats = 50 if args.quick else 200
    core = ov.Core()
    load_before = os.getloadavg()
    print(f"faces: {len(samples)} photos, {len({s.identity for s in samples})} identities from {args.faces}")
    print(f"machine: {os.cpu_count()} cores, {core.get_property('CPU', 'FULL_DEVICE_NAME')}, "
          f"openvino {ov.__version__}, load average {load_before[0]:.2f}")

    det_manifest = load_manifest(DEFAULT_DETECTOR)
    det_ir = ensure_ir(det_manifest)
    base_detector = FaceDetector(det_manifest, det_ir)
    emb_irs = {name: ensure_ir(load_manifest(name)) for name in EMBEDDERS}
    base_embedders = {name: FaceEmbedder(load_manifest(name), emb_irs[name]) for name in EMBEDDERS}

    t0 = time.perf_counter()
    det_calib, emb_calib = calibration_inputs(samples, base_detector, base_embedders)
    int8 = {"detector": int8_model(core, det_ir, det_calib)}
    int8.update({name: int8_model(core, emb_irs[name], emb_calib[name]) for name in EMBEDDERS})
    quantise_s = time.perf_counter() - t0
    print(f"INT8: calibrated on {len(det_calib)} photos / {len(emb_calib[EMBEDDERS[0]])} crops "
          f"in {quantise_s:.0f} s")

    variants: dict[str, tuple[FaceDetector, dict[str, FaceEmbedder]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fp16-") as tmp:
        for precision in PRECISIONS:
            if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                continue

            def model_for(ir: Path, key: str, precision: str = precision, tmp: str = tmp) -> SyncModel:
                if precision == "fp16":
                    return SyncModel(compile_model(core, fp16_model(core, ir, Path(tmp)), precision))
                if precision == "int8":
                    return SyncModel(compile_model(core, int8[key], precision))
                return SyncModel(compile_model(core, ir, precision))

            detector = with_model(base_detector, model_for(det_ir, "detector"))
            embedders = {n: with_model(e, model_for(emb_irs[n], n)) for n, e in base_embedders.items()}
            variants[precision] = (detector, embedders)
    passes = run_passes(samples, variants)
    print(f"precision sweep done ({time.perf_counter() - started:.0f} s)")
    results: dict[str, dict[str, Any]] = {}
    for precision, run in passes.items():
        ids = np.array(run.identities)
        row: dict[str, Any] = {
            "rejected": run.rejected,
            "detected": len(samples) - run.rejected - run.missed,
            "decode": summary(run.times["decode"]),
            "detect": summary(run.times["detect"]),
        }
        for name in EMBEDDERS:
            row[name] = {
                "align": summary(run.times[f"align:{name}"]),
                "embed": summary(run.times[f"embed:{name}"]),
                **scores(np.array(run.templates[name]), ids),
            }
        results[precision] = row

    counts = {k: (r["detected"], r["rejected"]) for k, r in results.items()}
    print(f"\nfaces found / photos the desk refuses, per precision: {counts}")
    print("Per-stage latency, ms (median / p95), and accuracy over detected faces (leave-one-out)")
    print(f"{'precision':9s} {'decode':>13s} {'detect':>13s}  {'embedder':14s} {'align':>11s} {'embed':>13s} "
          f"{'rank-1':>7s} {'TAR@1e-3':>8s} {'TAR@1e-2':>8s} {'thr@1e-3':>8s}")
    for precision, row in results.items():
        for name in EMBEDDERS:
            m = row[name]
            dec, det = row["decode"], row["detect"]
            print(f"{precision:9s} {dec['median_ms']:6.2f}/{dec['p95_ms']:6.2f} {det['median_ms']:6.2f}/"
                  f"{det['p95_ms']:6.2f}  {name:14s} {m['align']['median_ms']:5.2f}/{m['align']['p95_ms']:5.2f} "
                  f"{m['embed']['median_ms']:6.2f}/{m['embed']['p95_ms']:6.2f} {m['rank1']:7.4f} "
                  f"{m['tar_far_1e-3']:8.4f} {m['tar_far_1e-2']:8.4f} {m['threshold_far_1e-03']:8.4f}")
    base = results["fp32"]
    ratios: dict[str, dict[str, float]] = {}
    for precision, row in results.items():
        ratios[precision] = {"detect": round(base["detect"]["median_ms"] / row["detect"]["median_ms"], 2)}
        for name in EMBEDDERS:
            ratios[precision][f"embed:{name}"] = round(
                base[name]["embed"]["median_ms"] / row[name]["embed"]["median_ms"], 2)
    print("speed-up over FP32 (median stage time FP32 / this precision):", json.dumps(ratios))

    # Second runtime on the same .tflite files, with real inputs.
    image = decode_image(samples[0].path.read_bytes())
    face: DetectedFace = base_detector.detect(image)[0]
    det_tensor = base_detector._preprocess(image)[0]
    mfn = base_embedders["mobilefacenet"]
    crop = mfn.preprocess(mfn.align(image, face))
    runtimes = {
        "blazeface": litert_comparison(core, source_path(det_manifest), det_tensor, repeats),
        "mobilefacenet_batch2": litert_comparison(core, source_path(mfn.manifest),
                                                  np.concatenate([crop, crop]), repeats),
    }
    print("\nOpenVINO vs LiteRT on the same .tflite file (median ms):", json.dumps(runtimes))

    # Enrolment throughput, FP32, sync vs async queue.
    enrol_set = samples[: (60 if args.quick else 200)]
    throughput: dict[str, dict[str, float]] = {}
    for name in EMBEDDERS:
        sync_det = with_model(base_detector, SyncModel(compile_model(core, det_ir, "fp32")))
        sync_emb = with_model(base_embedders[name], SyncModel(compile_model(core, emb_irs[name], "fp32")))
        det_c = compile_model(core, det_ir, "fp32", "THROUGHPUT")
        emb_c = compile_model(core, emb_irs[name], "fp32", "THROUGHPUT")
        jobs = max(det_c.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
                   emb_c.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        async_det = with_model(base_detector, QueuedModel(det_c, jobs))
        async_emb = with_model(base_embedders[name], QueuedModel(emb_c, jobs))
        enrol_throughput(enrol_set[:10], sync_det, sync_emb)  # warm-up
        sync_ips = enrol_throughput(enrol_set, sync_det, sync_emb)
        async_ips = enrol_throughput(enrol_set, async_det, async_emb, workers=jobs + 1)
        throughput[name] = {"images": len(enrol_set), "sync_ips": round(sync_ips, 1),
                            "async_ips": round(async_ips, 1), "async_requests": jobs,
                            "async_over_sync": round(async_ips / sync_ips, 2)}
    print("Enrolment throughput, images/s (decode to template, FP32):", json.dumps(throughput))

    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}; total {elapsed:.0f} s")
    print(json.dumps({
        "faces": str(args.faces), "photos": len(samples), "quick": args.quick, "cores": os.cpu_count(),
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)], "seconds": round(elapsed),
        "precisions": results, "speedup_over_fp32": ratios, "litert": runtimes, "throughput": throughput,
    }, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
