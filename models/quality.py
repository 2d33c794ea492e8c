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
from models.detector import DetectedFace

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
# Without tragions (YuNet's five points) yaw is read from the nose tip's sideways offset from
# the face's midline (midway between the eye midpoint and the mouth-corner midpoint) over
# half the inter-eye distance: offset / half-span = NOSE_EYE_DEPTH_RATIO * tan(yaw), the
# nose tip standing that far in front of the eyes' plane. Fitted by least squares on every
# second development image (243 faces both detectors found, 2026-12-04) so that YuNet-based
# yaw agrees with BlazeFace's tragion-based yaw: 1.06, correlation 0.87, median difference
# 4.8 degrees; 14 of the 20 faces BlazeFace puts beyond 30 degrees are beyond it here too.
NOSE_EYE_DEPTH_RATIO = 1.06


@dataclass(frozen=True)
class QualityRules:
    """Every quality threshold, in one place, with the measurement behind it.

    Numbers were measured on the development set (/work/shared/faces/dev: 484
    faces of 38 people, mostly 112-150 px crops, run on 2026-11-26) by relating
    each measure to how well the face matched its own identity, and by blurring,
    darkening and shrinking sharp faces until matching broke. "Warn" means the
    match may be weaker than usual; "fail" means a retake is needed before the
    result can be relied on. The aim is that ordinary photos pass (86% of the
    development faces do, see docs/model-card.md) and each warning is worth acting on.
    """

    # Inter-eye distance in pixels. The embedder sees faces with the eyes 35 px apart
    # (112 px ArcFace template), so below that it gets upscaled pixels. Development faces
    # with 10-34 px averaged genuine cosine 0.52 (0.60-0.74 for larger ones) and held 4 of
    # the 6 rank-1 misses. Under 16 px the face is upscaled more than 2x.
    inter_eye_warn_px: float = 28.0
    inter_eye_fail_px: float = 16.0
    # Sharpness (Laplacian std / pixel std on the aligned face). Sharp development faces
    # measure 1.7 median (1st percentile 0.68). Gaussian blur of sigma 3% of the inter-eye
    # distance gives about 0.9 and keeps the face's own-template cosine at 0.97; 6% gives
    # about 0.5 and drops it to 0.80 (a typical genuine pair then falls near the threshold);
    # 10% gives 0.35 and 0.45, a different face as far as matching is concerned.
    sharpness_warn: float = 0.6
    sharpness_fail: float = 0.42
    # Mean grey level of the face (0-255). Development faces span 54-199 (median 136).
    brightness_dark_warn: float = 60.0
    brightness_dark_fail: float = 35.0
    brightness_bright_warn: float = 205.0
    brightness_bright_fail: float = 230.0
    # Share of face pixels at 245 or above: burnt-out highlights lose the features in them.
    # Development faces reach 0.18 at most.
    clipped_bright_warn: float = 0.25
    # Standard deviation of the face's grey levels: flat, washed-out light. Development
    # faces span 20-97.
    contrast_warn: float = 15.0
    contrast_fail: float = 8.0
    # Head turned (degrees). Development faces beyond 30 degrees averaged genuine cosine
    # well below frontal ones; beyond 50 degrees they are near profiles, whose far eye
    # and ear are guessed, so alignment itself is unreliable.
    yaw_warn_deg: float = 30.0
    yaw_fail_deg: float = 50.0
    # Head tilted (degrees). Alignment undoes tilt, so it costs little accuracy, but the
    # detector was trained on upright faces and its keypoints drift beyond about 20
    # degrees; development faces stay within 16.
    roll_warn_deg: float = 20.0
    roll_fail_deg: float = 45.0
    # Detector confidence. Scores start at 0.5 (the detection cut-off); the lowest 5% of
    # development faces (below 0.52) are mostly partly hidden or cut-off faces.
    detection_score_warn: float = 0.52


DEFAULT_RULES = QualityRules()


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
    layout = face.layout
    points = face.keypoints.astype(np.float64)
    left_eye, right_eye = points[layout.right_eye], points[layout.left_eye]  # subject's right eye is image-left
    dx, dy = right_eye - left_eye
    roll = math.atan2(dy, dx)
    cos, sin = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos, -sin], [sin, cos]])
    upright = points @ rotation.T
    if layout.tragions is not None:
        ears = upright[list(layout.tragions), 0]
        centre, half_span, ratio = float(ears.mean()), abs(ears[1] - ears[0]) / 2, NOSE_DEPTH_RATIO
    else:
        eyes_x = upright[[layout.right_eye, layout.left_eye], 0]
        mouth_x = float(upright[list(layout.mouth), 0].mean())
        centre, half_span = (float(eyes_x.mean()) + mouth_x) / 2, abs(eyes_x[1] - eyes_x[0]) / 2
        ratio = NOSE_EYE_DEPTH_RATIO
    if half_span < 1e-6:
        yaw = 90.0
    else:
        offset = (upright[layout.nose_tip, 0] - centre) / half_span
        yaw = math.degrees(math.atan(offset / ratio))
    return yaw, math.degrees(roll)


