"""Replays the fuzzing corpus and every saved crash input through the fuzz targets' own entry points.

``bench/fuzz.py`` defines one entry point per parser and the error family it may raise; here each file under
``tests/fuzz/corpus/<target>/`` and ``tests/fuzz/crashes/<target>/`` goes through the same ``check()``, which
lets only that family pass. A crash input is kept once its bug is fixed, so the bug cannot come back unseen.
docs/fuzzing.md says how the corpus was made.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz import CORPUS, CRASHES, SEEDS, check


def _inputs(root: Path) -> list[tuple[str, Path]]:
    return [(folder.name, f) for folder in sorted(root.iterdir()) if folder.is_dir()
            for f in sorted(folder.iterdir()) if f.is_file()]


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_every_corpus_input_is_parsed_or_refused_with_the_documented_error(target: str) -> None:
    files = sorted((CORPUS / target).iterdir())
    assert files, f"no corpus for {target}: run python -m bench.fuzz seed"
    for path in files:
        check(target, path.read_bytes())


@pytest.mark.parametrize(("target", "path"), _inputs(CRASHES), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_saved_crash_inputs_are_now_parsed_or_refused(target: str, path: Path) -> None:
    check(target, path.read_bytes())


def test_every_target_has_seeds_from_the_project_encoders() -> None:
    for target, seeds in SEEDS.items():
        made = seeds()
        assert made, target
        for data in made:
            check(target, data)
