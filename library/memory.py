"""How much memory the machine can give a background job now: the kernel's own estimate.

Compaction picks what it can afford from this (``library.store.LibraryStore.compaction_mode``):
a desk that cannot hold a second copy of its base index beside the serving one must not try.
"""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = MEMINFO) -> int:
    """``MemAvailable`` (memory that can be used without swapping), or 0 when the kernel does not say."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
