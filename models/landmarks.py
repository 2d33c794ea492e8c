"""Which keypoint is which, for each detector: the rest of the model layer asks for eyes, nose and mouth.

BlazeFace gives six points (eyes, nose tip, mouth centre, two tragions); YuNet
gives five (eyes, nose tip, two mouth corners), the points the ArcFace
template and OpenCV's ``FaceRecognizerSF.alignCrop`` are defined on. Alignment
and the quality checks read the points through a layout, so a detector with
another keypoint order needs only a new layout, not new alignment code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeypointLayout:
    """Indices into a face's keypoint array. "Right" is the subject's right (image-left when unmirrored)."""

    name: str
    right_eye: int
    left_eye: int
    nose_tip: int
    mouth: tuple[int, ...]  # the mouth centre, or the subject's right then left mouth corner
    tragions: tuple[int, int] | None  # subject's right, left ear; None when the detector has none

    @property
    def has_mouth_corners(self) -> bool:
        return len(self.mouth) == 2

    def mouth_centre(self, keypoints: np.ndarray) -> np.ndarray:
        return keypoints[list(self.mouth)].mean(axis=0)


BLAZEFACE_6 = KeypointLayout("blazeface-6", right_eye=0, left_eye=1, nose_tip=2, mouth=(3,), tragions=(4, 5))
YUNET_5 = KeypointLayout("yunet-5", right_eye=0, left_eye=1, nose_tip=2, mouth=(3, 4), tragions=None)
