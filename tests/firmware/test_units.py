"""The systemd units: valid for systemd-analyze, hardened, credentials encrypted, sync folded into the appliance."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.agent.config import AgentConfig

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
    # The update service keeps CAP_SYS_ADMIN alone: PID 1 lets root start units (systemd-run, systemctl) with it.
    for name, caps in (("custody-rfr-appliance.service", ""), ("custody-rfr-update.service", "CAP_SYS_ADMIN")):
        service = _unit(name)["Service"]
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                           "ProtectHome": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": caps}.items():
            assert service.get(key) == value, (name, key)


def _lines(name: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in (UNITS / name).read_text().splitlines() if line.startswith(f"{key}=")]


def test_default_health_check_runs_the_selftest_as_the_appliance_does() -> None:
    [cmd] = AgentConfig(repository_url="https://x.invalid", trusted_root=Path("r.json")).health_commands
    assert cmd[:6] == ["systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--unit=custody-rfr-selftest.service"]
    options, command = cmd[:cmd.index("--")], cmd[cmd.index("--") + 1:]
    assert command == ["{python}", "-m", "appliance", "selftest", "--config", "/etc/custody-rfr/appliance.toml"]
    props = [options[i + 1] for i, o in enumerate(options) if o == "-p"]
    appliance = _unit("custody-rfr-appliance.service")["Service"]
    assert f"User={appliance['User']}" in props and f"Group={appliance['Group']}" in props
    credentials = _lines("custody-rfr-appliance.service", "LoadCredentialEncrypted")
    assert len(credentials) == 3
    assert [p for p in props if p.startswith("LoadCredentialEncrypted=")] == [
        f"LoadCredentialEncrypted={c}" for c in credentials]
    # appliance.toml's key paths name the appliance's credentials directory: the selftest's own is bound there.
    assert ("BindReadOnlyPaths=/run/credentials/custody-rfr-selftest.service:"
            "/run/credentials/custody-rfr-appliance.service") in props
    environment = _lines("custody-rfr-appliance.service", "Environment")
    assert environment == ["RFR_CACHE_DIR=/usr/share/custody-rfr/cache", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"]
    assert [p for p in props if p.startswith("Environment=")] == [f"Environment={e}" for e in environment]
    assert _lines("custody-rfr-update.service", "Environment") == environment[:1]


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
