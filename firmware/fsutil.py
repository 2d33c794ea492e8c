"""Crash-safe file primitives: a reader sees the old file or the new one, never a mixture."""

from __future__ import annotations

import os
from pathlib import Path

from core.files import atomic_write, fsync_dir

__all__ = ["atomic_symlink", "atomic_write", "fsync_dir"]


def atomic_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step (symlink to a temporary name, then os.replace)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)
