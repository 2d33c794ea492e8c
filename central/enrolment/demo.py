"""A demo import folder built only from registry packages, so a fresh machine can
show enrolment and search end to end without anyone's real custody images.

- ``DEMO-OBAMA`` (obama.jpg, obama2.jpg) and ``DEMO-BIDEN`` (biden.jpg) from the
  face_recognition sdist's test images; obama3.jpg is deliberately left out so it
  can be the probe that should find DEMO-OBAMA.
- Every sizeable face in @vladmandic/face-api's group photos, cropped with a
  margin, as its own distractor subject ``DEMO-Fnnn``: a library of one person
  per image would make every search look perfect.
- Optionally a labelled evaluation set (``<identity>/<image>``): all but the last
  image of each identity as ``DEV-<identity>``, the last kept back as a probe.
  Such sets are for internal evaluation only; the output folder must never be
  committed.
"""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from central.enrolment.enrol import CSV_HEADER, EnrolError
from supply import pinned

logger = logging.getLogger(__name__)

_FR_KEY = "face-recognition-sdist"
_FR_DIR = "face_recognition-1.3.0/tests/test_images/"
_GROUP_KEY = "vladmandic-face-api"
_GROUP_PHOTOS = [f"package/demo/sample{i}.jpg" for i in range(1, 7)]
# (subject_ref, images, sex, date_of_birth): public facts only; ethnicity is never guessed from a face.
_NAMED = [
    ("DEMO-OBAMA", ["obama.jpg", "obama2.jpg"], "M", "1961-08-04"),
    ("DEMO-BIDEN", ["biden.jpg"], "M", "1942-11-20"),
]
PROBES = ["obama3.jpg"]
UNKNOWN = "unknown"
CROP_MARGIN = 0.5  # of the face box's longer side, each side: the detector needs context around a face
MIN_FACE_PX = 40   # smaller faces make useless reference images
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class DemoImport:
    """What was written: the folder to enrol, its CSV, and the probe images kept out of it."""

    images_dir: Path
    csv_path: Path
    probes: list[Path]
    subjects: int
    images: int


def _crop(image: np.ndarray, x: float, y: float, w: float, h: float) -> np.ndarray:
    side = max(w, h) * (1 + 2 * CROP_MARGIN)
    cx, cy = x + w / 2, y + h / 2
    rows, cols = image.shape[:2]
    x0, y0 = max(round(cx - side / 2), 0), max(round(cy - side / 2), 0)
    x1, y1 = min(round(cx + side / 2), cols), min(round(cy + side / 2), rows)
    return image[y0:y1, x0:x1]


def _group_faces(out: Path, rows: list[list[str]]) -> int:
    """Crop each face of the group photos into its own subject folder; returns images written."""
    from models.image import decode_image
    from models.pipeline import FacePipeline

    pipeline = FacePipeline.load()
    n = 0
    for name in _GROUP_PHOTOS:
        image = decode_image(pinned.member(_GROUP_KEY, name).read_bytes())
        faces = sorted(pipeline.detect(image), key=lambda f: (f.y, f.x))
        for face in faces:
            if min(face.w, face.h) < MIN_FACE_PX:
                continue
            n += 1
            subject = f"DEMO-F{n:03d}"
            ok, jpeg = cv2.imencode(".jpg", _crop(image, face.x, face.y, face.w, face.h),
                                    [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise EnrolError(f"Could not encode a face cropped from {name} as JPEG.")
            (out / subject).mkdir()
            (out / subject / "face.jpg").write_bytes(jpeg.tobytes())
            rows.append([subject, UNKNOWN, UNKNOWN, "", ""])
    return n


def _dev_faces(faces_dir: Path, out: Path, rows: list[list[str]], probes_dir: Path) -> tuple[int, list[Path]]:
    """All but the last image of each identity into ``DEV-<identity>``; the last is a probe."""
    images, probes = 0, []
    for identity in sorted(p for p in faces_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in identity.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if len(files) < 2:
            continue
        subject = f"DEV-{identity.name}"
        (out / subject).mkdir()
        for src in files[:-1]:
            shutil.copyfile(src, out / subject / src.name)
            images += 1
        probe = probes_dir / f"{subject}{files[-1].suffix.lower()}"
        shutil.copyfile(files[-1], probe)
        probes.append(probe)
        rows.append([subject, UNKNOWN, UNKNOWN, "", ""])
    return images, probes


def build_demo_import(out: Path, faces_dir: Path | None = None) -> DemoImport:
    """Write ``out/images/<subject>/...``, ``out/subjects.csv`` and ``out/probes/``.

    ``out`` must not exist yet or be empty: a demo folder is never merged into
    another import by accident.
    """
    if out.exists() and any(out.iterdir()):
        raise EnrolError(f"{out} already has files in it; choose a new or empty folder.")
    if faces_dir is not None and not faces_dir.is_dir():
        raise EnrolError(f"The faces folder {faces_dir} does not exist.")
    images_dir, probes_dir = out / "images", out / "probes"
    images_dir.mkdir(parents=True)
    probes_dir.mkdir()
    rows: list[list[str]] = []
    images = 0
    for subject, files, sex, dob in _NAMED:
        (images_dir / subject).mkdir()
        for name in files:
            shutil.copyfile(pinned.member(_FR_KEY, _FR_DIR + name), images_dir / subject / name)
            images += 1
        rows.append([subject, sex, UNKNOWN, dob, ""])
    probes = []
    for name in PROBES:
        probe = probes_dir / name
        shutil.copyfile(pinned.member(_FR_KEY, _FR_DIR + name), probe)
        probes.append(probe)
    images += _group_faces(images_dir, rows)
    if faces_dir is not None:
        dev_images, dev_probes = _dev_faces(faces_dir, images_dir, rows, probes_dir)
        images += dev_images
        probes += dev_probes
    csv_path = out / "subjects.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    logger.info("demo import at %s: %d subjects, %d images", out, len(rows), images)
    return DemoImport(images_dir, csv_path, probes, subjects=len(rows), images=images)
