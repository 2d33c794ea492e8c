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

A part may take its crop from a second detector's keypoints (``[[components]] detector``):
that detector is run on the same photo and must find the face the pipeline's detector
chose (``models.face_match``), or the photo is refused; the pipeline's detector alone
decides whether there is a face, which one, and its quality.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from models.detector import DetectedFace
from models.embedder import FaceEmbedder
from models.face_match import Finder, locate
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

    def __init__(self, manifest: FusedManifest, components: Sequence[FaceEmbedder],
                 finders: Sequence[Finder | None] | None = None) -> None:
        """``finders[i]`` is part i's own detector, or None when its crop comes from the pipeline's face."""
        if len(components) != len(manifest.components):
            raise ValueError(f"{manifest.ref} names {len(manifest.components)} embedders, got {len(components)}")
        self.manifest = manifest
        self.components = list(components)
        self.finders: list[Finder | None] = list(finders) if finders is not None else [None] * len(components)
        if len(self.finders) != len(self.components):
            raise ValueError(f"{manifest.ref}: {len(self.components)} parts but {len(self.finders)} finders")
        self.weights = [c.weight for c in manifest.components]
        self.dim = sum(c.dim for c in self.components)
        self.size = self.components[0].size

    def part_faces(self, image_bgr: np.ndarray, face: DetectedFace) -> list[DetectedFace]:
        """The face as each part sees it: the pipeline's, or its own detector's box for the same face.

        Each second detector runs once per call, however many parts use it. Raises
        ``FaceNotConfirmedError`` when one cannot find the face.
        """
        found: dict[tuple[int, float], DetectedFace] = {}
        faces = []
        for finder, spec in zip(self.finders, self.manifest.components, strict=True):
            if finder is None:
                faces.append(face)
                continue
            key = (id(finder), spec.retry_padding)
            if key not in found:
                found[key] = locate(finder, image_bgr, face, spec.retry_padding)
            faces.append(found[key])
        return faces

    def align(self, image_bgr: np.ndarray, face: DetectedFace) -> FusedCrops:
        faces = self.part_faces(image_bgr, face)
        return tuple(c.align(image_bgr, f) for c, f in zip(self.components, faces, strict=True))

    def embed(self, aligned: FusedCrops | np.ndarray) -> np.ndarray:
        """The fused template of ``align``'s crops; a single crop is resized for each component (self-test)."""
        if isinstance(aligned, np.ndarray):
            aligned = tuple(cv2.resize(aligned, c.size, interpolation=cv2.INTER_AREA) if aligned.shape[1::-1] != c.size
                            else aligned for c in self.components)
        return fuse([c.embed(crop) for c, crop in zip(self.components, aligned, strict=True)], self.weights)
