"""Probe quality on crafted versions of real faces: each defect gives the reason that fixes it.

Real photos from the pinned face_recognition sdist go through the real
detector; only the pixels are altered (blurred, darkened, shrunk, rotated),
the way a hurried capture at the desk would alter them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models import quality
from models.errors import NoFaceError
from models.image import decode_image
from models.pipeline import FacePipeline
from models.quality import QualityReport, QualityRules, assess, judge

pytestmark = pytest.mark.models


def _assess(pipeline: FacePipeline, image: np.ndarray) -> QualityReport:
    faces = pipeline.detect(image)
    assert faces, "the crafted image must still contain a detectable face"
    return assess(image, faces[0], len(faces))


@pytest.fixture(scope="module")
def obama(face_photo) -> np.ndarray:
    return decode_image(Path(face_photo("obama.jpg")).read_bytes())


@pytest.fixture(scope="module")
def inter_eye(pipeline: FacePipeline, obama: np.ndarray) -> float:
    return _assess(pipeline, obama).measures["inter_eye_px"]


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"])
def test_good_portraits_pass(pipeline: FacePipeline, face_photo, name: str) -> None:
    report = pipeline.process(Path(face_photo(name)).read_bytes()).quality
    assert report.verdict == "pass", report.reasons
    assert report.reasons == []
    required = {"inter_eye_px", "sharpness", "brightness", "contrast", "yaw_deg", "roll_deg",
                "detection_score", "faces_found"}
    assert required <= report.measures.keys()
    assert report.measures["faces_found"] == 1
    assert report.measures["inter_eye_px"] > 80  # 900-2300 px portraits


def test_blurred_face_is_told_to_hold_still(pipeline: FacePipeline, obama: np.ndarray, inter_eye: float) -> None:
    blurred = cv2.GaussianBlur(obama, (0, 0), 0.1 * inter_eye)
    report = _assess(pipeline, blurred)
    assert report.verdict == "fail"
    assert report.reasons == [quality.BLURRED]
    assert "hold" in report.reasons[0]


def test_slight_blur_is_a_warning(pipeline: FacePipeline, obama: np.ndarray, inter_eye: float) -> None:
    report = _assess(pipeline, cv2.GaussianBlur(obama, (0, 0), 0.06 * inter_eye))
    assert report.verdict == "warn"
    assert report.reasons == [quality.SOFT]


@pytest.mark.parametrize(("factor", "verdict", "reason"), [(0.15, "fail", quality.TOO_DARK),
                                                           (0.35, "warn", quality.DARK)])
def test_dark_face_is_an_exposure_problem_not_blur(pipeline: FacePipeline, obama: np.ndarray,
                                                   factor: float, verdict: str, reason: str) -> None:
    report = _assess(pipeline, (obama * factor).astype(np.uint8))
    assert report.verdict == verdict
    assert report.reasons == [reason]
    assert report.measures["brightness"] < 60


def test_over_exposed_face_is_reported(pipeline: FacePipeline, obama: np.ndarray) -> None:
    report = _assess(pipeline, cv2.convertScaleAbs(obama, alpha=1.0, beta=120))
    assert report.verdict == "fail"
    assert report.reasons == [quality.TOO_BRIGHT]


def test_tiny_face_is_told_to_move_closer(pipeline: FacePipeline, obama: np.ndarray) -> None:
    tiny = cv2.resize(obama, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    report = _assess(pipeline, tiny)
    assert report.measures["inter_eye_px"] < 16
    assert report.verdict == "fail"
    # Upscaling also makes it look soft; only the size reason is given, since moving closer fixes both.
    assert report.reasons == [quality.TOO_SMALL]
    assert "move the camera closer" in report.reasons[0]


@pytest.mark.parametrize("angle", [30, 35, -40])
def test_rotated_face_is_told_to_hold_head_upright(pipeline: FacePipeline, obama: np.ndarray, angle: float) -> None:
    h, w = obama.shape[:2]
    rotated = cv2.warpAffine(obama, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))
    report = _assess(pipeline, rotated)
    assert report.verdict == "warn"
    assert report.reasons == [quality.TILTED]
    # OpenCV's positive angle turns the picture anticlockwise, raising the image-right eye.
    assert np.sign(report.measures["roll_deg"]) == -np.sign(angle)
    assert abs(report.measures["roll_deg"]) == pytest.approx(abs(angle), abs=12)


def test_mirror_image_turns_the_other_way(pipeline: FacePipeline, face_photo) -> None:
    image = decode_image(Path(face_photo("obama2.jpg")).read_bytes())
    yaw = _assess(pipeline, image).measures["yaw_deg"]
    mirrored = _assess(pipeline, cv2.flip(image, 1)).measures["yaw_deg"]
    assert abs(yaw) > 10  # obama2 looks a little to one side
    assert np.sign(mirrored) == -np.sign(yaw)


def test_several_faces_return_every_box_and_say_so(pipeline: FacePipeline, group_photo: Path) -> None:
    result = pipeline.process(group_photo.read_bytes())
    assert len(result.faces) >= 3
    assert result.quality.measures["faces_found"] == len(result.faces)
    assert quality.several_faces(len(result.faces)) in result.quality.reasons
    assert result.quality.verdict in ("warn", "fail")
    for index in range(len(result.faces)):  # each box can be chosen and is assessed on its own
        chosen = pipeline.process(group_photo.read_bytes(), face_index=index)
        assert chosen.quality.measures["detection_score"] == pytest.approx(result.faces[index].score)


def test_no_face_gives_a_message_and_no_template(pipeline: FacePipeline) -> None:
    ok, png = cv2.imencode(".png", np.full((480, 640, 3), 90, np.uint8))
    assert ok
    with pytest.raises(NoFaceError, match="No face was found in this photo"):
        pipeline.process(png.tobytes())


def test_report_survives_a_json_round_trip(pipeline: FacePipeline, obama: np.ndarray) -> None:
    report = _assess(pipeline, (obama * 0.35).astype(np.uint8))
    stored = json.loads(json.dumps(report.to_dict()))
    assert QualityReport.from_dict(stored) == report
    with pytest.raises(ValueError, match="verdict"):
        QualityReport.from_dict({**stored, "verdict": "maybe"})


GOOD = {"inter_eye_px": 60.0, "sharpness": 1.5, "brightness": 130.0, "contrast": 40.0, "bright_fraction": 0.0,
        "yaw_deg": 5.0, "roll_deg": 2.0, "detection_score": 0.9, "faces_found": 1.0}


@pytest.mark.parametrize(("change", "verdict", "reason"), [
    ({}, "pass", None),
    ({"yaw_deg": -35.0}, "warn", quality.TURNED),
    ({"yaw_deg": 60.0}, "fail", quality.TURNED_AWAY),
    ({"roll_deg": 50.0}, "fail", quality.TILTED_HARD),
    ({"detection_score": 0.51}, "warn", quality.UNCLEAR),
    ({"contrast": 5.0}, "fail", quality.FLAT),
    ({"inter_eye_px": 20.0}, "warn", quality.SMALL),
])
def test_rules_map_each_measure_to_its_instruction(change: dict[str, float], verdict: str, reason: str | None) -> None:
    got, reasons = judge({**GOOD, **change})
    assert got == verdict
    assert reasons == ([] if reason is None else [reason])


def test_a_turned_head_is_told_to_turn_not_to_move_closer() -> None:
    # 50 degrees of yaw shortens a 30 px eye line to about 19 px; turning back fixes it.
    verdict, reasons = judge({**GOOD, "yaw_deg": 48.0, "inter_eye_px": 20.0})
    assert (verdict, reasons) == ("warn", [quality.TURNED])


def test_worst_verdict_wins_and_every_reason_is_listed() -> None:
    verdict, reasons = judge({**GOOD, "brightness": 30.0, "roll_deg": 25.0, "faces_found": 2.0})
    assert verdict == "fail"
    assert reasons == [quality.TOO_DARK, quality.TILTED, quality.several_faces(2)]


def test_rules_can_be_tightened_without_code_changes() -> None:
    strict = QualityRules(inter_eye_warn_px=90.0)
    assert judge(GOOD, strict) == ("warn", [quality.SMALL])
