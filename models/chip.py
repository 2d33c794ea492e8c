"""Crop a face the way an embedder's manifest says it was trained (its ``[alignment]`` table).

dlib's descriptor network was trained on dlib "face chips": a similarity
transform puts dlib's mean-face landmarks at fixed places in a square with a
border around them. Fed the ArcFace crop instead (eyes lower, chin cut off), it
fell from TAR 0.75 to 0.13 at FAR 1e-3 on the dev set, so each embedder gets
its own crop. The four BlazeFace points are fitted robustly with LMEDS, as in
``models.align``. When the chip is less than half the face's size in the
photo, the photo is first halved with a Gaussian pyramid, as dlib's
``extract_image_chip`` does, so fine detail is averaged rather than aliased.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from models.align import source_points
from models.detector import DetectedFace
from models.errors import NO_FACE_MESSAGE, FaceAlignmentError
from models.manifest import AlignmentSpec

logger = logging.getLogger(__name__)


def chip_template(spec: AlignmentSpec, size: int) -> np.ndarray:
    """The four target points in chip pixels: the unit-square points with the border added."""
    points = np.array(spec.points, dtype=np.float64)
    return ((points + spec.padding) / (1 + 2 * spec.padding) * size).astype(np.float32)


def extract_chip(image: np.ndarray, face: DetectedFace, spec: AlignmentSpec, size: int) -> np.ndarray:
    """A ``size`` x ``size`` chip of the face (same colour order as ``image``)."""
    matrix, _ = cv2.estimateAffinePartial2D(source_points(face), chip_template(spec, size), method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():
        logger.info("chip alignment failed for face at (%.0f, %.0f)", face.x, face.y)
        raise FaceAlignmentError(NO_FACE_MESSAGE)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale <= 0:
        raise FaceAlignmentError(NO_FACE_MESSAGE)
    while scale < 0.5 and min(image.shape[:2]) >= 2:
        image = cv2.pyrDown(image)
        matrix = matrix.copy()
        matrix[:, :2] *= 2  # a pixel at x in the photo is at x/2 in the halved one
        scale *= 2
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
