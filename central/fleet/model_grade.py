"""Which face models are evaluation-grade, as central knows them: the manifests shipped with the software.

A desk's heartbeat already names its embedder (``embedder_id``, the manifest's ``id@version``, the same
reference stored beside every template); the grade belongs to that manifest, which is pinned and shipped
identically to the desks and to central. So central looks the grade up from the reference rather than
trusting a second field from the desk, and the heartbeat's wire format and table stay as they are.
A reference central has no manifest for is reported as unknown: nobody at central can vouch for it.
"""

from __future__ import annotations

from functools import cache

from models.manifest import load_manifest, manifest_names

EVALUATION = "evaluation"
UNKNOWN = "unknown"


@cache
def known_grades() -> dict[str, str]:
    """``id@version`` -> licence grade (``evaluation`` or ``deployable``) for every shipped manifest."""
    grades = {}
    for name in manifest_names():
        manifest = load_manifest(name)
        grades[manifest.ref] = manifest.licence.grade
    return grades


def grade_of(embedder_id: str | None) -> str | None:
    """The grade of a desk's embedder; None when the heartbeat names none, ``unknown`` when central has no
    manifest for it."""
    if not embedder_id:
        return None
    return known_grades().get(embedder_id, UNKNOWN)
