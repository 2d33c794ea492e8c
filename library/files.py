"""Durable file operations: what makes "the switch is atomic" survive a power cut.

``os.replace`` is atomic, but without an fsync of the file before it and of the
directory after it, a crash can leave the new name pointing at an empty or
half-written file. Every rename the library store relies on goes through here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.files import fsync_dir, fsync_file

__all__ = ["copy_ciphertext", "durable_replace", "durable_write_text", "fsync_dir", "fsync_file"]


def durable_replace(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` so that after a crash ``dst`` is either the old or the whole new file."""
    fsync_file(src)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def durable_write_text(path: Path, text: str) -> None:
    """Replace a small file (a pointer) atomically: temp name, fsync, rename, fsync the directory."""
    # A fixed temporary name, so LibraryStore's recovery knows exactly what an interrupted write leaves.
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def copy_ciphertext(src: Path, dst: Path) -> None:
    """Copy an encrypted database byte for byte: the copy is as unreadable without the key as the original."""
    shutil.copyfile(src, dst)
    fsync_file(dst)
