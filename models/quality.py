"""Probe and reference image quality: measures a custody officer can act on, and a verdict.

Recognition accuracy falls with small, blurred, badly exposed or turned faces;
an officer at the desk can fix each of these by moving the camera, holding
still, changing the light or asking the person to face the camera. So each
rule here maps to one plain instruction, and ``assess`` returns every reason
that applies rather than a single score nobody can act on.

Photometric measures (sharpness, brightness, contrast) are taken on the face
as the embedder sees it: aligned to the 112x112 ArcFace template, central
region only (eyes to chin, cheek to cheek), so background and hair do not
count and a large but slightly soft face that the embedder downsamples anyway
is not flagged. Pose comes from the detector's keypoints. All thresholds live
in ``QualityRules``, with the measurements behind each number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from models.align import TEMPLATE_SIZE, align_face
from models.detector import LEFT_EYE, LEFT_TRAGION, NOSE_TIP, RIGHT_EYE, RIGHT_TRAGION, DetectedFace

Verdict = Literal["pass", "warn", "fail"]
VERDICTS: tuple[Verdict, ...] = ("pass", "warn", "fail")

# Central face region in the 112x112 template: from just above the eyes (y 51.6) to
# below the mouth (y 92.3), and between the outer eye corners; excludes hair and background.
_REGION = (slice(36, 104), slice(24, 88))

# Depth of the nose tip in front of the line between the tragions, over half the
# bitragion breadth (adult heads: about 11 cm over 7.3 cm). With the head turned by
# yaw, the nose moves sideways by depth*sin(yaw) and the ears' half-span shrinks to
# half-breadth*cos(yaw), so offset / half-span = NOSE_DEPTH_RATIO * tan(yaw).
NOSE_DEPTH_RATIO = 1.5


@dataclass(frozen=True)
class QualityReport:
    """Verdict (pass / warn / fail), the reasons in plain words, and the raw measures behind them."""

    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored beside each library image and shown in the Match Report."""
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "measures": {k: float(v) for k, v in self.measures.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        """Rebuild a stored report, refusing a verdict this code does not know."""
        verdict = data["verdict"]
        if verdict not in VERDICTS:
            raise ValueError(f"unknown quality verdict {verdict!r}")
        return cls(verdict=verdict, reasons=[str(r) for r in data.get("reasons", [])],
                   measures={str(k): float(v) for k, v in data.get("measures", {}).items()})


def _grey_face(image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
    aligned = align_face(image_bgr, face, TEMPLATE_SIZE)
    return cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)[_REGION].astype(np.float32)


def sharpness(grey_face: np.ndarray) -> float:
    """Detail relative to contrast: std of the Laplacian over std of the pixels.

    Dividing by the contrast keeps a dark or flat-lit face from reading as blurred
    (darkening scales both by the same factor); blur removes the fine detail the
    Laplacian responds to while leaving the coarse contrast, so the ratio falls.
    """
    spread = float(grey_face.std())
    if spread < 1e-6:
        return 0.0
    return float(cv2.Laplacian(grey_face, cv2.CV_32F, ksize=3).std() / spread)


def pose_degrees(face: DetectedFace) -> tuple[float, float]:
    """(yaw, roll) in degrees from the keypoints.

    Roll is the eye line's angle (positive: the face's image-right eye is lower).
    Yaw is read after undoing the roll, from the nose tip's sideways offset from
    the midpoint of the two tragions (positive: the nose points to image right).
    The far ear is hidden on a turned head and the detector guesses it close to
    the cheek, which over- rather than under-states large yaw.
    """
    points = face.keypoints.astype(np.float64)
    left_eye, right_eye = points[RIGHT_EYE], points[LEFT_EYE]  # the subject's right eye is image-left
    dx, dy = right_eye - left_eye
    roll = math.atan2(dy, dx)
    cos, sin = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos, -sin], [sin, cos]])
    upright = points @ rotation.T
    ears = upright[[RIGHT_TRAGION, LEFT_TRAGION], 0]
    half_span = abs(ears[1] - ears[0]) / 2
    if half_span < 1e-6:
        yaw = 90.0
    else:
        offset = (upright[NOSE_TIP, 0] - ears.mean()) / half_span
        yaw = math.degrees(math.atan(offset / NOSE_DEPTH_RATIO))
    return yaw, math.degrees(roll)


def measure(image_bgr: np.ndarray, face: DetectedFace, faces_found: int) -> dict[str, float]:
    """Every measure the rules use, in units a person can check on the photo."""
    grey = _grey_face(image_bgr, face)
    eyes = face.keypoints[[RIGHT_EYE, LEFT_EYE]].astype(np.float64)
    yaw, roll = pose_degrees(face)
    return {
        "inter_eye_px": float(np.linalg.norm(eyes[1] - eyes[0])),
        "sharpness": sharpness(grey),
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "dark_fraction": float(np.count_nonzero(grey <= 15) / grey.size),
        "bright_fraction": float(np.count_nonzero(grey >= 245) / grey.size),
        "yaw_deg": yaw,
        "roll_deg": roll,
        "detection_score": float(face.score),
        "faces_found": float(faces_found),
    }


def assess(image_bgr: np.ndarray, face: DetectedFace, faces_found: int) -> QualityReport:
    """Placeholder during measurement."""
    return QualityReport("pass", [], measure(image_bgr, face, faces_found))
