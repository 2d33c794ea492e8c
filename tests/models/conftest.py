"""Shared fixtures for the model tests: real photos from pinned artifacts and one compiled pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.pipeline import FacePipeline
from supply.pinned import member

DEV_FACES = Path("/work/shared/faces/dev")


def portrait(name: str) -> bytes:
    """A photo from face_recognition's test set (obama.jpg, obama2.jpg, obama3.jpg, biden.jpg)."""
    return member("face-recognition-sdist", f"face_recognition-1.3.0/tests/test_images/{name}").read_bytes()


def group_photo(n: int) -> bytes:
    """A demo group photo from @vladmandic/face-api (1..6)."""
    return member("vladmandic-face-api", f"package/demo/sample{n}.jpg").read_bytes()


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    """BlazeFace + MobileFaceNet (the previous default, kept for evaluation), compiled once for the session.

    Most model tests here pin down that pipeline's measured behaviour; the default pipeline has its
    own fixture (``default_pipeline``, in tests/conftest.py) and tests (test_yunet_sface.py, test_fusion.py).
    """
    return FacePipeline.load(embedder="mobilefacenet_mirror")
