"""INT8 parts of a fused template: made from registry faces, named by recipe, close to fp32, refused when wrong."""

from __future__ import annotations

import numpy as np
import pytest

from models.convert import ensure_ir
from models.errors import ModelManifestError
from models.manifest import Int8Spec, load_manifest
from models.pipeline import FacePipeline, make_detector
from models.quantise import ensure_int8_ir, int8_path
from models.registry_faces import DistractorImage, distractor_images
from tests.models.conftest import portrait

pytestmark = pytest.mark.models

PORTRAITS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


@pytest.fixture(scope="module")
def pipelines() -> tuple[FacePipeline, FacePipeline]:
    return FacePipeline.load(embedder="sface_dlib"), FacePipeline.load(embedder="sface_dlib_int8")


def test_the_int8_default_runs_int8_parts_under_an_id_of_its_own(pipelines: tuple[FacePipeline, FacePipeline]) -> None:
    fp32, int8 = pipelines
    assert int8.embedder_id == "fused-sface-dlib-int8@1" != fp32.embedder_id
    names = [part.model.path.name for part in int8.embedder.components]  # type: ignore[attr-defined]
    assert all("-int8-" in name for name in names), names
    assert int8.dim == fp32.dim == 256


def test_int8_templates_stay_close_to_fp32_and_keep_the_same_person_apart_from_another(
        pipelines: tuple[FacePipeline, FacePipeline]) -> None:
    fp32, int8 = pipelines
    templates = {name: (fp32.process(portrait(name)).template, int8.process(portrait(name)).template)
                 for name in PORTRAITS}
    for name, (a, b) in templates.items():
        assert float(a @ b) > 0.98, name  # the same photo, fp32 against int8
    for which in (0, 1):
        same = float(templates["obama.jpg"][which] @ templates["obama2.jpg"][which])
        other = float(templates["obama.jpg"][which] @ templates["biden.jpg"][which])
        assert same > other + 0.05


def test_the_recipe_names_the_file_so_a_changed_recipe_never_reuses_an_old_one() -> None:
    manifest = load_manifest("sface_2021dec")
    spec = manifest.conversion.int8
    assert spec is not None
    fp32 = ensure_ir(manifest)
    images = distractor_images()
    other = Int8Spec(method="nncf-ptq", preset="performance", detector=spec.detector)
    assert int8_path(fp32, spec, images) != int8_path(fp32, other, images)
    assert int8_path(fp32, spec, images) != int8_path(fp32, spec, images[:-1])
    assert int8_path(fp32, spec, images).name.startswith(fp32.stem + "-int8-")


def test_a_model_without_a_recipe_or_with_too_few_faces_is_refused_with_a_reason(tmp_path) -> None:
    plain = load_manifest("mobilefacenet")
    with pytest.raises(ModelManifestError, match=r"no \[conversion.int8\] recipe"):
        ensure_int8_ir(plain, ensure_ir(plain), lambda image: [], lambda image, face: image, lambda crop: crop)
    manifest = load_manifest("dlib_resnet")
    detector = make_detector(load_manifest("yunet_2023mar"))
    fp32 = ensure_ir(manifest)
    copy = tmp_path / fp32.name  # a private copy, so nothing is written beside the shared IR
    copy.write_bytes(fp32.read_bytes())
    copy.with_suffix(".bin").write_bytes(fp32.with_suffix(".bin").read_bytes())
    one_face = [DistractorImage("one portrait", portrait("biden.jpg"))]
    with pytest.raises(ModelManifestError, match="Only 1 calibration faces"):
        ensure_int8_ir(manifest, copy, detector.detect, lambda image, face: np.zeros((150, 150, 3), np.uint8),
                       lambda crop: crop[None].astype(np.float32), one_face)
    assert not list(tmp_path.glob("*-int8-*"))
