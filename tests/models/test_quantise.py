"""INT8 parts of a fused template: made from registry faces, named by recipe, close to fp32, the same on every CPU,
refused when wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import int8_pins
from models.convert import ensure_ir
from models.errors import ModelManifestError
from models.manifest import load_manifest
from models.pipeline import FacePipeline, int8_calibration, make_detector
from models.quantise import ensure_int8_ir, existing_int8_ir, int8_path, quantise
from models.registry_faces import DistractorImage, distractor_images
from supply.pinned import cache_dir, sha256_file
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
    other = spec.model_copy(update={"preset": "performance"})
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


def _private_cache(tmp_path: Path) -> Path:
    """A cache holding this machine's verified sources and fp32 IRs but no INT8 file, so one is made afresh."""
    shared = cache_dir()
    cache = tmp_path / "cache"
    (cache / "ir").mkdir(parents=True)
    for entry in shared.iterdir():
        if entry.name != "ir":
            (cache / entry.name).symlink_to(entry)
    for ir in (shared / "ir").glob("*"):
        if "-int8-" not in ir.name:
            shutil.copy(ir, cache / "ir" / ir.name)
    return cache


def test_another_instruction_set_makes_the_same_int8_files_as_the_manifests_pin(tmp_path: Path) -> None:
    # oneDNN capped at AVX (no AVX2) rounds the calibration's inference differently: before the pins, SFace's
    # activation ranges moved by up to 1.3 % and both .bin hashes changed (docs/model-card.md).
    cache = _private_cache(tmp_path)
    env = {**os.environ, "RFR_CACHE_DIR": str(cache), "ONEDNN_MAX_CPU_ISA": "AVX"}
    done = subprocess.run([sys.executable, "-m", "models.prepare_int8"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    made = {p.name: sha256_file(p) for p in (cache / "ir").glob("*-int8-*")}
    for name in ("sface_2021dec", "dlib_resnet"):
        spec = load_manifest(name).conversion.int8
        assert spec is not None
        assert spec.xml_sha256 in made.values() and spec.sha256 in made.values(), (name, made)
    assert len(made) == 4


def test_an_int8_file_other_than_the_pinned_one_is_refused_and_not_kept(tmp_path: Path) -> None:
    manifest = load_manifest("dlib_resnet")
    spec = manifest.conversion.int8
    assert spec is not None
    fp32, detect, align, preprocess = int8_calibration(manifest, spec.detector)
    copy = tmp_path / fp32.name
    shutil.copy(fp32, copy)
    shutil.copy(fp32.with_suffix(".bin"), copy.with_suffix(".bin"))
    wrong = manifest.model_copy(update={"conversion": manifest.conversion.model_copy(
        update={"int8": spec.model_copy(update={"sha256": "0" * 64})})})
    with pytest.raises(ModelManifestError, match="not the pinned file"):
        ensure_int8_ir(wrong, copy, detect, align, preprocess)
    assert not list(tmp_path.glob("*-int8-*")) and not list(tmp_path.glob(".quantise-*"))
    # the pinned hash itself is accepted from the same private copy
    made = ensure_int8_ir(manifest, copy, detect, align, preprocess)
    assert sha256_file(made.with_suffix(".bin")) == spec.sha256


def test_pins_that_do_not_fit_the_graph_or_are_damaged_are_refused_with_a_remedy(tmp_path: Path) -> None:
    manifest = load_manifest("dlib_resnet")
    spec = manifest.conversion.int8
    assert spec is not None
    fp32, detect, align, preprocess = int8_calibration(manifest, spec.detector)
    model = quantise(manifest, fp32, detect, align, preprocess, distractor_images())
    pins = int8_pins.load(int8_pins.PINS_DIR / spec.pins)
    dropped = dict(pins)
    dropped.pop(sorted(dropped)[0])
    with pytest.raises(ModelManifestError, match=r"do not fit the graph .* measure them again"):
        int8_pins.apply(model, dropped, manifest.ref)
    name = sorted(pins)[0]
    index = sorted(pins[name])[0]
    reshaped = {**pins, name: {**pins[name], index: np.zeros((1, 2, 3), np.float32)}}
    with pytest.raises(ModelManifestError, match="has shape"):
        int8_pins.apply(model, reshaped, manifest.ref)
    damaged = tmp_path / "pins.json"
    damaged.write_text((int8_pins.PINS_DIR / spec.pins).read_text().replace('"f32le": "', '"f32le": "!', 1))
    with pytest.raises(ModelManifestError, match=r"damaged .* restore it from the repository"):
        int8_pins.load(damaged)
    with pytest.raises(ModelManifestError, match="missing"):
        int8_pins.load(tmp_path / "absent.json")


def test_a_damaged_int8_file_in_the_cache_is_refused_at_load_not_used(tmp_path: Path) -> None:
    manifest = load_manifest("dlib_resnet")
    fp32 = ensure_ir(manifest)
    images = distractor_images()
    made = existing_int8_ir(manifest, fp32, images)
    assert made.exists()  # setup made it
    for source in (fp32, made):
        for suffix in (".xml", ".bin"):
            shutil.copy(source.with_suffix(suffix), tmp_path / source.with_suffix(suffix).name)
    copy = tmp_path / made.name
    assert existing_int8_ir(manifest, tmp_path / fp32.name, images) == copy
    data = bytearray(copy.with_suffix(".bin").read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.with_suffix(".bin").write_bytes(bytes(data))
    with pytest.raises(ModelManifestError, match="not the pinned one: it is damaged"):
        existing_int8_ir(manifest, tmp_path / fp32.name, images)
