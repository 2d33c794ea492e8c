"""The demo's two governed libraries: the substantive demo library and a small temporary one that expires soon.

``./scripts/run.sh`` uses this so a newcomer sees what issue #18 describes: the submission form offers two
libraries, each with an authorisation record, and the temporary one expires during the demo (the desk then
refuses and destroys it, and central's fleet page and reports show that). Both libraries go through the
real governance service (``central.libraries.service``), so the two-person rule holds in the demo too: one
demo account requests, another authorises, and both are named in the library log.

The temporary library is made from a few subjects of the demo import (:func:`subset`). Each run that finds
no unexpired demo temporary library makes a new one (``demo-temp-<UTC minute>``), since an expired library
is never reauthorised: that is the lifecycle the demo shows.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2

from central.enrolment.enrol import CSV_HEADER, EnrolError
from central.libraries.service import ROLE, Actor, LibraryRequest, LibraryService
from central.libraries.store import LibraryStore

SUBSTANTIVE_ID = "national"
TEMPORARY_PREFIX = "demo-temp-"
REQUESTER = Actor("demo-requester", frozenset({ROLE}))
AUTHORISER = Actor("demo-authoriser", frozenset({ROLE}))
AUTHORISER_NAME, AUTHORISER_RANK = "A. Demo", "Superintendent"
#: The subject the demo's probe photo (obama3.jpg) should find: kept in the temporary library too.
KEEP_SUBJECT = "DEMO-OBAMA"


@dataclass(frozen=True)
class DemoLibraries:
    substantive_id: str
    temporary_id: str
    temporary_expires_at: datetime
    temporary_is_new: bool  # True: its snapshot has yet to be built and published


def _mirror(source: Path, target: Path) -> None:
    """The photo mirrored left to right: another image of the same face. The temporary library must not hold
    the very images (thumbnails, templates) of the substantive one, or the proof of its destruction would
    find them in the library that stays and rightly call the destruction incomplete."""
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolError(f"{source} is not a readable image.")
    if not cv2.imwrite(str(target), cv2.flip(image, 1)):
        raise EnrolError(f"Cannot write {target}.")


def subset(import_dir: Path, out: Path, subjects: int = 6) -> int:
    """``KEEP_SUBJECT`` and the first other subjects of a demo import (``demo-import`` output), each photo
    mirrored (:func:`_mirror`), in ``out`` with their rows of ``subjects.csv``; returns how many subjects."""
    with (import_dir / "subjects.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if tuple(header[:len(CSV_HEADER)]) != CSV_HEADER:
        raise EnrolError(f"{import_dir / 'subjects.csv'} is not a demo import manifest.")
    refs = sorted({r[0] for r in body}, key=lambda ref: (ref != KEEP_SUBJECT, ref))[:subjects]
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    for ref in refs:
        (out / "images" / ref).mkdir()
        for image in sorted((import_dir / "images" / ref).iterdir()):
            _mirror(image, out / "images" / ref / image.name)
    with (out / "subjects.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(r for r in body if r[0] in refs)
    return len(refs)


def _authorise(service: LibraryService, request: LibraryRequest, device_id: str, today: date) -> None:
    record = service.store.get(request.library_id)
    if record is None:
        service.request(REQUESTER, request)
        record = service.store.get(request.library_id)
    if record is not None and record.status == "requested":
        service.authorise(AUTHORISER, request.library_id, authoriser_name=AUTHORISER_NAME,
                          authoriser_rank=AUTHORISER_RANK, review_due=today + timedelta(days=365))
    if not any(g["device_id"] == device_id for g in service.store.grants(request.library_id)):
        service.grant(AUTHORISER, request.library_id, device_id)


def set_up(database: str, device_id: str, *, expires_in: timedelta = timedelta(minutes=30),
           now: datetime | None = None) -> DemoLibraries:
    """Request, authorise (a second account) and grant to ``device_id`` both demo libraries; idempotent but for
    the temporary library, which is new whenever the last one has expired."""
    moment = now or datetime.now(UTC)
    store = LibraryStore(database)
    try:
        service = LibraryService(store, clock=lambda: moment)
        _authorise(service, LibraryRequest(
            library_id=SUBSTANTIVE_ID, name="Demo custody images", kind="substantive",
            purpose_text="Identify a detainee whose identity is in doubt (demo: registry-package photos only).",
            legal_basis="Demo only. In service: the force's RFR policy under common law policing powers and "
                        "PACE 1984 s.64A (photographs of detained persons).",
            authority_reference="DEMO/LIB/001"), device_id, moment.date())
        current = [r for r in store.all() if r.library_id.startswith(TEMPORARY_PREFIX) and r.status == "authorised"
                   and r.expires_at is not None and datetime.fromisoformat(r.expires_at) > moment]
        if current:
            newest = max(current, key=lambda r: r.expires_at or "")
            return DemoLibraries(SUBSTANTIVE_ID, newest.library_id, datetime.fromisoformat(str(newest.expires_at)),
                                 False)
        temporary_id = f"{TEMPORARY_PREFIX}{moment:%Y%m%d%H%M}"
        expires_at = moment + expires_in
        _authorise(service, LibraryRequest(
            library_id=temporary_id, name=f"Operation Demo ({moment:%d %b %H:%M} UTC)", kind="temporary",
            purpose_text="Demo temporary library for one operation: a few subjects of the demo library.",
            legal_basis="Demo only. In service: authorised for one named investigation, for a limited time.",
            authority_reference=f"DEMO/OP/{moment:%Y%m%d%H%M}", expires_at=expires_at,
            default_for_custody=False), device_id, moment.date())
        return DemoLibraries(SUBSTANTIVE_ID, temporary_id, expires_at, True)
    finally:
        store.close()
