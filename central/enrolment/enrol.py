"""Enrol a folder of reference images into an encrypted library snapshot, at national scale.

The import folder is ``<subject_ref>/<image>``: one folder per person, as custody
records are usually exported; a CSV manifest carries what is known about each
subject (or, with an ``image`` column, about one image). Each image is processed
on its own, and one that cannot be used (not an image, no face, unreadable, or
its manifest row was rejected) is reported with a reason and skipped, so a bad
file among millions never stops the run. A manifest row with a bad value is
rejected with its line number and reason, and the run carries on.

A run is resumable: the snapshot is built in ``<out>.building`` (SQLCipher,
committed every few hundred images), and ``resume=True`` skips the images it
already holds. That is why the key file is written before the first image,
not after the last: without it an interrupted build could never be reopened.
One key serves a library lineage (its full snapshots and deltas), so a new
version of an existing library is built with ``reuse_key=True``.

Two environment variables, read when an enrolment starts:
``RFR_ENROL_COMMIT_EVERY`` sets how many records go between checkpoints of the
``.building`` file (default 500: fewer loses less to a crash, costs more
syncs); ``RFR_ENROL_HOLD_AFTER=N`` is a test seam: once this run has enrolled
N images the coordinator writes ``enrol: holding after N images`` to stderr
and waits to be killed, so a test can kill it at a known checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from central.enrolment.progress import ProgressBar
from core.errors import CustodyRfrError
from library.records import AGE_BANDS, ETHNICITY_CODES, SEXES, UNKNOWN, ReferenceRecord
from library.snapshot import BUILDING_SUFFIX, SnapshotWriter, new_key, read_key_file, write_key_file
from models.quality import assess as assess_quality

logger = logging.getLogger(__name__)

CSV_HEADER = ("subject_ref", "sex", "ethnicity_code", "date_of_birth", "image_date")
CSV_OPTIONAL = ("age_band", "image")
_MAX_SUBJECT_REF = 100
COMMIT_EVERY_ENV = "RFR_ENROL_COMMIT_EVERY"
HOLD_AFTER_ENV = "RFR_ENROL_HOLD_AFTER"


class EnrolError(CustodyRfrError):
    """The enrolment as a whole cannot go ahead (bad arguments, unreadable CSV, existing output)."""


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
class Templated:
    """What the face pipeline made of one image: everything its record needs beyond the manifest.

    Small (a template, a ~5 KB thumbnail, a JSON string) and picklable, so a
    cluster worker can hand it back to the coordinator that writes the library.
    """

    template: np.ndarray
    thumbnail: bytes
    quality: str  # JSON of the quality report, sorted keys
    faces: int


class Templater(Protocol):
    """Turns image files into ``Templated`` results (or a refusal reason), in input order.

    In order, so the single writer inserts records in the same sequence however
    the work was spread: record ids, and so the file, do not depend on timing.
    """

    embedder_id: str
    dim: int

    def run(self, jobs: Iterable[tuple[str, Path]]) -> Iterator[Templated | str]: ...


def template_image(pipeline: Pipeline, image: Path) -> Templated | str:
    """One image through the pipeline, or the reason it cannot be enrolled (a message a person can act on)."""
    try:
        data = image.read_bytes()
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    try:
        result = pipeline.process(data)
    except CustodyRfrError as e:
        # NoFaceError and ImageRejectedError: their messages are written for people.
        return str(e)
    return Templated(template=np.asarray(result.template, dtype=np.float32), thumbnail=result.thumbnail,
                     quality=_quality_json(result), faces=len(result.faces))


class InProcessTemplater:
    """The pipeline in this process, one image after another: the default, and the reference for a cluster."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.embedder_id, self.dim = pipeline.embedder_id, pipeline.dim

    def run(self, jobs: Iterable[tuple[str, Path]]) -> Iterator[Templated | str]:
        for _source, image in jobs:
            yield template_image(self.pipeline, image)


@dataclass(frozen=True)
class SubjectMeta:
    """One accepted manifest row: what is known about a subject (or one image), beyond the pixels."""

    sex: str | None = None
    ethnicity_code: str | None = None
    date_of_birth: date | None = None
    image_date: date | None = None
    age_band: str | None = None


