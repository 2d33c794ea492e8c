"""Enrol a folder of reference images into an encrypted library snapshot.

The import folder is ``<subject_ref>/<image>``: one folder per person, as custody
records are usually exported. Each image is processed on its own, and one that
cannot be used (not an image, no face, unreadable) is reported with a reason and
skipped, so a bad file among a hundred thousand never stops the run. An image
with several faces is enrolled with the pipeline's chosen face but flagged,
because it may have enrolled the wrong person.

The snapshot key is created here and written to a key file with owner-only
permissions; the snapshot itself never holds a template or thumbnail unencrypted.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import CustodyRfrError
from library.records import ReferenceRecord
from library.snapshot import SnapshotWriter, new_key, write_key_file

logger = logging.getLogger(__name__)

CSV_HEADER = ("subject_ref", "sex", "ethnicity_code", "date_of_birth", "image_date")
_MAX_SUBJECT_REF = 100


class EnrolError(CustodyRfrError):
    """The enrolment as a whole cannot go ahead (bad arguments, bad CSV, existing output)."""


class _Face(Protocol):
    template: np.ndarray
    thumbnail: bytes
    faces: list[Any]


class Pipeline(Protocol):
    """What enrolment needs from ``models.pipeline.FacePipeline``."""

    embedder_id: str
    dim: int

    def process(self, data: bytes, face_index: int | None = None) -> _Face: ...


@dataclass(frozen=True)
class SubjectMeta:
    """One CSV row: what is known about a subject, beyond their images."""

    sex: str | None = None
    ethnicity_code: str | None = None
    date_of_birth: date | None = None
    image_date: date | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image; ``reason`` is set when it was skipped or flagged."""

    source: str
    subject_ref: str | None
    enrolled: bool
    reason: str | None = None


