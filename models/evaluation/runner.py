"""Run the pipeline over a labelled folder once, keeping templates, detections and stage timings.

Each image is decoded, detected and aligned once and embedded once per
embedder, so comparing embedders costs one extra embedding per image, and all
pair scores come later from one matrix product. An embedder that refuses a
face the detector found (a fused template whose second detector cannot find
it) loses that image alone; the others keep it. Detection is recorded twice:
by the production detector (with its padded retry) and by the same model with
the retry switched off, so the report can show what the retry recovers.
A file that cannot be decoded or has no face is kept, with its reason: it is
a failure to count, never a crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import CustodyRfrError
from models.errors import NO_FACE_MESSAGE
from models.image import decode_image
from models.manifest import YuNetDecodeSpec
from models.pipeline import Detector, FacePipeline, default_face_index, make_detector
from models.quality import QualityReport

logger = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    """What one labelled image yielded. ``error`` is set when no template could be made."""

    path: Path
    identity: str
    error: str | None = None
    raw_detected: bool = False
    faces_found: int = 0
    quality: QualityReport | None = None
    templates: dict[str, np.ndarray] = field(default_factory=dict)  # by embedder id
    timings_ms: dict[str, float] = field(default_factory=dict)      # decode, detect, quality
    embed_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # embedder id -> (align, embed)
    refused: dict[str, str] = field(default_factory=dict)  # embedder id -> why that embedder gave no template

    def reason(self, embedder_id: str) -> str | None:
        """Why this image has no template for ``embedder_id`` (None when it has one)."""
        if embedder_id in self.templates:
            return None
        return self.error or self.refused.get(embedder_id)

    @property
    def detected(self) -> bool:
        return self.faces_found > 0


def labelled_images(root: Path) -> list[tuple[str, Path]]:
    """``(identity, path)`` for every file in ``root/<identity>/``, sorted; hidden entries skipped.

    Files at the top level (a manifest, a README) are not images of anyone.
    Every file under an identity folder counts, whatever its extension, so a
    photo the desk cannot read is reported rather than silently dropped.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of <identity>/<image> files")
    return [(folder.name, path)
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))]


@contextmanager
def _timed(into: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into[stage] = (time.perf_counter() - start) * 1000


def raw_detector(pipeline: FacePipeline) -> Detector:
    """The pipeline's detector model with the padded retry (and YuNet's fallback threshold) switched off."""
    manifest = pipeline.detector.manifest
    if manifest.decode is None:
        raise ValueError(f"{manifest.ref} has no [decode] table")
    update: dict[str, float] = {"retry_padding": 0}
    if isinstance(manifest.decode, YuNetDecodeSpec):
        update["fallback_score_threshold"] = manifest.decode.score_threshold
    no_retry = manifest.model_copy(update={"decode": manifest.decode.model_copy(update=update)})
    return make_detector(no_retry)


def evaluate_image(identity: str, path: Path, pipelines: Sequence[FacePipeline], raw: Detector
                   ) -> ImageRecord:
    """Decode, detect (with and without retry), assess and embed one image with every embedder."""
    record = ImageRecord(path=path, identity=identity)
    timings = record.timings_ms
    try:
        with _timed(timings, "decode"):
            image = decode_image(path.read_bytes())
        record.raw_detected = bool(raw.detect(image))
        with _timed(timings, "detect"):
            faces = pipelines[0].detect(image)
        if not faces:
            record.error = NO_FACE_MESSAGE
            return record
        face = faces[default_face_index(faces)]
        with _timed(timings, "quality"):
            record.quality = pipelines[0].assess(image, face, len(faces))
        record.faces_found = len(faces)
        for pipeline in pipelines:
            stages: dict[str, float] = {}
            try:  # a refusal by one embedder (a fused part's detector missing the face) is that embedder's only
                with _timed(stages, "align"):
                    aligned = pipeline.align(image, face)
                with _timed(stages, "embed"):
                    record.templates[pipeline.embedder_id] = pipeline.embed_aligned(aligned)
            except (CustodyRfrError, ValueError) as e:
                record.refused[pipeline.embedder_id] = str(e)
                logger.info("%s: %s: %s", path, pipeline.embedder_id, e)
                continue
            record.embed_ms[pipeline.embedder_id] = (stages["align"], stages["embed"])
    except (CustodyRfrError, OSError, ValueError) as e:
        record.error = str(e)
        record.faces_found = 0
        record.templates.clear()
        logger.info("%s: %s", path, e)
    return record


def run(root: Path, pipelines: Sequence[FacePipeline],
        progress: Callable[[int, int], None] | None = None) -> list[ImageRecord]:
    """Evaluate every labelled image under ``root``; ``progress(done, total)`` is called as it goes.

    Every pipeline must share the first one's detector (``models.evaluate`` groups them).
    """
    if not pipelines:
        raise ValueError("at least one pipeline is needed")
    if len({p.detector_id for p in pipelines}) > 1:
        raise ValueError("pipelines with different detectors must be run separately")
    items = labelled_images(root)
    raw = raw_detector(pipelines[0])
    records = []
    for done, (identity, path) in enumerate(items, start=1):
        records.append(evaluate_image(identity, path, pipelines, raw))
        if progress is not None:
            progress(done, len(items))
    return records
