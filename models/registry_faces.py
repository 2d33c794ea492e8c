"""Face photos the project can obtain from pinned registry packages, and only from them.

Two users: the 1:N direct check pads a library with these faces as distractors
(``models/evaluation/distractors.py``), and INT8 quantisation calibrates on them
(``models/quantise.py``), so the development set is never what a model was
calibrated on. Nothing may come from a model hub: the group photos and portraits in
npm ``@vladmandic/face-api``'s demo folder (pinned in ``supply/catalogue.toml``) and
the portrait matplotlib ships as sample data (pinned by version and hash in
``requirements.lock``).

Left out on purpose, with the reason beside each in ``EXCLUDED``: the
face_recognition sdist's test photos show Barack Obama and Joe Biden, who are
identities of the development set, and one demo screenshot repeats the six group photos.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from supply import pinned

FACE_API = "vladmandic-face-api"
FACE_API_IMAGES = (*(f"package/demo/sample{i}.jpg" for i in range(1, 7)), "package/demo/facemesh.png",
                   "package/demo/screenshot-webcam.png")
MATPLOTLIB_SAMPLE = "grace_hopper.jpg"
EXCLUDED = {
    "face-recognition-sdist: face_recognition-1.3.0/tests/test_images/*":
        "Barack Obama and Joe Biden, identities of the development set: mates, not distractors",
    f"{FACE_API}: package/demo/screenshot-images.png": "repeats the six group photos (the same faces again)",
}


@dataclass(frozen=True)
class DistractorImage:
    """One source image: where it came from and its bytes."""

    source: str
    data: bytes


def distractor_images() -> list[DistractorImage]:
    """The source images, verified against their pins; a package that cannot be had is an error, not a skip."""
    images = [DistractorImage(f"{FACE_API}: {name}", pinned.member(FACE_API, name).read_bytes())
              for name in FACE_API_IMAGES]
    # Where matplotlib.cbook.get_sample_data looks, found without importing matplotlib (a third of a second at
    # every INT8 pipeline load, which names its files by these images).
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise pinned.SupplyError("matplotlib is not installed, so its sample portrait cannot be had: "
                                 "run scripts/setup.sh.")
    sample = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / MATPLOTLIB_SAMPLE
    images.append(DistractorImage(f"matplotlib sample data: {MATPLOTLIB_SAMPLE}", sample.read_bytes()))
    return images


def images_digest(images: list[DistractorImage]) -> str:
    """One hash of every image's bytes in order: part of the name of anything derived from them."""
    digest = hashlib.sha256()
    for item in images:
        digest.update(hashlib.sha256(item.data).digest())
    return digest.hexdigest()
