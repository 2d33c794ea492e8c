"""What a library version holds, as one hash: the identity deltas and TUF metadata refer to.

The content digest covers, for every record in order of ``source``: the
source, its metadata, its template bytes and its thumbnail's hash; plus the
embedder id and dimension. It does not cover ``record_id`` (local to one file)
or the file's bytes (SQLCipher salts and pads differently each time), so a
snapshot built by a full enrolment and one produced by applying deltas have
the same digest exactly when they hold the same things.

Each record's digest is computed when it is written and stored beside it, so
the content digest of millions of records is a pass over 32-byte values, not
over every template and thumbnail; ``recompute_content_digest`` does the full
pass for audits and tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from library.records import ReferenceRecord

_RECORD_DOMAIN = b"custody-rfr/library-record/v1\n"
_CONTENT_DOMAIN = b"custody-rfr/library-content/v1\n"


class DigestedRecords(Protocol):
    """What the content digest reads from a library version: ``library.snapshot.Snapshot`` has this shape,
    and the snapshot module builds on this one, so the shape is stated here."""

    embedder_id: str
    dim: int

    def record_digests(self) -> Iterator[tuple[str, bytes]]:
        """(source, stored record digest) in source order."""
        ...

    def entries(self) -> Iterator[tuple[ReferenceRecord, np.ndarray, bytes, bytes]]:
        """(record, template, thumbnail, stored record digest) in source order."""
        ...


def _field(value: str | bytes | None) -> bytes:
    """Length-prefixed, so no two different field lists hash the same bytes; None differs from ''."""
    if value is None:
        return b"\x00"
    raw = value.encode() if isinstance(value, str) else value
    return b"\x01" + len(raw).to_bytes(8, "big") + raw


def record_digest(record: ReferenceRecord, template: np.ndarray, thumbnail_jpeg: bytes) -> bytes:
    h = hashlib.sha256(_RECORD_DOMAIN)
    for value in (record.source, record.subject_ref, record.sex, record.ethnicity_code,
                  record.date_of_birth.isoformat() if record.date_of_birth else None, record.age_band,
                  record.image_date.isoformat() if record.image_date else None, record.quality):
        h.update(_field(value))
    h.update(_field(np.asarray(template, dtype="<f4").reshape(-1).tobytes()))
    h.update(_field(hashlib.sha256(thumbnail_jpeg).digest()))
    return h.digest()


def combine(embedder_id: str, dim: int, entries: Iterable[tuple[str, bytes]]) -> str:
    """The content digest from (source, record digest) pairs, which must come sorted by source."""
    h = hashlib.sha256(_CONTENT_DOMAIN)
    h.update(_field(embedder_id) + dim.to_bytes(4, "big"))
    count = 0
    previous: str | None = None
    for source, digest in entries:
        if previous is not None and source <= previous:
            raise ValueError(f"records are not in source order at {source!r}")
        h.update(_field(source) + _field(digest))
        previous = source
        count += 1
    h.update(count.to_bytes(8, "big"))
    return h.hexdigest()


def content_digest(snapshot: DigestedRecords) -> str:
    """The digest from the stored record digests (fast; trusts what the writer stored)."""
    return combine(snapshot.embedder_id, snapshot.dim, snapshot.record_digests())


def recompute_content_digest(snapshot: DigestedRecords) -> str:
    """The digest from every record's actual content; raises if a stored record digest is wrong."""
    def entries() -> Iterable[tuple[str, bytes]]:
        for record, template, thumbnail, stored in snapshot.entries():
            actual = record_digest(record, template, thumbnail)
            if actual != stored:
                raise ValueError(f"record {record.source!r} does not match its stored digest")
            yield record.source, actual

    return combine(snapshot.embedder_id, snapshot.dim, entries())
