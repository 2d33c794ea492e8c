"""docs/operations.md's Prometheus configuration: it parses, and its alerts use only metrics the code exposes.

Prometheus refuses a rules file that does not parse, and an alert on a misspelt metric never fires: both
would be found only on the day it mattered. This reads the YAML blocks as Prometheus's loader would
(``yaml.safe_load``), checks the alerts the issue asks for are there with the fields Prometheus needs, and
that every ``rfr_`` metric an expression names is one of those a real scrape of a desk or central shows.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest
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


# --- install, backup and key rotation: the commands and units the operations guide names exist ----------------

UNITS = ROOT / "central" / "systemd"
#: What the desk's unit (firmware/systemd/custody-rfr-appliance.service) sets, and so every central unit must.
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
             "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
             "LockPersonality": "yes", "SystemCallArchitectures": "native", "SystemCallFilter": "@system-service",
             "UMask": "0077", "CapabilityBoundingSet": "", "User": "rfr-central"}
#: The project's own command-line programs (``python -m supply.install`` and the like are not argparse tools).
OWN_CLIS = ("central", "provisioning", "firmware.", "appliance")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def commands(text: str) -> set[tuple[str, ...]]:
    """(module, subcommand...) of every ``python -m`` the text names, global ``--config X`` skipped."""
    found = set()
    for match in re.finditer(r"python -m ([a-z_.]+)((?: --config \S+)?(?: [a-z][a-z-]*)*)", text):
        module, rest = match.group(1), re.sub(r" --config \S+", "", match.group(2))
        if module.startswith(OWN_CLIS):
            found.add((module, *rest.split()))
    return found


def assert_help_works(command: tuple[str, ...]) -> None:
    """``python -m MODULE SUB... --help`` exits 0: the module and each subcommand exist (argparse stops there)."""
    module = importlib.import_module(command[0] + ".__main__" if (ROOT / command[0].replace(".", "/")).is_dir()
                                     else command[0])
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
        module.main([*command[1:], "--help"])
    assert done.value.code == 0, command


def test_central_units_are_hardened_like_the_desks_and_run_commands_that_exist():
    services = sorted(UNITS.glob("*.service"))
    assert {p.stem for p in services} >= {"custody-rfr-central", "custody-rfr-central-ingest",
                                          "custody-rfr-central-timestamp", "custody-rfr-central-backup"}
    for path in services:
        service = unit(path)["Service"]
        for key, value in HARDENING.items():
            assert service.get(key) == value, (path.name, key)
        assert service.get("ReadWritePaths"), path.name
        ran = commands(service["ExecStart"])
        assert ran, path.name
        for command in ran:
            assert_help_works(command)
    for timer in UNITS.glob("*.timer"):
        assert (UNITS / f"{timer.stem}.service").is_file(), timer.name
        assert unit(timer)["Timer"].get("Persistent") in ("yes", "true"), timer.name
    stamp = unit(UNITS / "custody-rfr-central-timestamp.timer")["Timer"]
    assert stamp["OnUnitActiveSec"] == "1h"  # hourly, inside the timestamp's one-day validity
    guide = DOC.read_text()
    assert all(path.name in guide for path in UNITS.iterdir()), "docs/operations.md should name every unit"


def test_every_command_the_operations_guide_names_exists():
    named = commands(DOC.read_text())
    assert {("central", "backup"), ("central", "restore"), ("central.publish", "refresh-timestamp"),
            ("provisioning", "server-cert"), ("provisioning", "crl"), ("central", "devices", "command-key"),
            ("central.peer_review", "review-key"), ("central.publish", "publish")} <= named
    for command in sorted(named):
        assert_help_works(command)


def test_the_key_rotation_table_covers_every_key_and_says_where_no_command_exists():
    section = DOC.read_text().split("## Key rotation", 1)[1].split("\n## ", 1)[0]
    for key in ("TUF online keys", "TUF root", "fleet CA", "fleet-command key", "lineage key", "peer review key"):
        assert key in section, key
    rows = [line for line in section.splitlines() if line.startswith("| ")]

    def row(name: str) -> str:
        return next(line for line in rows if name in line.split("|")[1])

    for name in ("TUF online keys", "TUF root", "fleet CA issuing key", "broker and central MQTT", "fleet-command key"):
        assert "python -m " in row(name) and "**no command**" not in row(name), name  # the commands exist (above)
    assert "**no command**" in row("peer review key")  # where there is none, said plainly, not invented
