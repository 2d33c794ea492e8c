"""Score bands: thresholds and measured false-accept rates come from the embedder's manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.calibration import BELOW, measure_bands, score_band
from models.errors import ModelManifestError
from models.evaluation.metrics import far_at
from models.manifest import MANIFEST_DIR, load_manifest
from models.pipeline import FacePipeline


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = (MANIFEST_DIR / "mobilefacenet.toml").read_text()
    assert old in text
    path = tmp_path / "mobilefacenet.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("score", "band"), [(0.95, "strong"), (0.5392, "strong"), (0.5, "moderate"),
                                             (0.4663, "moderate"), (0.4, "weak"), (0.1, BELOW), (-1.0, BELOW)])
def test_scores_fall_in_the_manifest_bands(score: float, band: str) -> None:
    assert score_band(score, load_manifest("mobilefacenet")).name == band


def test_each_band_carries_its_measured_false_accept_rate() -> None:
    manifest = load_manifest("mobilefacenet")
    assert manifest.calibration is not None
    bands = [score_band(s, manifest) for s in (0.9, 0.5, 0.4, 0.0)]
    assert [b.far for b in bands] == sorted(b.far for b in bands)  # lower bands let more impostors in
    moderate = bands[1]
    assert moderate.threshold == manifest.calibration.threshold_far_1e_3
    assert moderate.far <= 1e-3
    assert bands[-1].far == 1.0
    assert all(b.label for b in bands)


def test_thresholds_are_per_model_not_fixed(tmp_path: Path) -> None:
    stricter = load_manifest(_edited(tmp_path, "threshold = 0.5392\n", "threshold = 0.9\n"))
    assert score_band(0.6, load_manifest("mobilefacenet")).name == "strong"
    assert score_band(0.6, stricter).name == "moderate"


def test_manifest_without_bands_still_gives_above_or_below_its_threshold(tmp_path: Path) -> None:
    text = (MANIFEST_DIR / "mobilefacenet.toml").read_text()
    path = tmp_path / "placeholder.toml"
    path.write_text(text[:text.index("[[calibration.bands]]")].replace('status = "dev-set"', 'status = "placeholder"'))
    manifest = load_manifest(path)
    assert score_band(0.5, manifest).name == "moderate"
    assert score_band(0.5, manifest).threshold == 0.4663
    assert score_band(0.4, manifest).name == BELOW


@pytest.mark.parametrize(("old", "new", "message"), [
    ("threshold = 0.3596\n", "threshold = 0.6\n", "highest threshold down"),
    ("threshold = -1.0\n", "threshold = 0.1\n", "threshold -1"),
    ('"threshold_far_1e-3" = 0.4663', '"threshold_far_1e-3" = 0.47', "must be one of the band thresholds"),
    ("far = 0.009985\n", "far = 0.00001\n", "lower false-accept rate"),
    ('name = "weak"', 'name = "strong"', "unique"),
])
def test_inconsistent_bands_are_refused_at_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ModelManifestError, match=message) as err:
        load_manifest(_edited(tmp_path, old, new))
    assert "calibration" in str(err.value)


def test_detector_has_no_bands() -> None:
    with pytest.raises(ValueError, match="no \\[calibration\\]"):
        score_band(0.5, load_manifest("blazeface_full_range"))


def test_measured_bands_meet_their_target_rates() -> None:
    rng = np.random.default_rng(7)
    impostor = rng.normal(0.0, 0.15, 100_000)
    genuine = rng.normal(0.7, 0.1, 5_000)
    bands = measure_bands(genuine, impostor)
    assert [b.name for b in bands] == ["strong", "moderate", "weak", BELOW]
    for band, target in zip(bands, (1e-4, 1e-3, 1e-2, 1.0), strict=True):
        assert band.far <= target
        assert band.far == far_at(impostor, band.threshold)  # measured at the stored, rounded threshold
        assert round(band.threshold, 4) == band.threshold
    # Normal impostors with sd 0.15: the 1e-3 tail starts near 3.1 sd.
    assert bands[1].threshold == pytest.approx(0.15 * 3.09, abs=0.02)


@pytest.mark.models
def test_real_pairs_land_in_sensible_bands(pipeline: FacePipeline, face_photo) -> None:
    def template(name: str) -> np.ndarray:
        return pipeline.process(Path(face_photo(name)).read_bytes()).template

    obama, obama2, biden = template("obama.jpg"), template("obama2.jpg"), template("biden.jpg")
    assert score_band(float(obama @ obama2), pipeline.embedder_manifest).name == "strong"  # measured 0.81
    assert score_band(float(obama @ biden), pipeline.embedder_manifest).name == BELOW  # measured -0.16
