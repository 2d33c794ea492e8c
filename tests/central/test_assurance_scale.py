"""central.assurance reports the same 1:N figures at a force's scale as models.evaluate, from the same module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from central.assurance.__main__ import main
from models import evaluate
from models.evaluation.identification import identification_report
from models.pipeline import DEFAULT_EMBEDDER, FacePipeline
from tests.models.conftest import DEV_FACES
from tests.models.test_identification import DISTRACTOR_FACES, _dev_subset


@pytest.mark.models
@pytest.mark.skipif(not DEV_FACES.is_dir(), reason="labelled evaluation set not present")
def test_assurance_reports_the_projected_figures_models_evaluate_gives(tmp_path: Path, capsys) -> None:
    faces = _dev_subset(tmp_path / "faces")
    groups = tmp_path / "groups.csv"
    groups.write_text("identity,sex,ethnicity_code,age_band\n"
                      + "".join(f"{p.name},unknown,unknown,unknown\n" for p in sorted(faces.iterdir())))
    out = tmp_path / "report.json"
    assert main(["evaluate", "--faces", str(faces), "--groups", str(groups), "--json", str(out),
                 "--resamples", "10"]) == 0
    report = json.loads(out.read_text())
    assert list(report["projected"]) == ["100000", "1000000", "20000000"]
    assert {"fnir_at_fpir_0.003", "fnir_at_fpir_0.003_ci", "fnir_at_fpir_0.01", "fnir_at_fpir_0.01_ci",
            "mate_rank_median", "mate_rank_median_ci"} <= set(report["projected"]["1000000"])
    # Distractors go through the embedder's own detector (YuNet for the fused default), as in models.evaluate.
    assert report["detector"] == FacePipeline.load().detector_id
    assert report["direct_check"]["distractors"] == DISTRACTOR_FACES[report["detector"]]
    assert "1:N projection" in capsys.readouterr().out

    same = evaluate.evaluate(faces, [DEFAULT_EMBEDDER], resamples=10)  # the CLI's default embedder too
    assert same["embedder"] == report["embedder"]
    assert same["detector"] == report["detector"]
    assert same["projected"] == report["projected"]
    assert same["direct_check"] == report["direct_check"]
    assert same["projection_model"]["tail"] == report["projection_model"]["tail"]


def test_too_few_faces_for_a_projection_say_why() -> None:
    """Six images of three people cannot support a tail fit: the report says so instead of inventing figures."""
    rng = np.random.default_rng(1)
    templates = rng.normal(size=(6, 8))
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    result = identification_report(templates, list("AABBCC"), np.empty((0, 8)), {}, resamples=5)
    assert result["projected"] == {}
    assert "impostor pairs above the tail threshold" in result["projection_model"]["error"]
    assert result["direct_check"]["gallery_size_median"] == 5  # four non-mates and the mate
