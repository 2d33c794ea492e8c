"""The equitability harness: known answers on hand-built score matrices, the groups CSV, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from central.assurance.__main__ import main
from central.assurance.groups import GroupsFileError, read_groups
from central.assurance.harness import SampleRule, evaluate, searches, wilson

# Four identities, two images each: A and B are group F, C and D group M.
IDS = ["A", "A", "B", "B", "C", "C", "D", "D"]
GROUPS = {"A": {"sex": "F"}, "B": {"sex": "F"}, "C": {"sex": "M"}, "D": {"sex": "M"}}
TINY = SampleRule(min_identities=1, min_mated=1, min_nonmated=1, min_impostor=1)


def small_matrix() -> np.ndarray:
    """Genuine scores A 0.9, B 0.3, C 0.8, D 0.7; two impostor pairs above 0.5 (A1-C1 0.6, A2-D2 0.75)."""
    s = np.zeros((8, 8))
    for i, score in zip((0, 2, 4, 6), (0.9, 0.3, 0.8, 0.7), strict=True):
        s[i, i + 1] = s[i + 1, i] = score
    s[0, 4] = s[4, 0] = 0.6
    s[1, 7] = s[7, 1] = 0.75
    np.fill_diagonal(s, 1.0)
    return s


def test_wilson_matches_published_intervals() -> None:
    low, high = wilson(0, 10)  # type: ignore[misc]
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(5, 10)  # type: ignore[misc]
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) is None


def test_identification_rates_by_hand() -> None:
    overall, groups = evaluate(small_matrix(), IDS, GROUPS, threshold=0.5, rank=10, rule=TINY)
    # Mated: B's two searches miss (0.3 < 0.5). Non-mated: A1, A2, C1 and D2 meet an impostor at >= 0.5.
    assert (overall.fnir.errors, overall.fnir.n) == (2, 8)
    assert (overall.fpir.errors, overall.fpir.n) == (4, 8)
    f, m = groups["sex=F"], groups["sex=M"]
    assert (f.fnir.errors, f.fnir.n, m.fnir.errors, m.fnir.n) == (2, 4, 0, 4)
    assert (f.fpir.errors, f.fpir.n, m.fpir.errors, m.fpir.n) == (2, 4, 2, 4)
    # 1:1 at 0.5: genuine pairs A, B (F) and C, D (M); impostor pairs touching the group: 4 within + 16 across.
    assert (overall.fnmr.errors, overall.fnmr.n, overall.fmr.errors, overall.fmr.n) == (1, 4, 2, 24)
    assert (f.n_genuine, f.n_impostor, f.fmr.errors) == (2, 20, 2)
    assert (m.n_genuine, m.n_impostor, m.fnmr.errors) == (2, 20, 0)
    # 24 impostor pairs cannot resolve a FAR of 1e-3: no TAR is given rather than a meaningless one.
    assert overall.tar is None and overall.to_dict()["tar_at_far_1e-3"] is None


def test_rank_limits_what_counts_as_returned() -> None:
    found = searches(small_matrix(), np.array(IDS), rank=1)
    # D2's mate (0.7) is outranked by A2 (0.75): not returned in a one-candidate list.
    assert np.isneginf(found.mate[7]) and found.mate[6] == 0.7
    overall, groups = evaluate(small_matrix(), IDS, GROUPS, threshold=0.5, rank=1, rule=TINY)
    assert (overall.fnir.errors, groups["sex=M"].fnir.errors) == (3, 1)


def test_small_groups_say_so_and_are_never_flagged() -> None:
    _overall, groups = evaluate(small_matrix(), IDS, GROUPS, threshold=0.5)
    f = groups["sex=F"]
    assert not f.conclusive
    assert any("2 identities, fewer than 10" in reason for reason in f.too_small)
    assert "too small to support a conclusion" in f.statement()
    assert not any(d["flagged"] for d in f.differentials)
    # F's FNIR is twice the overall, but with four searches the intervals overlap: not a finding.
    fnir = next(d for d in f.differentials if d["rate"] == "fnir")
    assert fnir["ratio_to_overall"] == 2.0 and fnir["exceeds_ratio"] and not fnir["intervals_separate"]


def block_matrix(n_per_group: int, genuine_f: float, genuine_m: float) -> tuple[np.ndarray, list[str]]:
    """2 images per identity; F identities' genuine pairs score ``genuine_f``, M ones ``genuine_m``; impostors 0."""
    ids = [f"{sex}{i}" for sex in "FM" for i in range(n_per_group) for _ in range(2)]
    s = np.zeros((len(ids), len(ids)))
    for k in range(0, len(ids), 2):
        s[k, k + 1] = s[k + 1, k] = genuine_f if ids[k].startswith("F") else genuine_m
    np.fill_diagonal(s, 1.0)
    return s, ids


