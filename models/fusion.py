"""Fused templates: several embedders' unit templates, each scaled by a weight, concatenated, re-normalised.

For unit-length component templates ``e_i`` and weights ``w_i``, the fused
template is ``[w_1 e_1, w_2 e_2, ...] / sqrt(sum w_i^2)``, so the cosine of two
fused templates is ``sum(w_i^2 cos_i) / sum(w_i^2)``: one inner product in one
HNSW index gives a weighted sum of the component scores, and the library,
delta and search code need not know that a template has parts.

The weights come from the development set only (``fit_weights``): with
``w_i^2`` proportional to ``1 / sigma_i`` (``sigma_i`` the impostor score
standard deviation of component ``i``), the fused cosine is an increasing
affine function of the sum of z-normalised scores ``sum((cos_i - mu_i) / sigma_i)``,
the fusion measured in issue 22 (dlib's impostors crowd near 0.84 with a
small spread, SFace's near 0 with a wide one; unweighted, SFace would drown dlib).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from models.detector import DetectedFace
from models.embedder import FaceEmbedder
from models.manifest import FusedManifest

logger = logging.getLogger(__name__)

FusedCrops = tuple[np.ndarray, ...]


def fit_weights(impostor_scores: Sequence[np.ndarray]) -> list[float]:
    """Weights ``w_i = sigma_i ** -0.5`` from each component's impostor scores, scaled so sum(w_i^2) = 1."""
    sigmas = np.array([float(np.std(np.asarray(s, dtype=np.float64))) for s in impostor_scores])
    if not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 1e-9):
        raise ValueError(f"impostor score spreads must be positive and finite, not {sigmas.tolist()}")
    weights = sigmas**-0.5
    return (weights / np.sqrt((weights**2).sum())).tolist()


def fuse(templates: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """One unit-length fused template from unit-length component templates."""
    if len(templates) != len(weights):
        raise ValueError(f"{len(templates)} templates but {len(weights)} weights")
    vector = np.concatenate([np.asarray(t, dtype=np.float32) * np.float32(w) for t, w in zip(templates, weights,
                                                                                            strict=True)])
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("the fused template is zero or non-finite")
    return vector / norm


class FusedEmbedder:
    """Behaves as one embedder: ``align`` gives each component its own crop, ``embed`` fuses their templates."""

    def __init__(self, manifest: FusedManifest, components: Sequence[FaceEmbedder]) -> None:
        if len(components) != len(manifest.components):
            raise ValueError(f"{manifest.ref} names {len(manifest.components)} embedders, got {len(components)}")
        self.manifest = manifest
        self.components = list(components)
        self.weights = [c.weight for c in manifest.components]
        self.dim = sum(c.dim for c in self.components)
        self.size = self.components[0].size

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> FusedCrops:
        return tuple(c.align(image_bgr, face) for c in self.components)

    def embed(self, aligned: FusedCrops | np.ndarray) -> np.ndarray:
        """The fused template of ``align``'s crops; a single crop is resized for each component (self-test)."""
        if isinstance(aligned, np.ndarray):
            aligned = tuple(cv2.resize(aligned, c.size, interpolation=cv2.INTER_AREA) if aligned.shape[1::-1] != c.size
                            else aligned for c in self.components)
        return fuse([c.embed(crop) for c, crop in zip(self.components, aligned, strict=True)], self.weights)
