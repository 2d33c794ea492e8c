"""Line a detected face up with the ArcFace 112x112 template before embedding.

The embedder was trained on faces in this exact position, so matching
accuracy depends on it. BlazeFace gives a mouth centre rather than mouth
corners, so the template's two mouth corners are averaged into one point; four
points (both eyes, nose tip, mouth centre) fix a similarity transform
(rotation, uniform scale, translation), fitted robustly with LMEDS.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from models.detector import LEFT_EYE, MOUTH_CENTRE, NOSE_TIP, RIGHT_EYE, DetectedFace
from models.errors import NO_FACE_MESSAGE, FaceAlignmentError

logger = logging.getLogger(__name__)

TEMPLATE_SIZE = 112
# ArcFace template: image-left eye, image-right eye, nose tip, mean of the two mouth corners.
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [(41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2],
    ],
    dtype=np.float32,
)


def source_points(face: DetectedFace) -> np.ndarray:
    """The four alignment points of a detected face, eyes ordered by image x (left first)."""
    eyes = face.keypoints[[RIGHT_EYE, LEFT_EYE]]
    eyes = eyes[np.argsort(eyes[:, 0])]
    return np.vstack([eyes, face.keypoints[[NOSE_TIP, MOUTH_CENTRE]]]).astype(np.float32)


def align_face(image: np.ndarray, face: DetectedFace, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` crop of the face in template position (same colour order as ``image``)."""
    template = TEMPLATE * (size / TEMPLATE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(source_points(face), template, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():
        logger.info("alignment failed for face at (%.0f, %.0f)", face.x, face.y)
        raise FaceAlignmentError(NO_FACE_MESSAGE)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
