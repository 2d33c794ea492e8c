"""Line a detected face up with the ArcFace 112x112 template before embedding.

The embedder was trained on faces in this exact position, so matching
accuracy depends on it. A detector with five landmarks (YuNet) is aligned as
OpenCV's ``FaceRecognizerSF.alignCrop`` does: the least-squares similarity
transform (Umeyama) of the five points onto the five template points. BlazeFace
gives a mouth centre rather than mouth corners, so for it the template's two
mouth corners are averaged into one point; four points (both eyes, nose tip,
mouth centre) fix a similarity transform (rotation, uniform scale,
translation), fitted robustly with LMEDS.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from models.detector import DetectedFace
from models.errors import NO_FACE_MESSAGE, FaceAlignmentError

logger = logging.getLogger(__name__)

TEMPLATE_SIZE = 112
# The standard five-point ArcFace template (insightface; OpenCV's face_recognize.cpp): the subject's
# right eye (image-left), left eye, nose tip, right and left mouth corner.
TEMPLATE_5 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
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
    layout = face.layout
    eyes = face.keypoints[[layout.right_eye, layout.left_eye]]
    eyes = eyes[np.argsort(eyes[:, 0])]
    nose = face.keypoints[layout.nose_tip]
    return np.vstack([eyes, nose, layout.mouth_centre(face.keypoints)]).astype(np.float32)


def five_points(face: DetectedFace) -> np.ndarray:
    """Eyes, nose tip and mouth corners in ``TEMPLATE_5`` order (the detector's own order, as OpenCV uses it)."""
    layout = face.layout
    if not layout.has_mouth_corners:
        raise ValueError(f"{layout.name} keypoints have no mouth corners")
    order = [layout.right_eye, layout.left_eye, layout.nose_tip, *layout.mouth]
    return face.keypoints[order].astype(np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking ``src`` onto ``dst`` (Umeyama 1991).

    What OpenCV's ``FaceRecognizerSF`` computes in ``getSimilarityTransformMatrix``,
    reflection excluded, so crops agree with OpenCV's ``alignCrop``.
    """
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_d, dst_d = src - src_mean, dst - dst_mean
    cov = dst_d.T @ src_d / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    variance = float((src_d**2).sum() / len(src))
    if variance <= 0:
        raise FaceAlignmentError(NO_FACE_MESSAGE)
    scale = float((s * d).sum()) / variance
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: np.ndarray, face: DetectedFace, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` crop of the face in template position (same colour order as ``image``)."""
    if face.layout.has_mouth_corners:
        matrix = similarity_transform(five_points(face), TEMPLATE_5 * (size / TEMPLATE_SIZE))
    else:
        template = TEMPLATE * (size / TEMPLATE_SIZE)
        matrix, _ = cv2.estimateAffinePartial2D(source_points(face), template, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():
        logger.info("alignment failed for face at (%.0f, %.0f)", face.x, face.y)
        raise FaceAlignmentError(NO_FACE_MESSAGE)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
