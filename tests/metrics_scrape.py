"""Read a Prometheus scrape the way Prometheus does, and check what its labels may hold (tests only)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from webserver.metrics import LABEL_VALUE

#: What a label value must never look like: a case id (16+ hex), a custody or subject reference, a name or
#: any text with spaces, a date of birth, or a number with decimals (a score or a template value).
PERSONAL_LABEL = re.compile(r"[0-9A-F]{16,}|^CR-|DEMO-|\s|\d{4}-\d{2}-\d{2}|^-?\d+\.\d+$", re.IGNORECASE)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value, 0 when the series is absent (a counter nothing has moved yet)."""
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def label_problems(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float],
                   forbidden: tuple[str, ...] = ()) -> list[str]:
    """Label values that look personal, break the code-word rule, or contain one of ``forbidden``."""
    problems = []
    for (name, labels), _v in scrape.items():
        for key, val in labels:
            if key == "le":  # histogram bucket bounds are numbers by design
                continue
            if (PERSONAL_LABEL.search(val) or not LABEL_VALUE.fullmatch(val)
                    or any(f and f.lower() in val.lower() for f in forbidden)):
                problems.append(f"{name}{{{key}={val!r}}}")
    return problems
