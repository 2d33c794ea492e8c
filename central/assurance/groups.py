"""The groups CSV: one row per identity with its sex, ethnicity code and age band.

Header ``identity,sex,ethnicity_code,age_band``. Values use the library's
vocabularies (``library.records``). ``unknown``, an empty cell and, for
ethnicity, ``IC9`` (not stated) all mean *not recorded*: such identities are
counted in a ``...=not_recorded`` group that is reported but never compared.
Anything else is an error naming the line, because a misspelt label would
silently make a wrong group.
"""

from __future__ import annotations

import csv
from pathlib import Path

from central.assurance.harness import NOT_RECORDED
from core.errors import CustodyRfrError
from library.records import AGE_BANDS, ETHNICITY_CODES, SEXES, UNKNOWN

COLUMNS = ("identity", "sex", "ethnicity_code", "age_band")
_ALLOWED = {
    "sex": frozenset(SEXES),
    "ethnicity_code": frozenset(ETHNICITY_CODES) - {"IC9"},
    "age_band": frozenset(AGE_BANDS),
}
_NOT_RECORDED = frozenset({"", UNKNOWN, "IC9"})


class GroupsFileError(CustodyRfrError):
    """The groups CSV cannot be used; the message names the line and the value."""


def read_groups(path: Path) -> dict[str, dict[str, str]]:
    """identity -> {"sex": "F", "ethnicity_code": "not_recorded", "age_band": "25-34"}."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != COLUMNS:
                raise GroupsFileError(f"{path}: the first line must be exactly {','.join(COLUMNS)}")
            groups: dict[str, dict[str, str]] = {}
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(COLUMNS):
                    raise GroupsFileError(f"{path} line {line}: {len(row)} values, expected {len(COLUMNS)}")
                identity, *values = (cell.strip() for cell in row)
                if not identity:
                    raise GroupsFileError(f"{path} line {line}: the identity is empty")
                if identity in groups:
                    raise GroupsFileError(f"{path} line {line}: identity {identity!r} is listed twice")
                groups[identity] = {column: _value(path, line, column, value)
                                    for column, value in zip(COLUMNS[1:], values, strict=True)}
    except (OSError, UnicodeDecodeError) as e:
        raise GroupsFileError(f"{path}: cannot be read ({e})") from e
    return groups


def _value(path: Path, line: int, column: str, value: str) -> str:
    if value in _NOT_RECORDED:
        return NOT_RECORDED
    if value not in _ALLOWED[column]:
        allowed = ", ".join(sorted(_ALLOWED[column]))
        raise GroupsFileError(f"{path} line {line}: {column} {value[:40]!r} is not one of {allowed}, unknown")
    return value
