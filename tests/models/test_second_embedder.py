"""The second embedder: dlib's 128-D ResNet rebuilt for OpenVINO from @vladmandic/face-api's TF.js weights.

Reference behaviour comes from face_recognition 1.3.0's own tests, which run the
same dlib network on the same photos and require Euclidean distances between
raw descriptors of at most 0.6 for obama/obama2/obama3 and above 0.6 for biden
(measured here: 0.39, 0.31 and 0.83). The rebuilt graph was also checked
against a literal numpy transcription of face-api.js's forward pass: largest
difference 2e-7 at f32 precision.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from library.errors import EmbedderMismatchError
from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, new_key
from models.convert import ensure_ir, source_path
from models.errors import ModelChecksumError
from models.image import decode_image
from models.manifest import MANIFEST_DIR, load_manifest
from models.pipeline import FacePipeline
from tests.models.conftest import portrait

pytestmark = pytest.mark.models

NAME = "dlib_resnet"


@pytest.fixture(scope="module")
def dlib_pipeline() -> FacePipeline:
    return FacePipeline.load(embedder=NAME)


def _raw_descriptor(pipeline: FacePipeline, name: str) -> np.ndarray:
    """The network's unnormalised output for the photo's face, as face_recognition would compare it."""
    image = decode_image(portrait(name))
    chip = pipeline.embedder.align(image, pipeline.detect(image)[0])
    return pipeline.embedder.model(pipeline.embedder.preprocess(chip))[0][0]


def test_converts_from_the_pinned_verified_weights(tmp_path: Path) -> None:
    manifest = load_manifest(NAME)
    xml = ensure_ir(manifest, directory=tmp_path)
    assert xml.exists() and xml.with_suffix(".bin").exists()
    model = ov.Core().read_model(str(xml))
    assert list(model.input(0).get_shape()) == [1, 150, 150, 3]
    assert [list(o.get_shape()) for o in model.outputs] == [[1, 128]]


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    manifest = load_manifest(NAME)
    tampered = tmp_path / "face_recognition_model.bin"
    shutil.copyfile(source_path(manifest), tampered)
    data = bytearray(tampered.read_bytes())
    data[1000] ^= 0x01
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelChecksumError, match="tampered"):
        ensure_ir(manifest, source=tampered, directory=tmp_path / "ir")
    assert not (tmp_path / "ir").exists() or not any((tmp_path / "ir").iterdir())


def test_weights_layout_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """The JSON that says where each tensor starts is pinned too: a different one would shift every weight."""
    text = (MANIFEST_DIR / f"{NAME}.toml").read_text(encoding="utf-8")
    pinned_sha = load_manifest(NAME).conversion.tfjs.weights_manifest_sha256  # type: ignore[union-attr]
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace(pinned_sha, "0" * 64), encoding="utf-8")
    with pytest.raises(ModelChecksumError, match="Weights manifest"):
        ensure_ir(load_manifest(edited), directory=tmp_path / "ir")


def test_template_is_a_128_d_unit_vector_with_its_own_id(dlib_pipeline: FacePipeline) -> None:
    result = dlib_pipeline.process(portrait("biden.jpg"))
    assert dlib_pipeline.dim == 128
    assert result.template.shape == (128,)
    assert result.template.dtype == np.float32
    assert float(np.linalg.norm(result.template)) == pytest.approx(1.0, abs=1e-5)
    assert result.embedder_id == dlib_pipeline.embedder_id == "dlib-resnet@vladmandic-face-api-1.7.15"


def test_same_person_is_closer_than_a_different_person(dlib_pipeline: FacePipeline) -> None:
    t = {n: dlib_pipeline.process(portrait(n)).template for n in ("obama.jpg", "obama2.jpg", "biden.jpg")}
    same = float(t["obama.jpg"] @ t["obama2.jpg"])  # measured 0.96
    different = float(t["obama.jpg"] @ t["biden.jpg"])  # measured 0.82
    assert same > different + 0.08


def test_raw_descriptors_meet_face_recognitions_own_expectations(dlib_pipeline: FacePipeline) -> None:
    obama = _raw_descriptor(dlib_pipeline, "obama.jpg")
    distances = {n: float(np.linalg.norm(obama - _raw_descriptor(dlib_pipeline, n)))
                 for n in ("obama2.jpg", "obama3.jpg", "biden.jpg")}
    assert distances["obama2.jpg"] <= 0.6  # measured 0.39
    assert distances["obama3.jpg"] <= 0.6  # measured 0.31
    assert distances["biden.jpg"] > 0.6  # measured 0.83


def test_pipeline_uses_the_embedders_own_crop(dlib_pipeline: FacePipeline) -> None:
    """The dlib network needs dlib's chip; the ArcFace crop cut TAR@FAR1e-3 from 0.75 to 0.13 on the dev set."""
    result = dlib_pipeline.process(portrait("obama2.jpg"))
    expected = dlib_pipeline.embedder.embed(dlib_pipeline.embedder.align(result.image, result.face))
    np.testing.assert_allclose(result.template, expected, atol=1e-6)


def test_library_from_this_embedder_is_refused_by_a_mobilefacenet_device(
    dlib_pipeline: FacePipeline, pipeline: FacePipeline, tmp_path: Path
) -> None:
    key = new_key()
    path = tmp_path / "lib.db"
    with SnapshotWriter.create(path, key, embedder_id=dlib_pipeline.embedder_id, dim=dlib_pipeline.dim) as w:
        for subject, name in [("DEMO-OBAMA", "obama.jpg"), ("DEMO-BIDEN", "biden.jpg")]:
            result = dlib_pipeline.process(portrait(name))
            w.add(ReferenceRecord(subject_ref=subject, source=name), result.template, result.thumbnail)
    assert pipeline.embedder_id != dlib_pipeline.embedder_id
    with pytest.raises(EmbedderMismatchError, match="built with face model dlib-resnet"):
        Snapshot.open(path, key, expected_embedder=pipeline.embedder_id)
