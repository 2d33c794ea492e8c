"""The submission form read from a request, for a new request and for one sent again after a return.

One reading of the form, so a request changed after "Return for changes" is checked exactly as a
new one is: the same fields, the same plain-English errors, the same unanswered-question rule. The
libraries to search are ticked boxes (``libraries``), among those the desk offers for custody now
(``CaseService.library_choices``); the service refuses any other (``appliance.services.library_choice``).
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from appliance.services.cases import Case
from appliance.services.policy import AGE_BAND_LABELS, PRE_SEARCH_CHECKS, REASON_LABELS, Submission


def read(form: MultiDict[str, str]) -> tuple[Submission, dict[str, str]]:
    """The submission, and an error for each yes/no question left unanswered (the form has no default)."""
    sub = Submission(
        custody_ref=form.get("custody_ref", ""), reason=form.get("reason", ""),
        checks=tuple(form.getlist("checks")), checks_detail=form.get("checks_detail", ""),
        age_band=form.get("age_band", ""), disability=form.get("disability") == "yes",
        predates_reassignment=form.get("reassignment") == "yes",
    )
    unanswered = {name: "Answer yes or no." for name in ("disability", "reassignment")
                  if form.get(name) not in ("yes", "no")}
    return sub, unanswered


def chosen_libraries(form: MultiDict[str, str]) -> list[str]:
    """The library ids ticked (none ticked: an empty list, which the service refuses)."""
    return form.getlist("libraries")


def values_from_form(sub: Submission, form: MultiDict[str, str]) -> dict[str, Any]:
    """What the officer typed, to show again beside the errors."""
    return {"custody_ref": sub.custody_ref, "reason": sub.reason, "checks": sub.checks,
            "checks_detail": sub.checks_detail, "age_band": sub.age_band,
            "disability": form.get("disability", ""), "reassignment": form.get("reassignment", ""),
            "libraries": chosen_libraries(form)}


def values_from_case(case: Case) -> dict[str, Any]:
    """A returned request's answers, to start the changed request from."""
    sub = case.submission
    return {"custody_ref": sub.custody_ref, "reason": sub.reason, "checks": sub.checks,
            "checks_detail": sub.checks_detail, "age_band": sub.age_band,
            "disability": "yes" if sub.disability else "no",
            "reassignment": "yes" if sub.predates_reassignment else "no", "libraries": case.chosen_libraries}


def context(errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
            libraries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The form's context; ``libraries`` are the offered ones, ticked as ``values`` say, else the default set."""
    values = dict(values or {})
    offered = libraries or []
    if "libraries" not in values:
        values["libraries"] = [lib["library_id"] for lib in offered if lib["default"]]
    return {"errors": errors or {}, "values": values, "reasons": REASON_LABELS, "checks": PRE_SEARCH_CHECKS,
            "age_bands": AGE_BAND_LABELS, "libraries": offered}
