"""The systemd units: valid for systemd-analyze, hardened, credentials encrypted, sync folded into the appliance."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "firmware" / "systemd"
AGENT_PYTHON = "/opt/custody-rfr/agent/bin/python"


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that executables exist: stand this interpreter in for the image's agent venv.
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(AGENT_PYTHON, sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(map(str, tmp_path.iterdir()))],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # no unknown keys, no bad values


def test_services_are_hardened() -> None:
    for name in ("custody-rfr-appliance.service", "custody-rfr-update.service"):
        service = _unit(name)["Service"]
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                           "ProtectHome": "yes", "CapabilityBoundingSet": ""}.items():
            assert service.get(key) == value, (name, key)


def test_appliance_runs_as_its_own_user_with_watchdog_and_encrypted_credentials() -> None:
    service = _unit("custody-rfr-appliance.service")["Service"]
    assert (service["User"], service["Type"], service["WatchdogSec"]) == ("custody-rfr", "notify", "60")
    assert service["ReadWritePaths"] == "/var/lib/custody-rfr/data"  # the slots are read-only to the appliance
    assert "firmware.agent" in service["ExecStartPre"] and service["ExecStartPre"].endswith(" boot")
    assert service["ExecStartPost"].endswith(" confirm")
    text = (UNITS / "custody-rfr-appliance.service").read_text()
    assert "LoadCredentialEncrypted=library.key:/etc/credstore.encrypted/library.key" in text


def test_update_timer_replaces_a_separate_sync_service() -> None:
    assert not (UNITS / "custody-rfr-sync.service").exists()
    timer = _unit("custody-rfr-update.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