@dataclass(frozen=True)
class RejectedRow:
    """A manifest row that was not used, and why (its images are skipped until it is fixed)."""

    line: int
    subject_ref: str
    image: str | None
    reason: str


@dataclass
class Manifest:
    """The CSV manifest: accepted rows by subject and by image source, and the rejected rows."""

    subjects: dict[str, SubjectMeta] = field(default_factory=dict)
    images: dict[str, SubjectMeta] = field(default_factory=dict)
    rejected: list[RejectedRow] = field(default_factory=list)
    _rejected_names: dict[str, RejectedRow] = field(default_factory=dict, repr=False)

    def reject(self, row: RejectedRow) -> None:
        self.rejected.append(row)
        name = row.subject_ref if row.image is None else f"{row.subject_ref}/{row.image}"
        self._rejected_names.setdefault(name, row)

    def lookup(self, subject: str, source: str) -> SubjectMeta | RejectedRow | None:
        """The row for an image: its own row first, then its subject's; a rejected row is returned as such."""
        for name, accepted in ((source, self.images), (subject, self.subjects)):
            if name in accepted:
                return accepted[name]
            if name in self._rejected_names:
                return self._rejected_names[name]
        return None


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
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    resumed: int = 0  # images already in the build when this run resumed it
    seconds: float = 0.0
    key_created: bool = False
    subjects: int = 0  # in the finished snapshot, resumed images included

    @property
    def enrolled(self) -> int:
        return self.resumed + sum(1 for o in self.outcomes if o.enrolled)

    @property
    def skipped(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.enrolled]

    @property
    def flagged(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.enrolled and o.reason]

    @property
    def images_per_second(self) -> float:
        """Images processed by this run per second (enrolled or skipped: each went through the pipeline)."""
        return len(self.outcomes) / self.seconds if self.seconds > 0 else 0.0


def _parse_date(value: str, what: str) -> date | None:
    if not value or value.lower() == UNKNOWN:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a date like 1980-01-31") from None


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str | None:
    if not value or value.lower() == UNKNOWN:
        return None
    for option in allowed:
        if value.upper() == option.upper():
            return option
    raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)} or unknown")


def _row_meta(cells: dict[str, str], today: date) -> SubjectMeta:
    """A validated row, or ValueError with the reason a person can act on."""
    meta = SubjectMeta(
        sex=_choice(cells["sex"], SEXES, "sex"),
        ethnicity_code=_choice(cells["ethnicity_code"], ETHNICITY_CODES, "ethnicity_code"),
        date_of_birth=_parse_date(cells["date_of_birth"], "date_of_birth"),
        image_date=_parse_date(cells["image_date"], "image_date"),
        age_band=_choice(cells.get("age_band", ""), AGE_BANDS, "age_band"),
    )
    for what, value in (("date_of_birth", meta.date_of_birth), ("image_date", meta.image_date)):
        if value is not None and value > today:
            raise ValueError(f"{what} {value} is in the future")
    if meta.date_of_birth and meta.image_date and meta.image_date < meta.date_of_birth:
        raise ValueError(f"image_date {meta.image_date} is before date_of_birth {meta.date_of_birth}")
    return meta


def read_manifest(path: Path, today: date | None = None) -> Manifest:
    """The CSV manifest; only an unreadable file or header stops here, a bad row is rejected and listed."""
    today = today or date.today()
    manifest = Manifest()
    first_line: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in CSV_HEADER if c not in header]
            unknown = [c for c in header if c not in CSV_HEADER + CSV_OPTIONAL]
            if missing or unknown or len(set(header)) != len(header):
                raise EnrolError(
                    f"{path}: the first line must be {','.join(CSV_HEADER)} (optionally with "
                    f"{' and '.join(CSV_OPTIONAL)}); it is {','.join(header)}."
                )
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
                ref, image = cells.get("subject_ref", ""), cells.get("image") or None
                reject = _reject_reason(row, header, ref, image, line, first_line)
                if reject is None:
                    try:
                        meta = _row_meta(cells, today)
                    except ValueError as e:
                        reject = str(e)
                if reject is not None:
                    manifest.reject(RejectedRow(line, ref, image, reject))
                    continue
                if image is None:
                    manifest.subjects[ref] = meta
                else:
                    manifest.images[f"{ref}/{image}"] = meta
    except OSError as e:
        raise EnrolError(f"Cannot read the manifest {path}: {e.strerror or e}.") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise EnrolError(f"{path} is not a readable UTF-8 CSV file: {e}.") from e
    return manifest


