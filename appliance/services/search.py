"""One probe search: photo bytes in, potential matches out, audited either way.

The probe image and its template exist only in memory for the length of the
request; nothing biometric about the probe is written anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from appliance.services.audit import AuditLog
from appliance.services.library import LibraryHolder
from core.errors import CustodyRfrError
from library.errors import EmbedderMismatchError
from library.records import Candidate
from models.errors import ImageRejectedError, NoFaceError
from models.pipeline import FacePipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceChoice:
    """A face found in the probe, offered to the officer when there are several."""

    index: int
    thumbnail_jpeg: bytes
    score: float


@dataclass(frozen=True)
class SearchOutcome:
    faces_found: int
    face_index: int | None = None
    probe_thumbnail: bytes | None = None
    candidates: list[Candidate] = field(default_factory=list)
    choices: list[FaceChoice] = field(default_factory=list)
    library_version: int | None = None

    @property
    def needs_face_choice(self) -> bool:
        return self.face_index is None and len(self.choices) > 1


class SearchService:
    def __init__(self, pipeline: FacePipeline, library: LibraryHolder, audit: AuditLog, top_k: int) -> None:
        if library.current.embedder_id != pipeline.embedder_id:
            raise EmbedderMismatchError(
                f"The library was built with {library.current.embedder_id}; this device runs {pipeline.embedder_id}."
            )
        self.pipeline, self.library, self.audit, self.top_k = pipeline, library, audit, top_k

    def search(self, data: bytes, actor: str, face_index: int | None = None) -> SearchOutcome:
        try:
            result = self.pipeline.process(data, face_index=face_index)
        except IndexError as e:
            raise FaceIndexError("That face is not in this photo. Choose one of the faces shown.") from e
        except (ImageRejectedError, NoFaceError) as e:
            reason = "no_face" if isinstance(e, NoFaceError) else "image_rejected"
            self.audit.record("search_refused", actor, reason, message=str(e), bytes_received=len(data))
            raise
        if face_index is None and len(result.faces) > 1:
            choices = [
                FaceChoice(index=i, thumbnail_jpeg=self.pipeline.thumbnail_jpeg(result.image, face, size=112),
                           score=float(face.score))
                for i, face in enumerate(result.faces)
            ]
            return SearchOutcome(faces_found=len(result.faces), choices=choices)
        snapshot = self.library.current  # one version for the whole search, even if an update lands
        candidates = snapshot.search(result.template, self.top_k)
        self.audit.record(
            "search", actor, "candidates_shown" if candidates else "no_candidates",
            library_version=snapshot.version, embedder=self.pipeline.embedder_id,
            faces_found=len(result.faces), candidates=len(candidates),
            top_score=round(candidates[0].score, 4) if candidates else None,
        )
        return SearchOutcome(faces_found=len(result.faces), face_index=result.face_index,
                             probe_thumbnail=result.thumbnail, candidates=candidates,
                             library_version=snapshot.version)


class FaceIndexError(CustodyRfrError):
    """The chosen face number is not one of the faces found."""