def measure(image_bgr: np.ndarray, face: DetectedFace, faces_found: int) -> dict[str, float]:
    """Every measure the rules use, in units a person can check on the photo."""
    grey = _grey_face(image_bgr, face)
    eyes = face.keypoints[[face.layout.right_eye, face.layout.left_eye]].astype(np.float64)
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



TOO_SMALL = "Face too small: move the camera closer or zoom in so the face fills more of the photo."
SMALL = "Face rather small: move the camera closer if you can."
BLURRED = "Image blurred: hold the camera still, check the lens is clean, and retake."
SOFT = "Image slightly blurred: hold still and check the focus if you can retake."
TOO_DARK = "Face too dark: add light in front of the person or move them away from a bright background."
DARK = "Face rather dark: more light on the face would help."
TOO_BRIGHT = "Face over-exposed: reduce the light or avoid flash straight at the face."
BRIGHT = "Face partly over-exposed: avoid strong light or flash straight at the face."
FLAT = "Face lit too flatly to show its features: use even but not washed-out light and retake."
TURNED_AWAY = "Face turned well away from the camera: ask the person to look straight at the lens."
TURNED = "Face turned from the camera: ask the person to look straight at the lens."
TILTED_HARD = "Head strongly tilted: ask the person to hold their head upright and retake."
TILTED = "Head tilted: ask the person to hold their head upright."
UNCLEAR = "Face not clearly detected: make sure nothing covers the face and the whole head is in view."


def several_faces(count: int) -> str:
    return (f"{count} faces are in the photo: check the highlighted face is the person in custody, "
            f"or choose the right one.")


def judge(measures: dict[str, float], rules: QualityRules = DEFAULT_RULES) -> tuple[Verdict, list[str]]:
    """The verdict and every reason that applies, worst first.

    A face too small to resolve also reads as blurred; only the size reason is
    given then, because moving closer is what fixes both. Likewise exposure
    problems are not also reported as flat contrast.
    """
    fails: list[str] = []
    warns: list[str] = []

    def check(bad: bool, worse: bool, fail_reason: str, warn_reason: str) -> None:
        if worse:
            fails.append(fail_reason)
        elif bad:
            warns.append(warn_reason)

    # A turned head foreshortens the eye line; judge size as if facing the camera, so a
    # profile is told to turn rather than to move closer.
    eye = measures["inter_eye_px"] / max(math.cos(math.radians(measures["yaw_deg"])), 0.25)
    check(eye < rules.inter_eye_warn_px, eye < rules.inter_eye_fail_px, TOO_SMALL, SMALL)
    if eye >= rules.inter_eye_warn_px:
        sharp = measures["sharpness"]
        check(sharp < rules.sharpness_warn, sharp < rules.sharpness_fail, BLURRED, SOFT)
    light = measures["brightness"]
    check(light < rules.brightness_dark_warn, light < rules.brightness_dark_fail, TOO_DARK, DARK)
    check(light > rules.brightness_bright_warn or measures.get("bright_fraction", 0.0) > rules.clipped_bright_warn,
          light > rules.brightness_bright_fail, TOO_BRIGHT, BRIGHT)
    if rules.brightness_dark_warn <= light <= rules.brightness_bright_warn:  # else exposure says it already
        contrast = measures["contrast"]
        check(contrast < rules.contrast_warn, contrast < rules.contrast_fail, FLAT, FLAT)
    yaw = abs(measures["yaw_deg"])
    check(yaw > rules.yaw_warn_deg, yaw > rules.yaw_fail_deg, TURNED_AWAY, TURNED)
    roll = abs(measures["roll_deg"])
    check(roll > rules.roll_warn_deg, roll > rules.roll_fail_deg, TILTED_HARD, TILTED)
    check(measures["detection_score"] < rules.detection_score_warn, False, UNCLEAR, UNCLEAR)
    count = int(measures["faces_found"])
    check(count > 1, False, several_faces(count), several_faces(count))
    verdict: Verdict = "fail" if fails else "warn" if warns else "pass"
    return verdict, fails + warns


def assess(image_bgr: np.ndarray, face: DetectedFace, faces_found: int,
           rules: QualityRules = DEFAULT_RULES) -> QualityReport:
    """Measure one detected face and judge it: the probe check at the desk and the reference check at enrolment.

    Raises ``FaceAlignmentError`` (a ``NoFaceError``) when the keypoints are
    degenerate, as embedding the same face would.
    """
    if faces_found < 1:
        raise ValueError("faces_found must count the assessed face")
    measures = measure(image_bgr, face, faces_found)
    verdict, reasons = judge(measures, rules)
    return QualityReport(verdict, reasons, measures)