def _reject_reason(row: list[str], header: list[str], ref: str, image: str | None, line: int,
                   first_line: dict[str, int]) -> str | None:
    if len(row) != len(header):
        return f"expected {len(header)} columns, found {len(row)}"
    if not ref:
        return "subject_ref is empty"
    problem = _check_subject_ref(ref)
    if problem:
        return problem.replace("the folder name", "subject_ref")
    name = ref if image is None else f"{ref}/{image}"
    if name in first_line:
        return f"{'subject' if image is None else 'image'} {name} appears twice (first on line {first_line[name]})"
    first_line[name] = line
    return None


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


def _key_for(out: Path, key_file: Path, resume: bool, reuse_key: bool) -> tuple[bytes, bool]:
    """The lineage key, and whether it was created now. Never overwrites a key file."""
    building = out.with_name(out.name + BUILDING_SUFFIX)
    if out.exists():
        raise EnrolError(f"The snapshot {out} already exists; choose a new path or move the old one away.")
    if resume:
        if not building.exists():
            raise EnrolError(f"There is no interrupted build {building} to resume; run without --resume.")
        return read_key_file(key_file), False
    if building.exists():
        raise EnrolError(f"An interrupted build {building} exists: rerun with --resume to continue it, "
                         f"or delete it to start again.")
    if key_file.exists():
        if not reuse_key:
            raise EnrolError(f"The key file {key_file} already exists; choose a new path, or pass --reuse-key "
                             f"to build the next version of that key's library.")
        return read_key_file(key_file), False
    if reuse_key:
        raise EnrolError(f"--reuse-key was given but the key file {key_file} does not exist.")
    key = new_key()
    write_key_file(key_file, key)
    return key, True


def enrol(
    images_dir: Path,
    out: Path,
    key_file: Path,
    pipeline: Pipeline | Templater,
    metadata: Manifest | None = None,
    version: int = 1,
    *,
    resume: bool = False,
    reuse_key: bool = False,
    progress: bool = True,
) -> EnrolReport:
    """Enrol every usable image under ``images_dir`` into a new snapshot at ``out``.

    ``pipeline`` is a face pipeline (run here) or a ``Templater`` such as the
    Dask one in ``central.enrolment.distributed``; either way this process is the
    only writer, and records go in in the order of ``iter_images``, so both
    give the same library. Existing files are never overwritten: a key file
    protects a snapshot, and replacing it would make that snapshot unreadable.
    """
    templater: Templater = (InProcessTemplater(pipeline) if hasattr(pipeline, "process")  # type: ignore[arg-type]
                            else pipeline)  # type: ignore[assignment]
    if not images_dir.is_dir():
        raise EnrolError(f"The image folder {images_dir} does not exist or is not a folder.")
    if version < 1:
        raise EnrolError("The library version must be a positive whole number.")
    commit_every, hold_after = _env_count(COMMIT_EVERY_ENV) or 500, _env_count(HOLD_AFTER_ENV)
    key, created = _key_for(out, key_file, resume, reuse_key)
    manifest = metadata or Manifest()
    report = EnrolReport(rejected_rows=list(manifest.rejected), key_created=created)
    images = list(iter_images(images_dir))
    started = time.perf_counter()
    with SnapshotWriter.create(out, key, embedder_id=templater.embedder_id, dim=templater.dim, version=version,
                               resume=resume, commit_every=commit_every) as writer:
        done = writer.done_sources()
        report.resumed = len(done)
        bar = ProgressBar(len(images) - len(done)) if progress else None
        plan: list[tuple[str, str | None, Path, SubjectMeta | ImageOutcome]] = []
        for subject, image in images:
            source = str(image.relative_to(images_dir))
            if source not in done:
                plan.append((source, subject, image, _precheck(source, subject, manifest)))
        results = templater.run((source, image) for source, _, image, meta in plan if isinstance(meta, SubjectMeta))
        try:
            for source, subject, _image, meta in plan:
                if isinstance(meta, ImageOutcome):
                    outcome = meta
                else:
                    outcome = _enrol_one(writer, source, subject, meta, next(results))  # type: ignore[arg-type]
                report.outcomes.append(outcome)
                if hold_after and outcome.enrolled and report.enrolled - report.resumed == hold_after:
                    _hold(hold_after)
                if not outcome.enrolled:
                    logger.info("skipped %s: %s", outcome.source, outcome.reason)
                elif outcome.reason:
                    logger.warning("enrolled %s with a warning: %s", outcome.source, outcome.reason)
                if bar:
                    bar.update()
        finally:
            # A cluster templater cancels the work still queued when enrolment stops early.
            getattr(results, "close", lambda: None)()
        if bar:
            bar.close()
        report.subjects = writer.subject_count()
        report.seconds = time.perf_counter() - started
    _manifest_warnings(report, manifest, images)
    return report


