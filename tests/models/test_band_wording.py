"""Score bands stated at the library's size: a per-comparison rate times the records searched, in words."""

from __future__ import annotations

import pytest

from models.calibration import (
    ScoreBand,
    band_at_library_size,
    expected_different_people,
    people_at_library_size,
)


def _band(name: str, far: float) -> ScoreBand:
    return ScoreBand(name, "per-comparison wording from the manifest", 0.5, far)


@pytest.mark.parametrize(("far", "records", "words"), [
    (1e-4, 1_000_000, "about 100 different people"),
    (9.9e-5, 1_000_000, "about 99 different people"),
    (0.000999, 1_000_000, "about 1,000 different people"),
    (1e-3, 20_000_000, "about 20,000 different people"),
    (0.009976, 487, "about 5 different people"),  # 4.86, to the nearest person
    (1e-3, 1_200, "about 1 different person"),
    (0.0156, 1_000, "about 16 different people"),
    (1e-4, 1_000, "about 1 different person in every 10 searches"),
    (1e-4, 300, "about 1 different person in every 33 searches"),
    (0.0, 1_000_000, "no different person measured"),
])
def test_people_expected_at_a_library_size(far: float, records: int, words: str) -> None:
    assert people_at_library_size(far, records) == words


def test_expected_people_is_the_rate_times_the_records() -> None:
    assert expected_different_people(1e-4, 1_000_000) == pytest.approx(100)
    with pytest.raises(ValueError, match="records"):
        expected_different_people(1e-4, -1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        expected_different_people(1.5, 10)


def test_band_sentence_names_the_band_and_the_library_size() -> None:
    assert band_at_library_size(_band("strong", 1e-4), 1_000_000) == (
        "Strong similarity: in a search of 1,000,000 records, about 100 different people are expected to "
        "score this high.")
    assert band_at_library_size(_band("moderate", 1e-3), 1_000) == (
        "Moderate similarity: in a search of 1,000 records, about 1 different person is expected to score "
        "this high.")
    assert band_at_library_size(_band("strong", 1e-4), 1_000) == (
        "Strong similarity: in a search of 1,000 records, a different person is expected to score this high "
        "in about 1 search in 10.")
    assert "cannot be estimated" in band_at_library_size(_band("strong", 0.0), 1_000)
