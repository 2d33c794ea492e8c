"""Distractor faces for the 1:N direct check: every face image the project obtains from pinned registry packages.

A direct check searches the labelled set against a library padded with faces
of people who are not in it. Nothing may come from a model hub, so the padding
is what pinned packages already carry: the group photos and portraits in
npm ``@vladmandic/face-api``'s demo folder (pinned in ``supply/catalogue.toml``)
and the portrait matplotlib ships as sample data (pinned by version and hash in
``requirements.lock``). Every face the production detector finds in them, at
least ``MIN_FACE_PX`` across, is one distractor record.

Left out on purpose, with the reason beside each in ``EXCLUDED``: the
face_recognition sdist's test photos show Barack Obama and Joe Biden, who are
identities of the development set (they would be mates, not distractors), and
one demo screenshot repeats the six group photos.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import CustodyRfrError
from models.image import decode_image
from models.pipeline import FacePipeline
from models.registry_faces import EXCLUDED, DistractorImage, distractor_images

__all__ = ["EXCLUDED", "DistractorImage", "Distractors", "distractor_images", "distractor_templates"]

logger = logging.getLogger(__name__)

MIN_FACE_PX = 40  # as the demo library: smaller faces would not be enrolled


@dataclass(frozen=True)
class Distractors:
    """Distractor templates per embedder id (rows L2-normalised) and the number of faces from each source."""

    templates: dict[str, np.ndarray]
    sources: dict[str, int]

    @property
    def count(self) -> int:
        return sum(self.sources.values())


def distractor_templates(pipelines: Sequence[FacePipeline], images: Sequence[DistractorImage] | None = None
                         ) -> Distractors:
    """Every face of at least ``MIN_FACE_PX`` in ``images`` (by default every distractor image), one row per pipeline.

    The pipelines must share one detector (a mix is refused): detection runs
    once, so every embedder sees the same faces, found by the detector it was
    made for. An image that cannot be decoded, or a face that cannot be
    embedded, is logged and counted as giving no face.
    """
    if not pipelines:
        raise ValueError("at least one pipeline is needed")
    detectors = sorted({p.detector_id for p in pipelines})
    if len(detectors) > 1:
        # An embedder's crops assume its own detector's boxes and keypoints: one detection cannot serve both.
        raise ValueError(f"distractor pipelines must share one detector, got {', '.join(detectors)}; "
                         "call once per detector group, as models.evaluate does")
    rows: dict[str, list[np.ndarray]] = {p.embedder_id: [] for p in pipelines}
    sources: dict[str, int] = {}
    for item in distractor_images() if images is None else images:
        try:
            image = decode_image(item.data)
        except (CustodyRfrError, ValueError) as e:
            logger.warning("distractor %s not used: %s", item.source, e)
            sources[item.source] = 0
            continue
        faces = [f for f in pipelines[0].detect(image) if min(f.w, f.h) >= MIN_FACE_PX]
        used = 0
        for face in faces:
            try:  # every embedder or none, so each embedder's gallery holds the same faces
                embedded = [pipeline.embed(image, face) for pipeline in pipelines]
            except (CustodyRfrError, ValueError) as e:
                logger.warning("a face in distractor %s not used: %s", item.source, e)
                continue
            for pipeline, template in zip(pipelines, embedded, strict=True):
                rows[pipeline.embedder_id].append(template)
            used += 1
        sources[item.source] = used
    templates = {embedder: (np.vstack(found).astype(np.float32) if found else np.empty((0, p.dim), np.float32))
                 for (embedder, found), p in zip(rows.items(), pipelines, strict=True)}
    return Distractors(templates, sources)
