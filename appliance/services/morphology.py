"""Reading the feature-by-feature comparison from a form, with errors written for the officer.

The vocabulary and the strict wire form live in ``core.morphology`` (central reads
the same); this module turns what a person ticked and typed into a ``Morphology``,
or says in plain words what is missing. A "dissimilar" needs a note: a difference
that is not described cannot be weighed by the reviewer or anyone reading the
report later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import WireFormatError
from core.morphology import (
    COMPONENTS,
    DISSIMILAR,
    FINDINGS,
    MAX_NOTE,
    NOT_ASSESSED,
    NOT_VISIBLE,
    ComponentFinding,
    Morphology,
)

AT_LEAST_ONE = ("Compare at least one feature: mark each feature you can see in both images as similar or "
                "dissimilar.")


def finding_field(key: str) -> str:
    """The form name of one component's finding (its note is ``<name>-note``)."""
    return f"feature-{key}"


def _name(key: str) -> str:
    label = COMPONENTS[key]
    return label[0].lower() + label[1:]


def read_morphology(form: Mapping[str, str], *, need_one_compared: bool) -> tuple[Morphology | None,
                                                                                  dict[str, str]]:
    """The comparison and no errors, or None and one message per problem (keyed by the field to fix).

    ``need_one_compared``: a Match Report must rest on at least one feature actually compared.
    """
    errors: dict[str, str] = {}
    findings: dict[str, ComponentFinding] = {}
    for key in COMPONENTS:
        name = finding_field(key)
        finding = form.get(name, "")
        note = form.get(f"{name}-note", "").strip()
        if finding not in FINDINGS:
            errors[name] = f"Choose similar, dissimilar, not visible or not assessed for the {_name(key)}."
            continue
        if len(note) > MAX_NOTE:
            errors[f"{name}-note"] = f"The note on the {_name(key)} must be {MAX_NOTE} characters or fewer."
            continue
        if finding == DISSIMILAR and not note:
            errors[f"{name}-note"] = f"Say what differs in the {_name(key)}."
            continue
        findings[key] = ComponentFinding(finding, note)
    if errors:
        return None, errors
    if need_one_compared and all(f.finding in (NOT_VISIBLE, NOT_ASSESSED) for f in findings.values()):
        return None, {finding_field(next(iter(COMPONENTS))): AT_LEAST_ONE}
    return Morphology(findings), {}


def form_values(stored: Mapping[str, Any] | None) -> dict[str, str]:
    """A stored comparison as form values, to fill the form in again."""
    if not stored:
        return {}
    try:
        morphology = Morphology.from_dict(stored)
    except WireFormatError:
        return {}
    values = {}
    for key, finding in morphology.findings.items():
        values[finding_field(key)] = finding.finding
        values[f"{finding_field(key)}-note"] = finding.note
    return values


def as_morphology(stored: Mapping[str, Any] | None) -> Morphology | None:
    """A stored comparison for display, or None when there is none (or it cannot be read)."""
    if not stored:
        return None
    try:
        return Morphology.from_dict(dict(stored))
    except WireFormatError:
        return None