@dataclass
class EnrolReport:
    """The run's result, for the summary a person reads at the end."""

    outcomes: list[ImageOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def enrolled(self) -> int:
        return sum(1 for o in self.outcomes if o.enrolled)

    @property
    def skipped(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.enrolled]

    @property
    def flagged(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.enrolled and o.reason]

    @property
    def subjects(self) -> int:
        return len({o.subject_ref for o in self.outcomes if o.enrolled})

    @property
    def images_per_second(self) -> float:
        return len(self.outcomes) / self.seconds if self.seconds > 0 else 0.0


def _parse_date(value: str, what: str, line: int, path: Path) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise EnrolError(f"{path}, line {line}: {what} {value!r} is not a date like 1980-01-31.") from e


def read_metadata(path: Path) -> dict[str, SubjectMeta]:
    """Subject metadata from a CSV with the header ``CSV_HEADER``; empty cells mean unknown."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = tuple(h.strip() for h in next(reader, ()))
            if header != CSV_HEADER:
                raise EnrolError(
                    f"{path}: the first line must be {','.join(CSV_HEADER)}; it is {','.join(header)}."
                )
            out: dict[str, SubjectMeta] = {}
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(CSV_HEADER):
                    raise EnrolError(
                        f"{path}, line {line}: expected {len(CSV_HEADER)} columns, found {len(row)}."
                    )
                ref, sex, eth, dob, image_date = (cell.strip() for cell in row)
                if not ref:
                    raise EnrolError(f"{path}, line {line}: subject_ref is empty.")
                if ref in out:
                    raise EnrolError(f"{path}, line {line}: subject {ref} appears twice.")
                out[ref] = SubjectMeta(
                    sex=sex or None,
                    ethnicity_code=eth or None,
                    date_of_birth=_parse_date(dob, "date_of_birth", line, path),
                    image_date=_parse_date(image_date, "image_date", line, path),
                )
            return out
    except OSError as e:
        raise EnrolError(f"Cannot read the metadata file {path}: {e.strerror or e}.") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise EnrolError(f"{path} is not a readable UTF-8 CSV file: {e}.") from e


def iter_images(images_dir: Path) -> Iterator[tuple[str | None, Path]]:
    """``(subject_ref, image)`` for every file, in a stable order; loose files get ``None``.

    Hidden files (``.DS_Store`` and the like) are not images anyone meant to enrol.
    """
    for entry in sorted(images_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            for image in sorted(entry.rglob("*")):
                if image.is_file() and not any(p.startswith(".") for p in image.relative_to(entry).parts):
                    yield entry.name, image
        elif entry.is_file():
            yield None, entry


def _check_subject_ref(ref: str) -> str | None:
    """Why ``ref`` cannot be a subject reference, or None when it can."""
    if len(ref) > _MAX_SUBJECT_REF:
        return f"the folder name is longer than {_MAX_SUBJECT_REF} characters"
    if not ref.isprintable():
        return "the folder name contains control characters"
    return None


def enrol(
    images_dir: Path,
    out: Path,
    key_file: Path,
    pipeline: Pipeline,
    metadata: dict[str, SubjectMeta] | None = None,
    version: int = 1,
) -> EnrolReport:
    """Enrol every usable image under ``images_dir`` into a new snapshot at ``out``.

    A new random key is written to ``key_file`` only once the snapshot is complete.
    Existing files are never overwritten: a key file protects a snapshot, and
    replacing it would make that snapshot unreadable.
    """
    if not images_dir.is_dir():
        raise EnrolError(f"The image folder {images_dir} does not exist or is not a folder.")
    for existing, what in ((out, "snapshot"), (key_file, "key file")):
        if existing.exists():
            raise EnrolError(
                f"The {what} {existing} already exists; choose a new path or move the old one away."
            )
    if version < 1:
        raise EnrolError("The library version must be a positive whole number.")
    metadata = metadata or {}
    report = EnrolReport()
    key = new_key()
    started = time.perf_counter()
    with SnapshotWriter.create(out, key, embedder_id=pipeline.embedder_id, dim=pipeline.dim,
                               version=version) as writer:
        for subject, image in iter_images(images_dir):
            outcome = _enrol_one(writer, pipeline, images_dir, subject, image, metadata)
            report.outcomes.append(outcome)
            if not outcome.enrolled:
                logger.info("skipped %s: %s", outcome.source, outcome.reason)
            elif outcome.reason:
                logger.warning("enrolled %s with a warning: %s", outcome.source, outcome.reason)
    report.seconds = time.perf_counter() - started
    write_key_file(key_file, key)
    if metadata:
        seen_subjects = {o.subject_ref for o in report.outcomes if o.enrolled and o.subject_ref}
        without_meta = sorted(seen_subjects - set(metadata))
        if without_meta:
            report.warnings.append(
                f"{len(without_meta)} subjects have images but no CSV row (metadata left unknown): "
                + ", ".join(without_meta[:10]) + (" ..." if len(without_meta) > 10 else "")
            )
        without_images = sorted(set(metadata) - seen_subjects)
        if without_images:
            report.warnings.append(
                f"{len(without_images)} subjects in the CSV have no enrolled image: "
                + ", ".join(without_images[:10]) + (" ..." if len(without_images) > 10 else "")
            )
    return report


def _enrol_one(
    writer: SnapshotWriter,
    pipeline: Pipeline,
    images_dir: Path,
    subject: str | None,
    image: Path,
    metadata: dict[str, SubjectMeta],
) -> ImageOutcome:
    source = str(image.relative_to(images_dir))
    if subject is None:
        return ImageOutcome(source, None, False, "not inside a subject folder, so it belongs to no one")
    problem = _check_subject_ref(subject)
    if problem:
        return ImageOutcome(source, subject, False, problem)
    try:
        data = image.read_bytes()
    except OSError as e:
        return ImageOutcome(source, subject, False, f"cannot be read: {e.strerror or e}")
    try:
        result = pipeline.process(data)
    except CustodyRfrError as e:
        # NoFaceError and ImageRejectedError: their messages are written for people.
        return ImageOutcome(source, subject, False, str(e))
    meta = metadata.get(subject, SubjectMeta())
    record = ReferenceRecord(
        subject_ref=subject,
        source=source,
        sex=meta.sex,
        ethnicity_code=meta.ethnicity_code,
        date_of_birth=meta.date_of_birth,
        image_date=meta.image_date,
    )
    writer.add(record, template=result.template, thumbnail_jpeg=result.thumbnail)
    faces = len(result.faces)
    if faces > 1:
        return ImageOutcome(
            source, subject, True,
            f"{faces} faces found; enrolled the most prominent one: check it is the right person",
        )
    return ImageOutcome(source, subject, True)
