"""Search central's files for a probe's bytes: the database and its WAL, the probe vault, everything under a folder.

Central's SQLite database is not encrypted, so a raw search of the file and its WAL sees every live row,
freed page and slack; the vault's files are searched raw too (they must hold ciphertext only). Needles are
byte runs from the middle of the image (headers are shared with other JPEGs), of its ciphertext and the key.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path


def runs(data: bytes, width: int = 24, count: int = 6) -> list[bytes]:
    """Byte runs spread through the middle of ``data``."""
    start, stop = len(data) // 4, 3 * len(data) // 4
    step = max(1, (stop - start - width) // count)
    return [data[i:i + width] for i in range(start, stop - width, step)][:count]


def encodings(needles: list[bytes]) -> list[bytes]:
    """The needles as they would appear in JSON or a log: raw, hex and base64 (aligned three ways)."""
    out = list(needles)
    for n in needles:
        out.append(n.hex().encode())
        for shift in range(3):
            out.append(base64.b64encode(n[shift:])[4:28])
    return out


def new_temp_files_holding(needles: list[bytes], since: float) -> list[str]:
    """Files in the temp directory written since ``since`` that hold any needle (as the desk's proof searches)."""
    wanted = encodings(needles)
    found = []
    for folder, _, names in os.walk(tempfile.gettempdir()):
        for name in names:
            path = Path(folder) / name
            try:
                recent = path.is_file() and path.stat().st_mtime >= since and path.stat().st_size < 200 * 2**20
                if recent and any(n in path.read_bytes() for n in wanted):
                    found.append(str(path))
            except OSError:
                continue
    return found


def text_holding(needles: list[bytes], text: str) -> bool:
    """Whether log text holds any needle, raw (as latin-1), in hex or in base64."""
    return any(n.decode("latin-1") in text for n in needles) or any(
        e.decode("ascii", "replace") in text for e in encodings(needles)[len(needles):])


def files_holding(needles: list[bytes], *folders: Path) -> list[str]:
    """Every file under ``folders`` that holds any needle (in any of its encodings)."""
    wanted = encodings(needles)
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                blob = path.read_bytes()
                if any(n in blob for n in wanted):
                    found.append(str(path))
    return found
