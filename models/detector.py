"""BlazeFace full-range face detection under OpenVINO.

Pre/post-processing follows the measured recipe (/work/shared/models-recipe.md):
letterbox to a centred square, 48x48 anchors, sigmoid scores above 0.5, weighted
non-maximum suppression at IoU 0.3, then map back to image pixels. The model
misses faces that fill a tight crop (a cropped ID photo), so when nothing is
found it looks again on a canvas padded by 50% on each side; that took
detection on the evaluation set from 386/487 to 485/487 images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.landmarks import BLAZEFACE_6, KeypointLayout
from models.manifest import DecodeSpec, ModelManifest
from models.runtime import CompiledModel

logger = logging.getLogger(__name__)

# BlazeFace keypoint order: the subject's right eye comes first, so it is the image-left one
# in an unmirrored photo; align.py sorts the eyes by x rather than trusting this.
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTRE, RIGHT_TRAGION, LEFT_TRAGION = range(6)


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face in image pixels. The box may extend past the image edge for faces cut off by it."""

    x: float
    y: float
    w: float
    h: float
    score: float
    keypoints: np.ndarray  # (k, 2) float32 x, y, in the order ``layout`` names
    layout: KeypointLayout = BLAZEFACE_6

    @property
    def area(self) -> float:
        return self.w * self.h

    def shifted(self, dx: float, dy: float) -> DetectedFace:
        """The same face in a frame whose origin is moved by (dx, dy)."""
        return DetectedFace(self.x + dx, self.y + dy, self.w, self.h, self.score,
                            self.keypoints + np.array([dx, dy], dtype=np.float32), self.layout)


def make_anchors(grid: int) -> np.ndarray:
    """Anchor centres (grid*grid, 2) in [0, 1], x varying fastest, as the model was trained."""
    centres = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with many."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(corners: np.ndarray, points: np.ndarray, scores: np.ndarray, iou: float
                 ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes overlapping it.

    Averaging overlapping anchors steadies the keypoints, which alignment depends on.
    Returns (corners, keypoints, score of the best member) per face, best first.
    """
    order = np.argsort(-scores)
    corners, points, scores = corners[order], points[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    kept = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        overlap = remaining & (_iou(corners[i], corners) > iou)
        overlap[i] = True
        weights = scores[overlap][:, None]
        total = float(weights.sum())
        box = (corners[overlap] * weights).sum(axis=0) / total
        pts = (points[overlap] * weights[:, :, None]).sum(axis=0) / total
        kept.append((box, pts, float(scores[i])))
        remaining &= ~overlap
    return kept


class FaceDetector:
    """Runs the detector model on BGR images and returns faces in image pixels, best first."""

    def __init__(self, manifest: ModelManifest, ir_path: Path, config: dict[str, str] | None = None) -> None:
        if manifest.kind != "detector" or not isinstance(manifest.decode, DecodeSpec):
            raise ValueError(f"{manifest.ref} is not a detector manifest")
        self.manifest = manifest
        self.decode: DecodeSpec = manifest.decode
        self.size = manifest.input.width
        if manifest.input.height != self.size:
            raise ValueError(f"{manifest.ref}: the detector input must be square")
        self.anchors = make_anchors(self.decode.anchor_grid)
        self.model = CompiledModel(ir_path, config)

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox into a centred square, resize, convert colour and normalise."""
        h, w = image.shape[:2]
        side = max(h, w)
        pad_x, pad_y = (side - w) // 2, (side - h) // 2
        square = cv2.copyMakeBorder(image, pad_y, side - h - pad_y, pad_x, side - w - pad_x,
                                    cv2.BORDER_CONSTANT, value=(0, 0, 0))
        interp = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
        resized = cv2.resize(square, (self.size, self.size), interpolation=interp)
        if self.manifest.input.colour_order == "RGB":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        spec = self.manifest.input
        tensor = (resized.astype(np.float32) - spec.mean) / spec.scale
        return tensor[None], float(side), pad_x, pad_y

    def _detect_once(self, image: np.ndarray) -> list[DetectedFace]:
        tensor, side, pad_x, pad_y = self._preprocess(image)
        regressors, logits = self.model(tensor)
        reg = regressors[0] / self.size
        clip = self.decode.logit_clip
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -clip, clip)))
        keep = scores > self.decode.score_threshold
        if not keep.any():
            return []
        reg, anchors, scores = reg[keep], self.anchors[keep], scores[keep]
        centres = reg[:, :2] + anchors
        half = reg[:, 2:4] / 2
        corners = np.concatenate([centres - half, centres + half], axis=1)
        points = reg[:, 4:].reshape(len(reg), -1, 2) + anchors[:, None, :]
        offset = np.array([pad_x, pad_y], dtype=np.float32)
        faces = []
        for box, pts, score in weighted_nms(corners, points, scores, self.decode.nms_iou):
            x0, y0 = box[:2] * side - offset
            x1, y1 = box[2:] * side - offset
            faces.append(DetectedFace(float(x0), float(y0), float(x1 - x0), float(y1 - y0), score,
                                      (pts * side - offset).astype(np.float32)))
        return faces

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in a BGR uint8 image, sorted by score (highest first); empty if none."""
        faces = self._detect_once(image)
        if not faces and self.decode.retry_padding > 0:
            h, w = image.shape[:2]
            px, py = round(w * self.decode.retry_padding), round(h * self.decode.retry_padding)
            padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            faces = [f.shifted(-px, -py) for f in self._detect_once(padded)]
            logger.debug("padded retry found %d face(s)", len(faces))
        return sorted(faces, key=lambda f: f.score, reverse=True)
