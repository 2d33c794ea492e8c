"""docs/operations.md's Prometheus configuration: it parses, and its alerts use only metrics the code exposes.

Prometheus refuses a rules file that does not parse, and an alert on a misspelt metric never fires: both
would be found only on the day it mattered. This reads the YAML blocks as Prometheus's loader would
(``yaml.safe_load``), checks the alerts the issue asks for are there with the fields Prometheus needs, and
that every ``rfr_`` metric an expression names is one of those a real scrape of a desk or central shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"
#: The issue's alerts: desk silent, outbox growing, library stale, chain finding, evaluation-grade model in use.
REQUIRED_ALERTS = {"RfrDeskSilent", "RfrOutboxGrowing", "RfrLibraryStale", "RfrChainFinding",
                   "RfrEvaluationGradeModelInUse"}
SOURCES = [ROOT / "appliance" / "web" / "metrics.py", ROOT / "central" / "web" / "metrics.py"]


def yaml_blocks() -> list[object]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 2, "docs/operations.md should hold the scrape config and the rules"
    return [yaml.safe_load(block) for block in blocks]


def exposed_names() -> set[str]:
    """Metric names the code declares (a counter ``x`` is scraped as ``x_total``, a histogram as ``x_count``...)."""
    names = set()
    for source in SOURCES:
        for name in re.findall(r'"(rfr_(?:desk|central)_[a-z_]+)"', source.read_text()):
            names |= {name, f"{name}_total", f"{name}_count", f"{name}_sum", f"{name}_bucket"}
    return names


def test_scrape_config_uses_https_and_the_bearer_token_file():
    scrape, _rules = yaml_blocks()
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert set(jobs) == {"rfr-central", "rfr-desks"}
    for job in jobs.values():
        assert job["scheme"] == "https" and job["metrics_path"] == "/metrics"
        assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
        assert job["tls_config"]["ca_file"]


def test_alert_rules_parse_and_name_only_exposed_metrics():
    _scrape, rules = yaml_blocks()
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert set(alerts) >= REQUIRED_ALERTS
    known = exposed_names()
    assert "rfr_desk_searches_total" in known and "rfr_central_heartbeat_age_seconds" in known
    for name, rule in alerts.items():
        assert rule["expr"] and rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert re.fullmatch(r"\d+[smhd]", rule.get("for", "0s")), name
        used = set(re.findall(r"rfr_[a-z_]+", rule["expr"]))
        assert used and used <= known, (name, used - known)
