"""Face embedding under OpenVINO: an aligned face in, an L2-normalised vector out.

MobileFaceNet's output is not normalised; normalising here means every caller
compares templates with a plain dot product (cosine similarity), and the index
can use inner-product search.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from models.manifest import ModelManifest
from models.runtime import CompiledModel

logger = logging.getLogger(__name__)


class FaceEmbedder:
    """Turns aligned BGR face crops of the manifest's input size into unit-length float32 vectors."""

    def __init__(self, manifest: ModelManifest, ir_path: Path) -> None:
        if manifest.kind != "embedder":
            raise ValueError(f"{manifest.ref} is not an embedder manifest")
        self.manifest = manifest
        self.size = (manifest.input.width, manifest.input.height)
        self.dim = manifest.output.dim
        self.model = CompiledModel(ir_path)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The unit-length embedding of one aligned face, shape (dim,), float32."""
        if aligned_bgr.shape[1::-1] != self.size:
            raise ValueError(f"expected an aligned face of {self.size}, got {aligned_bgr.shape[1::-1]}")
        pixels = aligned_bgr
        if self.manifest.input.colour_order == "RGB":
            pixels = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2RGB)
        spec = self.manifest.input
        tensor = ((pixels.astype(np.float32) - spec.mean) / spec.scale)[None]
        vector = self.model(tensor)[0][0].astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("the embedder produced a zero or non-finite vector")
        return vector / norm
