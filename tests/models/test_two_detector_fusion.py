"""A fused template whose dlib part takes its crop from BlazeFace while YuNet decides the face.

Real OpenVINO inference on photos from pinned registry packages: the template
is the fusion of SFace on YuNet's face and dlib on BlazeFace's box for the same
face; a library built with another pipeline is refused; and when BlazeFace
cannot find the face YuNet chose, the photo is refused rather than templated
by one part only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from library.errors import EmbedderMismatchError
from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, new_key
from models.errors import FACE_NOT_CONFIRMED_MESSAGE, FaceNotConfirmedError
from models.face_match import box_iou, locate, matching_face
from models.fusion import FusedEmbedder, fuse
from models.image import decode_image
from models.landmarks import BLAZEFACE_6
from models.manifest import load_fused_manifest
from models.pipeline import FacePipeline
from tests.models.conftest import group_photo, portrait

pytestmark = pytest.mark.models

NAME = "sface_yunet_dlib_blazeface"


@pytest.fixture(scope="module")
def two_detector() -> FacePipeline:
    return FacePipeline.load(embedder=NAME)


def _embedder(pipeline: FacePipeline) -> FusedEmbedder:
    assert isinstance(pipeline.embedder, FusedEmbedder)
    return pipeline.embedder


def test_template_fuses_sface_on_yunet_and_dlib_on_blazeface(two_detector: FacePipeline) -> None:
    fused = _embedder(two_detector)
    assert two_detector.embedder_id == "fused-sface-yunet-dlib-blazeface@1" and two_detector.dim == 256
    assert two_detector.detector_id.startswith("yunet-2023mar@")
    assert load_fused_manifest(NAME).licence.grade == "deployable"
    result = two_detector.process(portrait("obama.jpg"))
    assert result.template.shape == (256,)
    assert float(np.linalg.norm(result.template)) == pytest.approx(1.0, abs=1e-5)
    sface_face, dlib_face = fused.part_faces(result.image, result.face)
    assert sface_face is result.face                      # SFace on YuNet's own face and five points
    assert dlib_face.layout == BLAZEFACE_6                 # dlib on BlazeFace's keypoints
    assert box_iou(result.face, dlib_face) > 0.5           # ... of the same face
    sface, dlib = fused.components
    parts = [sface.embed(sface.align(result.image, sface_face)), dlib.embed(dlib.align(result.image, dlib_face))]
    np.testing.assert_allclose(result.template, fuse(parts, fused.weights), atol=1e-6)


def test_each_face_of_a_group_photo_is_paired_with_its_own_blazeface_box(two_detector: FacePipeline) -> None:
    """Real detector outputs: every YuNet face matches one BlazeFace face, and never another person's."""
    finder = _embedder(two_detector).finders[1]
    assert finder is not None
    image = decode_image(group_photo(1))
    yunet, blaze = two_detector.detect(image), finder.detect(image)
    assert len(yunet) == len(blaze) == 3
    paired = [matching_face(face, blaze) for face in yunet]
    assert all(p is not None for p in paired) and len({id(p) for p in paired}) == 3
    for face, own in zip(yunet, paired, strict=True):
        assert matching_face(face, [b for b in blaze if b is not own]) is None


def test_a_face_blazeface_cannot_find_is_refused_not_half_templated(two_detector: FacePipeline) -> None:
    """YuNet's face in a group photo, with that face painted over in the photo both detectors then see.

    BlazeFace still finds the other two people, on the photo and on the padded retry around the face, and
    neither may stand in for the one YuNet chose: the photo is refused in words staff can act on.
    """
    image = decode_image(group_photo(1))
    face = two_detector.detect(image)[0]
    painted = image.copy()
    x0, y0 = max(int(face.x), 0), max(int(face.y), 0)
    painted[y0:int(face.y + face.h) + 1, x0:int(face.x + face.w) + 1] = 128
    finder = _embedder(two_detector).finders[1]
    assert finder is not None and len(finder.detect(painted)) == 2
    with pytest.raises(FaceNotConfirmedError) as refused:
        two_detector.embed(painted, face)
    assert str(refused.value) == FACE_NOT_CONFIRMED_MESSAGE


def test_a_tight_crop_blazeface_misses_is_found_by_the_padded_retry(two_detector: FacePipeline) -> None:
    """A 112 px crop to YuNet's box (as the development set's crops are): BlazeFace misses it on the photo and
    on its own padded canvas, and finds it in the face's box padded by one box side."""
    finder = _embedder(two_detector).finders[1]
    assert finder is not None
    image = decode_image(group_photo(2))
    face = sorted(two_detector.detect(image), key=lambda f: f.x)[0]
    crop = image[int(face.y):int(face.y + face.h), int(face.x):int(face.x + face.w)]
    crop = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
    primary = two_detector.detect(crop)[0]
    assert matching_face(primary, finder.detect(crop)) is None
    assert box_iou(primary, locate(finder, crop, primary)) >= 0.2


def test_libraries_of_the_two_fusions_refuse_each_other(two_detector: FacePipeline, default_pipeline: FacePipeline,
                                                        tmp_path: Path) -> None:
    assert default_pipeline.embedder_id != two_detector.embedder_id
    for builder, desk in ((two_detector, default_pipeline), (default_pipeline, two_detector)):
        key, path = new_key(), tmp_path / f"{builder.embedder_id}.db"
        with SnapshotWriter.create(path, key, embedder_id=builder.embedder_id, dim=builder.dim) as writer:
            result = builder.process(portrait("biden.jpg"))
            writer.add(ReferenceRecord(subject_ref="DEMO-BIDEN", source="biden.jpg"), result.template,
                       result.thumbnail)
        with pytest.raises(EmbedderMismatchError, match=f"built with face model {builder.embedder_manifest.id}"):
            Snapshot.open(path, key, expected_embedder=desk.embedder_id)
