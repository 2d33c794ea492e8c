"""The desk's face model is a setting: a library built with the fp32 fusion (the default before INT8) serves a desk
set to it, and only it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.runtime import open_desk
from library.errors import SnapshotError
from models.pipeline import FacePipeline
from tests.appliance.conftest import appliance_settings
from tests.models.conftest import portrait

FP32 = "sface_dlib"  # the same fusion in fp32; the default is its INT8 form


def _enrol(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    images = tmp_path / "images"
    for subject, photos in (("S1", ("obama.jpg", "obama2.jpg")), ("S2", ("biden.jpg",))):
        (images / subject).mkdir(parents=True, exist_ok=True)
        for name in photos:
            (images / subject / name).write_bytes(portrait(name))
    return subprocess.run([sys.executable, "-m", "central.enrolment", "enrol", "--images", str(images), "--out",
                           str(tmp_path / "lib.db"), "--key-file", str(tmp_path / "lib.key"), "--no-progress",
                           *extra], capture_output=True, text=True, timeout=600)


def test_a_desk_set_to_the_fp32_model_serves_a_library_built_with_it_and_the_default_desk_refuses_it(
        tmp_path: Path, default_pipeline: FacePipeline) -> None:
    built = _enrol(tmp_path, "--embedder", FP32)
    assert built.returncode == 0, built.stderr
    library = (tmp_path / "lib.db", tmp_path / "lib.key")
    desk = open_desk(appliance_settings(tmp_path / "fp32", library, models={"embedder": FP32}))
    try:
        assert desk.pipeline.embedder_id == "fused-sface-dlib@1"
        probe = desk.pipeline.process(portrait("obama3.jpg"))
        best = desk.library.current.search(probe.template, 3)[0]
        assert best.record.subject_ref == "S1"
    finally:
        desk.close()
    assert default_pipeline.embedder_id == "fused-sface-dlib-int8@1"
    with pytest.raises(SnapshotError, match="fused-sface-dlib@1"):
        open_desk(appliance_settings(tmp_path / "default", library), pipeline=default_pipeline).close()


def test_an_unknown_model_is_refused_by_the_settings_and_by_the_enrolment_command(
        tmp_path: Path, demo_library: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="not a shipped face model"):
        appliance_settings(tmp_path, demo_library, models={"embedder": "arcface"})
    refused = _enrol(tmp_path, "--embedder", "arcface")
    assert refused.returncode == 2 and "not a shipped face model" in refused.stderr
    clustered = _enrol(tmp_path, "--embedder", FP32, "--workers", "2")
    assert clustered.returncode == 2 and "in-process only" in clustered.stderr
    assert not (tmp_path / "lib.db").exists()
