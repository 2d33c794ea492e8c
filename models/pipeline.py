"""The face pipeline callers use: decode, detect, align, embed, thumbnail.

Models are converted (if needed) and compiled once in ``FacePipeline.load``;
compile takes a second or so, inference a few milliseconds. One instance can be
shared by all Flask threads: each model's inference is serialised by a lock in
``models.runtime``, and everything else here is stateless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.convert import ensure_ir
from models.detector import DetectedFace, FaceDetector
from models.embedder import FaceEmbedder
from models.errors import NO_FACE_MESSAGE, ModelManifestError, NoFaceError
from models.fusion import FusedEmbedder
from models.image import decode_image
from models.manifest import FusedManifest, ModelManifest, YuNetDecodeSpec, is_fused, load_fused_manifest, load_manifest
from models.quality import DEFAULT_RULES, QualityReport, QualityRules, assess
from models.quantise import ensure_int8_ir, existing_int8_ir
from models.registry_faces import distractor_images
from models.thumbnail import face_thumbnail
from models.yunet import YuNetDetector

logger = logging.getLogger(__name__)

# The detector for embedders whose manifest names none (MobileFaceNet and dlib were calibrated on BlazeFace).
DEFAULT_DETECTOR = "blazeface_full_range"
# The best measured pipeline whose every part is deployable (docs/model-card.md, "Change of default"):
# YuNet five-point alignment, SFace and dlib ResNet templates fused, both networks in INT8 with pinned
# constants (the same file on every CPU; accuracy within one standard error of fp32, and faster wherever
# the CPU has a fast int8 dot product). "sface_dlib" is the same fusion in fp32. MobileFaceNet
# (evaluation-grade) stays available for evaluation: FacePipeline.load(embedder="mobilefacenet_mirror").
DEFAULT_EMBEDDER = "sface_dlib_int8"


@dataclass(frozen=True, eq=False)
class FaceResult:
    """Everything one photo yields: all faces (so a UI can draw every box) and the chosen face's template."""

    image: np.ndarray           # decoded BGR uint8, upright
    faces: list[DetectedFace]   # best score first
    face_index: int             # which of ``faces`` the template and thumbnail are for
    template: np.ndarray        # (dim,) float32, unit length
    thumbnail: bytes            # JPEG
    embedder_id: str
    quality: QualityReport      # of the chosen face: shown to staff, stored with library images

    @property
    def face(self) -> DetectedFace:
        return self.faces[self.face_index]


def default_face_index(faces: list[DetectedFace]) -> int:
    """The largest face, ties broken by score.

    At the desk the person being photographed is nearest the camera; a
    bystander or a poster behind them can score as high, but is smaller.
    """
    if not faces:
        raise NoFaceError(NO_FACE_MESSAGE)
    return max(range(len(faces)), key=lambda i: (faces[i].area, faces[i].score))


Detector = FaceDetector | YuNetDetector
Embedder = FaceEmbedder | FusedEmbedder


def make_detector(manifest: ModelManifest, config: dict[str, str] | None = None) -> Detector:
    """The detector class that decodes this manifest's model (BlazeFace or YuNet), compiled."""
    if isinstance(manifest.decode, YuNetDecodeSpec):
        return YuNetDetector(manifest, ensure_ir(manifest), config)
    return FaceDetector(manifest, ensure_ir(manifest), config)


