"""Release versions: strict ``X.Y.Z`` compared numerically, so ``1.10.0`` is newer than ``1.9.0``.

Pure: the agent's forward-only rule rests on this comparison, so it accepts
nothing ambiguous (no pre-release tags, no leading zeros, no ``v`` prefix).
"""

from __future__ import annotations

import re
from functools import total_ordering

from firmware.errors import FirmwareError

_SEMVER = re.compile(r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$")


@total_ordering
class Version:
    """A release version; ordered by (major, minor, patch)."""

    __slots__ = ("parts",)

    def __init__(self, text: str) -> None:
        match = _SEMVER.match(text) if isinstance(text, str) else None
        if not match:
            raise FirmwareError(f"{text!r} is not a release version; use MAJOR.MINOR.PATCH, e.g. 1.4.0.")
        self.parts: tuple[int, int, int] = (int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))

    def __repr__(self) -> str:
        return f"Version('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.parts == other.parts

    def __lt__(self, other: Version) -> bool:
        return self.parts < other.parts

    def __hash__(self) -> int:
        return hash(self.parts)