def _env_count(name: str) -> int | None:
    """A positive whole number from the environment, or None when unset; anything else is refused."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise EnrolError(f"{name}={value!r} must be a positive whole number.")
    return int(value)


def _hold(images: int) -> None:
    """The ``RFR_ENROL_HOLD_AFTER`` test seam: say so, then wait for the kill that the test sends."""
    print(f"enrol: holding after {images} images", file=sys.stderr, flush=True)
    threading.Event().wait()


def _manifest_warnings(report: EnrolReport, manifest: Manifest, images: list[tuple[str | None, Path]]) -> None:
    if not (manifest.subjects or manifest.images or manifest.rejected):
        return
    seen_subjects = {o.subject_ref for o in report.outcomes if o.enrolled and o.subject_ref}
    known = set(manifest.subjects) | {s.split("/", 1)[0] for s in manifest.images}
    without_meta = sorted(seen_subjects - known)
    if without_meta:
        report.warnings.append(
            f"{len(without_meta)} subjects have images but no CSV row (metadata left unknown): "
            + ", ".join(without_meta[:10]) + (" ..." if len(without_meta) > 10 else "")
        )
    present = {subject for subject, _ in images if subject}
    without_images = sorted(set(manifest.subjects) - present)
    if without_images:
        report.warnings.append(
            f"{len(without_images)} subjects in the CSV have no image in the folder: "
            + ", ".join(without_images[:10]) + (" ..." if len(without_images) > 10 else "")
        )


def _quality_json(result: _Face) -> str:
    """The reference image's quality report as JSON: the pipeline's own, or assessed here for one without it."""
    report = getattr(result, "quality", None)
    if report is None:
        report = assess_quality(result.image, result.face, len(result.faces))  # type: ignore[attr-defined]
    return json.dumps(report.to_dict(), sort_keys=True)


def _precheck(source: str, subject: str | None, manifest: Manifest) -> SubjectMeta | ImageOutcome:
    """The image's metadata, or why it is refused before any pixel is read (done by the coordinator)."""
    if subject is None:
        return ImageOutcome(source, None, False, "not inside a subject folder, so it belongs to no one")
    problem = _check_subject_ref(subject)
    if problem:
        return ImageOutcome(source, subject, False, problem)
    meta = manifest.lookup(subject, source)
    if isinstance(meta, RejectedRow):
        return ImageOutcome(source, subject, False,
                            f"its CSV row (line {meta.line}) was rejected: {meta.reason}; fix it and resume")
    return meta or SubjectMeta()


def _enrol_one(writer: SnapshotWriter, source: str, subject: str, meta: SubjectMeta,
               result: Templated | str) -> ImageOutcome:
    if isinstance(result, str):
        return ImageOutcome(source, subject, False, result)
    record = ReferenceRecord(
        subject_ref=subject,
        source=source,
        sex=meta.sex,
        ethnicity_code=meta.ethnicity_code,
        date_of_birth=meta.date_of_birth,
        image_date=meta.image_date,
        age_band=meta.age_band,
        quality=result.quality,
    )
    writer.add(record, template=result.template, thumbnail_jpeg=result.thumbnail)
    faces = result.faces
    if faces > 1:
        return ImageOutcome(
            source, subject, True,
            f"{faces} faces found; enrolled the most prominent one: check it is the right person",
        )
    return ImageOutcome(source, subject, True)
