"""Byte-level edits of a valid encoding, for the property tests of every parser (wire formats, images)."""

from __future__ import annotations


def apply_edits(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Each edit is (kind, position, byte): kind 0 overwrites, 1 inserts, 2 deletes; positions wrap."""
    out = bytearray(data)
    for kind, where, value in edits:
        where %= len(out) + 1
        if kind == 0 and where < len(out):
            out[where] = value
        elif kind == 1:
            out.insert(where, value)
        elif where < len(out):
            del out[where]
    return bytes(out)
