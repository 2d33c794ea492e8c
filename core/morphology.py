"""The structured morphological comparison of a probe and a reference, component by component.

A score says nothing a court or a reviewer can check; a facial examiner compares
the two faces feature by feature and says what agrees, what differs and what
cannot be seen. The components follow the FISWG *Facial Image Comparison
Feature List for Morphological Analysis* (v2.0) as the ENFSI *Best Practice
Manual for Facial Image Comparison* (ENFSI-BPM-DI-01) applies it, grouped the
way a custody officer can use them. Each component gets one finding and an
optional note.

Pure data and strict parsing, so the desk (which records it with the Match
Report and sends it with a peer-review request) and central (which shows it to
the reviewer) read one vocabulary and refuse anything outside it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import WireFormatError

#: Facial components in the order an examiner works down the face: (key, label).
COMPONENTS: dict[str, str] = {
    "head_outline": "Head outline",
    "hairline": "Hairline",
    "forehead": "Forehead",
    "eyebrows": "Eyebrows",
    "eyes": "Eyes",
    "nose": "Nose",
    "ears": "Ears",
    "cheeks": "Cheeks",
    "mouth": "Mouth",
    "chin": "Chin and jaw line",
    "neck": "Neck",
    "facial_marks": "Facial marks (scars, tattoos, moles, piercings)",
}
SIMILAR, DISSIMILAR, NOT_VISIBLE, NOT_ASSESSED = "similar", "dissimilar", "not_visible", "not_assessed"
#: The findings, with the words shown for each.
FINDINGS: dict[str, str] = {
    SIMILAR: "Similar",
    DISSIMILAR: "Dissimilar",
    NOT_VISIBLE: "Not visible",
    NOT_ASSESSED: "Not assessed",
}
#: Longest note on one component: a sentence or two, so twelve notes stay readable (and fit a message).
MAX_NOTE = 400
_ENTRY_FIELDS = {"finding", "note"}


@dataclass(frozen=True)
class ComponentFinding:
    finding: str
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.finding, str) or self.finding not in FINDINGS:
            raise WireFormatError(f"Unknown morphological finding {self.finding!r}.")
        if not isinstance(self.note, str) or len(self.note) > MAX_NOTE:
            raise WireFormatError(f"A morphological note must be text of at most {MAX_NOTE} characters.")

    @property
    def label(self) -> str:
        return FINDINGS[self.finding]


@dataclass(frozen=True)
class Morphology:
    """One finding for every component, in ``COMPONENTS`` order."""

    findings: dict[str, ComponentFinding]

    def __post_init__(self) -> None:
        if not isinstance(self.findings, dict) or set(self.findings) != set(COMPONENTS):
            raise WireFormatError(f"A morphological comparison has exactly the components {sorted(COMPONENTS)}.")

    def rows(self) -> list[tuple[str, str, ComponentFinding]]:
        """(key, component label, finding) in examination order, for pages and summaries."""
        return [(key, label, self.findings[key]) for key, label in COMPONENTS.items()]

    def counts(self) -> dict[str, int]:
        """How many components got each finding (for the audit event: no notes, no personal detail)."""
        return {f: sum(1 for c in self.findings.values() if c.finding == f) for f in FINDINGS}

    def to_dict(self) -> dict[str, Any]:
        return {key: {"finding": c.finding, "note": c.note} for key, c in self.findings.items()}

    @classmethod
    def from_dict(cls, obj: object) -> Morphology:
        if not isinstance(obj, dict):
            raise WireFormatError("A morphological comparison must be an object of components.")
        findings = {}
        for key, entry in obj.items():
            if not isinstance(entry, dict) or set(entry) != _ENTRY_FIELDS:
                raise WireFormatError(f"Each component must have exactly the fields {sorted(_ENTRY_FIELDS)}.")
            findings[key] = ComponentFinding(entry["finding"], entry["note"])
        return cls(findings)

    def with_notes_cut(self, limit: int) -> Morphology:
        """The same findings with each note cut to ``limit`` characters (marked), to fit a size-capped message."""
        marker = "…"
        return Morphology({k: ComponentFinding(c.finding, c.note if len(c.note) <= limit
                                               else c.note[: max(limit - len(marker), 0)] + marker)
                           for k, c in self.findings.items()})
