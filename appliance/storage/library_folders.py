"""Where each library the desk holds lives on disk, and how a library's files are destroyed.

    <data_dir>/library/<library_id>/   one ``library.store.LibraryStore`` per library (versions/, current)

A desk from before several libraries kept its one library directly in ``<data_dir>/library`` (versions/ and
current there); ``migrate_legacy`` moves it into the folder of its library id when the desk starts: versions
first, then the pointer, each one rename, so a crash between them is finished at the next start and the
store never sees versions without their pointer (its recovery would remove them).

``shred`` overwrites every file of a folder with zeros, fsyncs it, removes it and the folder, and reports
what it destroyed: a proof of deletion starts from it (``appliance.services.library_expiry``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.files import fsync_dir

logger = logging.getLogger(__name__)

_LEGACY = ("versions", "current")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CHUNK = 1 << 20


def library_folder(root: Path, library_id: str) -> Path:
    if not _ID.fullmatch(library_id) or library_id in _LEGACY:
        raise ValueError(f"library id {library_id!r} cannot name a folder")
    return Path(root) / library_id


def migrate_legacy(root: Path, library_id: str) -> bool:
    """Move a single-library store at ``root`` into ``root/<library_id>``; True if anything moved."""
    root = Path(root)
    target = library_folder(root, library_id)
    moved = False
    if (root / "current").exists() or ((root / "versions").is_dir() and any((root / "versions").iterdir())):
        target.mkdir(parents=True, exist_ok=True)
        if (root / "versions").is_dir():
            if (target / "versions").exists():
                os.rmdir(target / "versions")  # made empty by a LibraryStore opened before a crash
            os.rename(root / "versions", target / "versions")
            moved = True
        if (root / "current").exists():
            os.rename(root / "current", target / "current")
            moved = True
        fsync_dir(target)
        fsync_dir(root)
    elif (root / "versions").is_dir():
        os.rmdir(root / "versions")  # an empty legacy folder
    for leftover in ("current.tmp", ".lock"):
        (root / leftover).unlink(missing_ok=True)
    if moved:
        logger.info("library store moved into %s (one folder per library)", target)
    return moved


def held_ids(root: Path) -> list[str]:
    """Library ids with a folder under ``root`` (whether or not a version is installed there yet)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _ID.fullmatch(p.name) and p.name not in _LEGACY)


def _marker(root: Path, library_id: str) -> Path:
    return Path(root) / f"{library_id}.destroyed"


def mark_destroyed(root: Path, library_id: str, reason: str) -> None:
    """A plain marker (no secret) saying the desk destroyed this library: the provisioned one is then never
    installed again from the files settings name, even if they are restored."""
    path = _marker(root, library_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason + "\n")
    fsync_dir(path.parent)


def is_destroyed(root: Path, library_id: str) -> bool:
    return _marker(root, library_id).exists()


@dataclass(frozen=True)
class ShreddedFile:
    name: str  # relative to the data folder, for the audit event (no content)
    bytes: int


def shred_file(path: Path, base: Path) -> ShreddedFile | None:
    """Overwrite ``path`` with zeros to its full length, fsync, unlink; None if it was not there."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    with open(path, "r+b") as fh:
        left = size
        zeros = bytes(_CHUNK)
        while left > 0:
            n = min(left, _CHUNK)
            fh.write(zeros[:n])
            left -= n
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    try:
        name = str(path.relative_to(base))
    except ValueError:
        name = path.name
    return ShreddedFile(name, size)


def shred(folder: Path, base: Path) -> list[ShreddedFile]:
    """Overwrite and remove every file under ``folder``, then the folder itself."""
    folder = Path(folder)
    if not folder.exists():
        return []
    done = []
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            shredded = shred_file(path, base)
            if shredded is not None:
                done.append(shredded)
        elif path.is_symlink():
            path.unlink()
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        path.rmdir()
    folder.rmdir()
    fsync_dir(folder.parent)
    return sorted(done, key=lambda f: f.name)


# --- a damaged library replaced by a fresh copy from central ----------------------------------------------
#
#     <root>/.repair-<library_id>/    the fresh copy, installed and verified in a store of its own
#     <root>/.damaged-<library_id>/   the damaged folder, moved aside and then shredded
#
# Neither name is a library id (ids start with a letter or digit), so ``held_ids`` never serves either. A crash
# between the two renames leaves no folder under the id and a complete repair folder: ``finish_repairs`` ends
# the swap at the next start. The damaged folder is never moved back: a damaged file is never a base again.


def repair_folder(root: Path, library_id: str) -> Path:
    """Where a fresh copy of ``library_id`` is installed before it replaces the damaged one."""
    return Path(root) / f".repair-{library_folder(root, library_id).name}"


def _damaged_folder(root: Path, library_id: str) -> Path:
    return Path(root) / f".damaged-{library_folder(root, library_id).name}"


def swap_in_repaired(root: Path, library_id: str, *, on_stage: Callable[[str], None] | None = None) -> None:
    """Put the repair folder in place of the library's folder (two renames, made durable together), then shred
    the damaged folder. Called once the fresh copy in ``repair_folder`` is installed and verified.

    ``on_stage`` is a test seam (called "moved-aside" between the renames and "swapped" before the shred) so a
    test can kill the process there; production code never sets it."""
    stage = on_stage or (lambda _name: None)
    folder, fresh, damaged = library_folder(root, library_id), repair_folder(root, library_id), \
        _damaged_folder(root, library_id)
    if damaged.exists():
        shred(damaged, Path(root))
    if folder.exists():
        os.rename(folder, damaged)
        stage("moved-aside")
    os.rename(fresh, folder)
    fsync_dir(Path(root))
    stage("swapped")
    shred(damaged, Path(root))
    logger.info("library %s: the damaged copy is replaced by the fresh one from central", library_id)


def finish_repairs(root: Path) -> None:
    """At start: finish a swap a crash cut (repair folder complete, library folder gone, library not destroyed);
    drop a repair never completed (the page check finds the damage again and central is asked again); shred
    damaged folders left behind."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith(".repair-"):
            library_id = path.name.removeprefix(".repair-")
            # A library destroyed meanwhile (expiry, withdrawal) is never brought back by a cut repair.
            if (not library_folder(root, library_id).exists() and (path / "current").exists()
                    and not is_destroyed(root, library_id)):
                os.rename(path, library_folder(root, library_id))
                fsync_dir(root)
                logger.warning("library %s: finished replacing a damaged copy cut by a restart", library_id)
            else:
                shred(path, root)
        elif path.name.startswith(".damaged-"):
            shred(path, root)
