"""The content digest names what a library holds, not how or in which order it was written."""

from pathlib import Path

import numpy as np

from library.digest import content_digest, recompute_content_digest
from library.snapshot import Snapshot, new_key
from tests.library.builders import build, record, unit_vectors


def _digest(path: Path, key: bytes) -> str:
    snap = Snapshot.open(path, key)
    try:
        assert content_digest(snap) == recompute_content_digest(snap) == snap.digest
        return snap.digest
    finally:
        snap.close()


def test_same_content_in_another_order_and_file_has_the_same_digest(tmp_path: Path) -> None:
    key, vectors = new_key(), unit_vectors(50)
    forward = build(tmp_path / "a.db", key, dict(enumerate(vectors)))
    backward = build(tmp_path / "b.db", key, dict(reversed(list(enumerate(vectors)))))
    assert forward.read_bytes() != backward.read_bytes()
    assert _digest(forward, key) == _digest(backward, key)


def test_any_change_of_metadata_template_or_membership_changes_the_digest(tmp_path: Path) -> None:
    key, vectors = new_key(), unit_vectors(20)
    items = dict(enumerate(vectors))
    digests = {_digest(build(tmp_path / "base.db", key, items), key)}
    moved = vectors[3] + 0.01
    variants = {
        "sex": {"changed": {3: record(3, sex="F" if record(3).sex == "M" else "M")}},
        "ethnicity": {"changed": {3: record(3, ethnicity_code=None)}},
        "quality": {"changed": {3: record(3, quality=None)}},
        "age band": {"changed": {3: record(3, age_band="18-24")}},
        "template": {"items": {**items, 3: moved / np.linalg.norm(moved)}},
        "removed": {"items": {i: v for i, v in items.items() if i != 3}},
    }
    for name, variant in variants.items():
        path = build(tmp_path / f"{name}.db", key, variant.get("items", items), changed=variant.get("changed"))
        digests.add(_digest(path, key))
    assert len(digests) == 1 + len(variants)
