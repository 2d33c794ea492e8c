"""Face embedding under OpenVINO: an aligned face in, an L2-normalised vector out.

MobileFaceNet's output is not normalised; normalising here means every caller
compares templates with a plain dot product (cosine similarity), and the index
can use inner-product search. Each embedder also owns its crop (``align``):
models are trained on differently placed faces, and the manifest says which.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import cv2
import numpy as np

from models.align import align_face
from models.chip import extract_chip
from models.detector import DetectedFace
from models.manifest import ModelManifest
from models.runtime import CompiledModel

logger = logging.getLogger(__name__)


class FaceEmbedder:
    """Turns aligned BGR face crops of the manifest's input size into unit-length float32 vectors."""

    def __init__(self, manifest: ModelManifest, ir_path: Path, config: dict[str, str] | None = None) -> None:
        if manifest.kind != "embedder":
            raise ValueError(f"{manifest.ref} is not an embedder manifest")
        self.manifest = manifest
        self.size = (manifest.input.width, manifest.input.height)
        self.dim = manifest.output.dim
        self.model = CompiledModel(ir_path, config)
        mean = manifest.input.mean
        # Per-channel means broadcast over the last (channel) axis; a single mean stays a Python float.
        self._mean: float | np.ndarray = np.array(mean, dtype=np.float32) if isinstance(mean, tuple) else mean

    def mirrored(self) -> FaceEmbedder:
        """The same compiled model with the mirror sum on, for a fused part that asks for it (``mirror_sum``)."""
        twin = copy.copy(self)
        twin.manifest = self.manifest.model_copy(
            update={"embedding": self.manifest.embedding.model_copy(update={"mirror_sum": True})})
        return twin

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The face cropped as this model was trained: the manifest's ``[alignment]``, else the ArcFace template."""
        if self.manifest.alignment is None:
            return align_face(image_bgr, face, self.size[0])
        return extract_chip(image_bgr, face, self.manifest.alignment, self.size[0])

    def preprocess(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The model's input tensor (1, H, W, 3) or (1, 3, H, W) float32 for one aligned face (also calibrates INT8)."""
        if aligned_bgr.shape[1::-1] != self.size:
            raise ValueError(f"expected an aligned face of {self.size}, got {aligned_bgr.shape[1::-1]}")
        pixels = aligned_bgr
        if self.manifest.input.colour_order == "RGB":
            pixels = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2RGB)
        tensor = ((pixels.astype(np.float32) - self._mean) / self.manifest.input.scale)[None]
        if self.manifest.input.layout == "NCHW":
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        return tensor

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The unit-length embedding of one aligned face, shape (dim,), float32."""
        vector = self.model(self.preprocess(aligned_bgr))[0][0].astype(np.float32)
        if self.manifest.embedding.mirror_sum:
            mirrored = np.ascontiguousarray(aligned_bgr[:, ::-1])
            vector = vector + self.model(self.preprocess(mirrored))[0][0].astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("the embedder produced a zero or non-finite vector")
        return vector / norm
