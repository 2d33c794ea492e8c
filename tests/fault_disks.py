"""A small real file system that can be filled to the last byte, for the disk-full fault tests.

A tmpfs mounted on a folder of the test's own (root only; the tests skip elsewhere): filling it makes
the kernel answer ENOSPC to every process writing there, SQLite and SQLCipher included, without
touching the machine's own disks. ``fill`` writes one file until the kernel refuses; deleting it
gives the space back.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """``path`` as a fresh tmpfs of ``size`` (e.g. "48m") for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write ``folder/filler`` until the file system is full; the file is returned for ``free``."""
    filler = folder / "filler"
    block = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        try:  # the last few bytes a whole block did not fit in
            while True:
                out.write(b"\0" * 512)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    assert os.statvfs(folder).f_bavail == 0, "the file system still has room"
    return filler


def free(filler: Path) -> None:
    filler.unlink()
