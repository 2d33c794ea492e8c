"""Moments as people read them and as exports carry them.

The device stores every moment as POSIX seconds (UTC). Staff at the desk read a
local time with its zone named ("4 December 2026, 20:41 GMT"), because an
unnamed time is ambiguous twice a year and across desks in different places;
exports carry UTC in ISO 8601, which a spreadsheet or a script reads the same
way anywhere. One module, so every page and export says the same thing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import CustodyRfrError

#: The zone a desk shows times in unless its configuration names another (custody in England and Wales).
DEFAULT_ZONE = "Europe/London"
NOT_RECORDED = "Not recorded"


class UnknownTimeZoneError(CustodyRfrError):
    """A configured zone name the system's time-zone database does not know."""


def zone(name: str) -> tzinfo:
    """The IANA zone called ``name``; refused with a message a desk administrator can act on."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise UnknownTimeZoneError(f"Unknown time zone {name!r}: use an IANA name such as 'Europe/London'.") from e


def _moment(seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(float(seconds), UTC)


def long_date(day: date) -> str:
    """'3 December 2026': a calendar day in words, as every desk page writes one (no 03/12 versus 12/03)."""
    return f"{day.day} {day:%B %Y}"


def local_time(seconds: float | None, where: tzinfo) -> str:
    """'4 December 2026, 20:41 GMT': the day in words (no 04/12 versus 12/04 confusion) and the zone's name."""
    moment = _moment(seconds)
    if moment is None:
        return NOT_RECORDED
    local = moment.astimezone(where)
    return f"{local.day} {local:%B %Y, %H:%M} {local.tzname()}"


def utc_iso(seconds: float | None) -> str:
    """'2026-12-04T20:41:07Z': the same moment for an export, to the second, in UTC."""
    moment = _moment(seconds)
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
