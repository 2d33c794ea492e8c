"""Times as the desk shows them (local, zone named) and as exports carry them (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.display_time import NOT_RECORDED, UnknownTimeZoneError, local_time, utc_iso, zone

LONDON = zone("Europe/London")


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_winter_time_in_london_is_gmt_with_the_day_in_words():
    assert local_time(at(2026, 12, 4, 20, 41, 7), LONDON) == "4 December 2026, 20:41 GMT"


def test_summer_time_names_bst_and_moves_the_clock():
    assert local_time(at(2026, 7, 1, 23, 30), LONDON) == "2 July 2026, 00:30 BST"


def test_another_zone_is_named_too():
    assert local_time(at(2026, 12, 4, 20, 41), zone("Europe/Paris")) == "4 December 2026, 21:41 CET"


def test_exports_carry_utc_to_the_second():
    assert utc_iso(at(2026, 7, 1, 23, 30, 5)) == "2026-07-01T23:30:05Z"


def test_a_missing_moment_says_so():
    assert local_time(None, LONDON) == NOT_RECORDED and utc_iso(None) == ""


def test_an_unknown_zone_is_refused_with_what_to_write():
    with pytest.raises(UnknownTimeZoneError, match="IANA name such as 'Europe/London'"):
        zone("Middle/Earth")