def int8_calibration(manifest: ModelManifest, detector: str, config: dict[str, str] | None = None
                     ) -> tuple[Path, Callable[[np.ndarray], list[DetectedFace]],
                                Callable[[np.ndarray, DetectedFace], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """What quantising ``manifest``'s embedder needs: its fp32 IR, the detector that finds the calibration
    faces, and the fp32 embedder's crop and input tensor."""
    fp32 = ensure_ir(manifest)
    reference = FaceEmbedder(manifest, fp32, config)
    finder = make_detector(load_manifest(detector), config)
    return fp32, finder.detect, reference.align, reference.preprocess


def _int8_embedder(name: str, detector: str, config: dict[str, str] | None) -> tuple[FaceEmbedder, str | None]:
    """A fused template's part in INT8 (``models/quantise.py``), made from its fp32 IR on first use (at setup)."""
    manifest = load_manifest(name)
    fp32 = ensure_ir(manifest)
    spec = manifest.conversion.int8
    if spec is not None and spec.detector != detector:
        raise ModelManifestError(f"{manifest.ref}'s INT8 recipe calibrates on {spec.detector}'s faces, not "
                                 f"{detector}'s; a fused template on {detector} cannot use it.")
    images = distractor_images()
    if spec is not None and (made := existing_int8_ir(manifest, fp32, images)).exists():
        return FaceEmbedder(manifest, made, config), manifest.detector
    ir = ensure_int8_ir(manifest, *int8_calibration(manifest, detector, config), images)
    return FaceEmbedder(manifest, ir, config), manifest.detector


def make_embedder(name: str | Path, config: dict[str, str] | None = None) -> tuple[Embedder, str | None]:
    """The embedder (a model, or a fused template of several) and the detector its manifest asks for."""
    if is_fused(name):
        fused = load_fused_manifest(name)
        parts = []
        finders: list[Detector | None] = []
        second: dict[str, Detector] = {}  # one compiled model per second detector, shared by its parts
        for component in fused.components:
            detector = fused.part_detector(component)
            part, wanted = (make_embedder(component.embedder, config) if component.precision == "fp32"
                            else _int8_embedder(component.embedder, detector, config))
            if not isinstance(part, FaceEmbedder):
                raise ModelManifestError(f"{fused.ref}: a fused template cannot contain another fused template")
            if wanted not in (None, detector):
                raise ModelManifestError(f"{fused.ref} gives its part {part.manifest.ref} detector {detector}'s "
                                         f"faces, but that part was calibrated with {wanted}.")
            parts.append(part.mirrored() if component.mirror_sum else part)
            if detector == fused.detector:
                finders.append(None)
            else:
                if detector not in second:
                    second[detector] = make_detector(load_manifest(detector), config)
                finders.append(second[detector])
        if fused.licence.grade == "deployable" and any(p.manifest.licence.grade != "deployable" for p in parts):
            raise ModelManifestError(f"{fused.ref} says it is deployable, but it contains an evaluation-grade "
                                     f"embedder; a fusion inherits the most restrictive licence of its parts.")
        return FusedEmbedder(fused, parts, finders), fused.detector
    manifest = load_manifest(name)
    return FaceEmbedder(manifest, ensure_ir(manifest), config), manifest.detector


def embedder_ref(name: str | Path = DEFAULT_EMBEDDER) -> str:
    """The ``id@version`` templates made by this embedder carry, read from its manifest without compiling.

    ``python -c "from models.pipeline import embedder_ref; print(embedder_ref())"`` lets
    scripts/run.sh tell whether its demo library was built for the default pipeline.
    """
    return (load_fused_manifest(name) if is_fused(name) else load_manifest(name)).ref


class FacePipeline:
    """Detector + embedder, compiled once. Build with ``FacePipeline.load()``."""

    def __init__(self, detector: Detector, embedder: Embedder) -> None:
        self.detector = detector
        self.embedder = embedder
        self.embedder_manifest: ModelManifest | FusedManifest = embedder.manifest
        self.embedder_id: str = embedder.manifest.ref
        self.detector_id: str = detector.manifest.ref
        self.dim: int = embedder.dim
        warn = detector.quality_score_warn if isinstance(detector, YuNetDetector) else None
        self.quality_rules: QualityRules = (DEFAULT_RULES if warn is None
                                            else replace(DEFAULT_RULES, detection_score_warn=warn))
        #: Told each stage's duration in seconds as ``process`` runs it ("decode", "detect", "embed"): the
        #: desk's latency histograms. Durations only, never the image or what was found.
        self.on_stage: Callable[[str, float], None] | None = None

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        if self.on_stage is not None:
            self.on_stage(stage, now - started)
        return now

    @classmethod
    def load(cls, detector: str | Path | None = None, embedder: str | Path = DEFAULT_EMBEDDER,
             config: dict[str, str] | None = None) -> FacePipeline:
        """Ensure the IRs exist (converting verified sources if needed) and compile them.

        ``detector`` and ``embedder`` are manifest names or paths, so a site can
        point at a licensed embedder without code changes. An embedder whose
        manifest names its detector (its crops and calibration assume that
        detector's keypoints) gets that detector, and refuses another one.
        """
        emb, wanted = make_embedder(embedder, config)
        if detector is not None and wanted is not None and load_manifest(detector).id != load_manifest(wanted).id:
            raise ModelManifestError(
                f"Embedder {emb.manifest.ref} was calibrated on detector {wanted}'s keypoints; it cannot be "
                f"used with {detector}. Leave the detector unset to use {wanted}."
            )
        det_manifest = load_manifest(detector or wanted or DEFAULT_DETECTOR)
        if emb.manifest.licence.grade == "evaluation":
            logger.warning("embedder %s is evaluation-grade: %s", emb.manifest.ref, emb.manifest.licence.note)
        pipeline = cls(make_detector(det_manifest, config), emb)
        logger.info("face pipeline ready: %s + %s", det_manifest.ref, emb.manifest.ref)
        return pipeline

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        """All faces in a BGR uint8 image, highest score first (empty if none)."""
        return self.detector.detect(image_bgr)

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> Any:
        """The face cut out in the position and size this embedder was trained on (the embedder owns its crop).

        Separate from ``embed`` so the evaluation can time the two stages apart.
        """
        return self.embedder.align(image_bgr, face)

    def embed_aligned(self, aligned_bgr: Any) -> np.ndarray:
        """The unit-length template of a face already returned by ``align``."""
        return self.embedder.embed(aligned_bgr)

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The unit-length template of one detected face, shape (dim,), float32."""
        return self.embed_aligned(self.align(image_bgr, face))

    def assess(self, image_bgr: np.ndarray, face: DetectedFace, faces_found: int) -> QualityReport:
        """Probe or reference quality of one face, with reasons staff can act on (see ``models.quality``)."""
        return assess(image_bgr, face, faces_found, self.quality_rules)

    def thumbnail_jpeg(self, image_bgr: np.ndarray, face: DetectedFace, size: int = 160) -> bytes:
        """A square JPEG of the face with a margin, for showing the reference photo to staff."""
        return face_thumbnail(image_bgr, face, size)

    def process(self, data: bytes, face_index: int | None = None) -> FaceResult:
        """Decode a photo and template one face: ``face_index`` into the detected faces, or the largest.

        Raises ``ImageRejectedError`` for a file the desk cannot use and ``NoFaceError``
        when no face is found; both messages can be shown to staff as they are. A
        face of poor quality still yields a template: ``quality`` says why it may
        match badly, and the caller decides whether to retake, warn or refuse.
        """
        started = time.perf_counter()
        image = decode_image(data)
        started = self._timed("decode", started)
        faces = self.detect(image)
        started = self._timed("detect", started)
        if not faces:
            raise NoFaceError(NO_FACE_MESSAGE)
        if face_index is None:
            face_index = default_face_index(faces)
        elif not 0 <= face_index < len(faces):
            raise IndexError(f"face_index {face_index} is out of range: {len(faces)} face(s) were found")
        face = faces[face_index]
        template = self.embed(image, face)
        self._timed("embed", started)
        return FaceResult(
            image=image,
            faces=faces,
            face_index=face_index,
            template=template,
            thumbnail=self.thumbnail_jpeg(image, face),
            embedder_id=self.embedder_id,
            quality=self.assess(image, face, len(faces)),
        )
