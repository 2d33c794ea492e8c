"""Find, with a second detector, the face the primary detector chose: a fused part with a detector of its own.

A fused template may take one part's crop from another detector's keypoints
(dlib's ResNet measured better on BlazeFace's chip than on YuNet's, see
docs/model-card.md). The primary detector (YuNet) alone decides whether there
is a face, which one, and its quality; the second detector only has to find
*that* face again, so a template never mixes two people in a group photo.

Two boxes are the same face when they overlap by at least ``MIN_IOU`` and the
second box's centre lies inside the primary box. On the development set the
largest YuNet face and its BlazeFace box overlap by IoU 0.29-0.92 (median 0.73,
1st percentile 0.55) with centres at most 0.36 of the box apart; in the group
photos of the registry packages each YuNet face overlaps its own BlazeFace box
by 0.39-0.83 and every other face's by 0.

When the second detector finds no such face in the photo (it has already tried
its own padded canvas when it found nothing at all), it looks once more in the
primary face's box padded by ``RETRY_PADDING`` box sides on every side (the fused
manifest's ``retry_padding`` per part; 0 turns the retry off): two
tight 112 px crops of the development set that BlazeFace misses at 0.5 padding
are found at 1.0. If that fails too the photo is refused with
``FaceNotConfirmedError`` rather than templated by one part only: a half
template would not be comparable with the library's.
"""

from __future__ import annotations

import logging
from typing import Protocol

import cv2
import numpy as np

from models.detector import DetectedFace
from models.errors import FaceNotConfirmedError

logger = logging.getLogger(__name__)

MIN_IOU = 0.2
RETRY_PADDING = 1.0


class Finder(Protocol):
    """What a detector offers here: faces in a BGR uint8 image, best first."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]: ...


def box_iou(a: DetectedFace, b: DetectedFace) -> float:
    """Intersection over union of two faces' boxes."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / max(a.w * a.h + b.w * b.h - inter, 1e-12))


def _centre_inside(candidate: DetectedFace, primary: DetectedFace) -> bool:
    cx, cy = candidate.x + candidate.w / 2, candidate.y + candidate.h / 2
    return primary.x <= cx <= primary.x + primary.w and primary.y <= cy <= primary.y + primary.h


def matching_face(primary: DetectedFace, candidates: list[DetectedFace]) -> DetectedFace | None:
    """The candidate that is the primary's face (best IoU of those that qualify), or None."""
    same = [c for c in candidates if box_iou(primary, c) >= MIN_IOU and _centre_inside(c, primary)]
    return max(same, key=lambda c: box_iou(primary, c)) if same else None


def _around(image: np.ndarray, face: DetectedFace, padding: float) -> tuple[np.ndarray, int, int]:
    """The face's box padded by ``padding`` box sides per side, cut from the photo (black past its edge)."""
    side = max(face.w, face.h)
    x0, y0 = round(face.x - padding * side), round(face.y - padding * side)
    x1, y1 = round(face.x + face.w + padding * side), round(face.y + face.h + padding * side)
    h, w = image.shape[:2]
    crop = image[max(y0, 0):max(min(y1, h), 0), max(x0, 0):max(min(x1, w), 0)]
    crop = cv2.copyMakeBorder(crop, max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0),
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return crop, x0, y0


def locate(finder: Finder, image: np.ndarray, primary: DetectedFace, retry_padding: float = RETRY_PADDING
           ) -> DetectedFace:
    """The second detector's box and keypoints for the primary detector's face, or ``FaceNotConfirmedError``.

    ``retry_padding`` 0 skips the retry in the face's padded box.
    """
    found = matching_face(primary, finder.detect(image))
    if found is not None:
        return found
    if retry_padding <= 0:
        logger.info("second detector did not find the face at (%.0f, %.0f); no retry", primary.x, primary.y)
        raise FaceNotConfirmedError()
    crop, x0, y0 = _around(image, primary, retry_padding)
    found = matching_face(primary, [f.shifted(x0, y0) for f in finder.detect(crop)])
    if found is not None:
        logger.debug("second detector found the face on the padded retry")
        return found
    logger.info("second detector did not find the face at (%.0f, %.0f)", primary.x, primary.y)
    raise FaceNotConfirmedError()