def test_a_real_differential_is_flagged() -> None:
    s, ids = block_matrix(60, genuine_f=0.3, genuine_m=0.9)
    labels = {identity: {"sex": identity[0], "ethnicity_code": "not_recorded"} for identity in set(ids)}
    overall, groups = evaluate(s, ids, labels, threshold=0.5)
    f, m = groups["sex=F"], groups["sex=M"]
    assert (f.fnir.value, m.fnir.value, overall.fnir.value) == (1.0, 0.0, 0.5)
    assert f.conclusive and m.conclusive  # 60 identities, 120 searches, 7,140+ impostor pairs each
    assert [d["rate"] for d in f.differentials if d["flagged"]] == ["fnir"]
    fnmr = next(d for d in f.differentials if d["rate"] == "fnmr")  # shown, never flagged (pairs not independent)
    assert fnmr["exceeds_ratio"] and fnmr["intervals_separate"] and not fnmr["flagged"]
    assert not any(d["flagged"] for d in m.differentials)
    assert "differential to investigate" in f.statement()
    unrecorded = groups["ethnicity_code=not_recorded"]
    assert not unrecorded.recorded and not any(d["flagged"] for d in unrecorded.differentials)


def test_tar_at_far_uses_each_group_s_own_impostors() -> None:
    s, ids = block_matrix(30, genuine_f=0.3, genuine_m=0.9)
    # Eight impostor pairs at 0.6, all between M identities (images 60+ are M).
    for k in range(8):
        a, b = 60 + 2 * k, 62 + 2 * k + 1
        s[a, b] = s[b, a] = 0.6
    labels = {identity: {"sex": identity[0]} for identity in set(ids)}
    overall, groups = evaluate(s, ids, labels, threshold=0.5)
    # Overall: 7,080 impostor pairs allow 7 through; the 8th is at 0.6, so the threshold sits just above it
    # and only M's genuine pairs (0.9) pass.
    assert overall.n_impostor == 7080 and overall.tar_threshold > 0.6  # type: ignore[operator]
    assert (overall.tar.errors, overall.tar.n) == (30, 60)  # type: ignore[union-attr]
    # F's impostors (F-F and F-M) are all 0: its threshold is just above 0 and its genuine 0.3 pass.
    assert groups["sex=F"].tar.value == 1.0 and groups["sex=F"].tar_threshold < 0.01  # type: ignore[union-attr,operator]
    # M's 5,340 impostor pairs allow 5 through; the 6th is at 0.6; M's genuine 0.9 pass.
    assert groups["sex=M"].n_impostor == 5340 and groups["sex=M"].tar.value == 1.0  # type: ignore[union-attr]


def test_groups_csv(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("identity,sex,ethnicity_code,age_band\nA,F,IC3,25-34\nB,unknown,IC9,\n\n")
    assert read_groups(path) == {"A": {"sex": "F", "ethnicity_code": "IC3", "age_band": "25-34"},
                                 "B": {"sex": "not_recorded", "ethnicity_code": "not_recorded",
                                       "age_band": "not_recorded"}}
    path.write_text("identity,sex,ethnicity_code,age_band\nA,F,IC 3,25-34\n")
    with pytest.raises(GroupsFileError, match="line 2: ethnicity_code 'IC 3' is not one of"):
        read_groups(path)
    path.write_text("identity,sex\nA,F\n")
    with pytest.raises(GroupsFileError, match="first line must be exactly"):
        read_groups(path)


def test_cli_refuses_unlabelled_identities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for identity in "AB":
        (tmp_path / "faces" / identity).mkdir(parents=True)
        (tmp_path / "faces" / identity / "1.jpg").write_bytes(b"not decoded: refused before any model loads")
    (tmp_path / "groups.csv").write_text("identity,sex,ethnicity_code,age_band\nA,F,IC1,25-34\n")
    code = main(["evaluate", "--faces", str(tmp_path / "faces"), "--groups", str(tmp_path / "groups.csv"),
                 "--json", str(tmp_path / "out.json")])
    assert code == 2
    assert "have no row in" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.models
def test_cli_on_real_faces(tmp_path: Path, face_photo, capsys: pytest.CaptureFixture[str]) -> None:
    faces = tmp_path / "faces"
    for identity, names in {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "biden": ["biden.jpg"]}.items():
        (faces / identity).mkdir(parents=True)
        for name in names:
            shutil.copy(face_photo(name), faces / identity / name)
    (tmp_path / "groups.csv").write_text("identity,sex,ethnicity_code,age_band\nobama,M,unknown,45-54\n"
                                         "biden,M,unknown,55+\n")
    out = tmp_path / "report.json"
    assert main(["evaluate", "--faces", str(faces), "--groups", str(tmp_path / "groups.csv"),
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    overall = report["overall"]
    # Three mated searches (obama's); four non-mated; 3 genuine pairs and 3 impostor pairs.
    assert (overall["n_mated_searches"], overall["n_nonmated_searches"]) == (3, 4)
    assert (overall["n_genuine"], overall["n_impostor"]) == (3, 3)
    assert overall["fnir"] == 0 and overall["fpir"] == 0
    assert overall["tar_at_far_1e-3"] is None  # three impostor pairs cannot resolve 1e-3
    assert set(report["groups"]) == {"sex=M", "ethnicity_code=not_recorded", "age_band=45-54", "age_band=55+"}
    for group in report["groups"].values():
        assert {"fnir", "fpir", "tar_at_far_1e-3", "n_genuine", "n_impostor"} <= set(group)
        assert "too small to support a conclusion" in group["statement"]
    assert (tmp_path / "report.det.png").read_bytes().startswith(b"\x89PNG")
    assert "too small to support a conclusion" in capsys.readouterr().out
