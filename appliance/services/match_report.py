"""What the Match Report can say before the officer writes a word: the measured facts, in words.

The policy's five factors (probe quality, reference quality, time lapse,
lighting, other factors) are mostly things the desk has already measured: the
photo check graded the probe, the library holds the reference's grade and
measures, both images have dates, the submission recorded the apparent age and
anything that may change a face's appearance. Asking the officer to retype them
invites mistakes; so the report starts from them, marked as measured, and the
officer confirms or corrects each one against the two images. The judgement
itself (why the candidate is viable, how age was weighed) stays the officer's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.services.candidate_view import CandidateView

#: The Match Report's own confirmation: pre-filled answers are only facts once a person has checked them.
CONFIRM_FIELD = "checked_prefill"
CONFIRM_ERROR = "Confirm that you have checked the filled-in answers against the two images."
#: Pre-filled fields: each of these starts from what the desk measured.
PREFILLED = ("probe_quality", "reference_quality", "time_lapse", "lighting", "other_factors", "age_judgement")

_VERDICTS = {"pass": "Good (passed every check)", "warn": "Usable with care", "fail": "Poor"}


@dataclass(frozen=True)
class ReportFacts:
    """Everything the desk knows that bears on the five factors, for one probe and one reference."""

    probe_quality: Mapping[str, Any] | None
    probe_taken: str
    apparent_age: str
    faces_found: int
    disability: bool
    predates_reassignment: bool
    view: CandidateView
    reference_quality: Mapping[str, Any] | None


def reference_quality_of(raw: object) -> Mapping[str, Any] | None:
    """The library record's stored quality (JSON text or a mapping), or None when it has none."""
    if not raw:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _measures(quality: Mapping[str, Any] | None) -> dict[str, float]:
    raw = (quality or {}).get("measures") or {}
    out = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def _pose_and_size(m: dict[str, float]) -> str:
    parts = []
    if "inter_eye_px" in m:
        parts.append(f"{m['inter_eye_px']:.0f} pixels between the eyes")
    if "sharpness" in m:
        parts.append(f"sharpness {m['sharpness']:.2f}")
    if "yaw_deg" in m and "roll_deg" in m:
        parts.append(f"head turned {abs(m['yaw_deg']):.0f}° and tilted {abs(m['roll_deg']):.0f}°")
    return "; ".join(parts)


def _quality_sentence(what: str, quality: Mapping[str, Any] | None) -> str:
    if not quality:
        return f"{what}: not graded. Judge it from the image."
    verdict = _VERDICTS.get(str(quality.get("verdict")), "Grade not known")
    text = f"{what}, measured: {verdict}."
    reasons = [str(r) for r in quality.get("reasons", []) if str(r).strip()]
    if reasons:
        text += " " + " ".join(reasons)
    detail = _pose_and_size(_measures(quality))
    if detail:
        text += f" ({detail}.)"
    return text


def _light(what: str, quality: Mapping[str, Any] | None) -> str:
    m = _measures(quality)
    if "brightness" not in m:
        return f"{what}: no light measures; judge it from the image."
    level = m["brightness"]
    words = "dark" if level < 60 else "bright" if level > 205 else "within the usual range"
    text = f"{what}: face brightness {level:.0f} of 255 ({words})"
    if "contrast" in m:
        text += f", contrast {m['contrast']:.0f}" + (" (flat)" if m["contrast"] < 15 else "")
    if "bright_fraction" in m:
        text += f", {m['bright_fraction']:.0%} of the face over-exposed"
    if "dark_fraction" in m:
        text += f", {m['dark_fraction']:.0%} in deep shadow"
    return text + "."


def _reference_sentence(facts: ReportFacts) -> str:
    """The library's measures when it stored them; else the grade the candidate list shows."""
    if facts.reference_quality:
        return _quality_sentence("Reference image", facts.reference_quality)
    v = facts.view
    return " ".join([f"Reference image, recorded in the library: {v.reference_quality}.",
                     *v.reference_quality_reasons])


def prefill(facts: ReportFacts) -> dict[str, str]:
    """The pre-filled answers, by Match Report field (the officer's rationale is never pre-filled)."""
    v = facts.view
    other = []
    if facts.disability:
        other.append("The submission records that a disability may affect the detainee's appearance.")
    if facts.predates_reassignment:
        other.append("The submission records that reference photos may pre-date gender reassignment.")
    if facts.faces_found > 1:
        other.append(f"The photo held {facts.faces_found} faces; the officer chose the one searched.")
    if not other:
        other.append("None recorded by the system. Add any you see: glasses, facial hair, expression, injury, "
                     "make-up, camera angle.")
    return {
        "probe_quality": _quality_sentence("Detainee's photo", facts.probe_quality),
        "reference_quality": _reference_sentence(facts),
        "time_lapse": f"Reference image dated {v.image_date}; detainee's photo taken {facts.probe_taken}. "
                      f"Time lapse: {v.time_lapse}.",
        "lighting": _light("Detainee's photo", facts.probe_quality) + " "
                    + _light("Reference image", facts.reference_quality),
        "other_factors": " ".join(other),
        "age_judgement": f"Apparent age at the desk: {facts.apparent_age}. Age at the reference image: "
                         f"{v.age_at_image}.",
    }
