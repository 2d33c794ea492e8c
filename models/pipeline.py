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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.convert import ensure_ir
from models.detector import DetectedFace, FaceDetector
from models.embedder import FaceEmbedder
from models.errors import NO_FACE_MESSAGE, NoFaceError
from models.image import decode_image
from models.manifest import ModelManifest, load_manifest
from models.quality import QualityReport, assess
from models.thumbnail import face_thumbnail

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "blazeface_full_range"
DEFAULT_EMBEDDER = "mobilefacenet_mirror"


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


class FacePipeline:
    """Detector + embedder, compiled once. Build with ``FacePipeline.load()``."""

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder) -> None:
        self.detector = detector
        self.embedder = embedder
        self.embedder_manifest: ModelManifest = embedder.manifest
        self.embedder_id: str = embedder.manifest.ref
        self.dim: int = embedder.dim
        #: Told each stage's duration in seconds as ``process`` runs it ("decode", "detect", "embed"): the
        #: desk's latency histograms. Durations only, never the image or what was found.
        self.on_stage: Callable[[str, float], None] | None = None

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        if self.on_stage is not None:
            self.on_stage(stage, now - started)
        return now

    @classmethod
    def load(cls, detector: str | Path = DEFAULT_DETECTOR, embedder: str | Path = DEFAULT_EMBEDDER
             ) -> FacePipeline:
        """Ensure both IRs exist (converting verified sources if needed) and compile them.

        ``detector`` and ``embedder`` are manifest names or paths, so a site can
        point at a licensed embedder without code changes.
        """
        det_manifest = load_manifest(detector)
        emb_manifest = load_manifest(embedder)
        if emb_manifest.licence.grade == "evaluation":
            logger.warning("embedder %s is evaluation-grade: %s", emb_manifest.ref, emb_manifest.licence.note)
        pipeline = cls(FaceDetector(det_manifest, ensure_ir(det_manifest)),
                       FaceEmbedder(emb_manifest, ensure_ir(emb_manifest)))
        logger.info("face pipeline ready: %s + %s", det_manifest.ref, emb_manifest.ref)
        return pipeline

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        """All faces in a BGR uint8 image, highest score first (empty if none)."""
        return self.detector.detect(image_bgr)

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The face cut out in the position and size this embedder was trained on (the embedder owns its crop).

        Separate from ``embed`` so the evaluation can time the two stages apart.
        """
        return self.embedder.align(image_bgr, face)

    def embed_aligned(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The unit-length template of a face already returned by ``align``."""
        return self.embedder.embed(aligned_bgr)

    def embed(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The unit-length template of one detected face, shape (dim,), float32."""
        return self.embed_aligned(self.align(image_bgr, face))

    def assess(self, image_bgr: np.ndarray, face: DetectedFace, faces_found: int) -> QualityReport:
        """Probe or reference quality of one face, with reasons staff can act on (see ``models.quality``)."""
        return assess(image_bgr, face, faces_found)

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
