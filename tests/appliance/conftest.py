from __future__ import annotations

from pathlib import Path

import pytest

from appliance.settings import ApplianceSettings
from appliance.web import create_app
from tests.fleet_key import write_command_key


def appliance_settings(tmp_path: Path, library: tuple[Path, Path], mqtt_port: int = 1, **over) -> ApplianceSettings:
    """A desk's settings; it trusts the test central's fleet-command key (``tests.fleet_key``) unless told otherwise."""
    data = {
        "device_id": "desk-test-01",
        "data_dir": tmp_path / "device",
        "library": {"path": library[0], "key_file": library[1]},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "web": {"secret_key": "test-secret-key-0123456789"},
    }
    if "fleet_command_public_key" not in over:
        data["fleet_command_public_key"] = write_command_key(tmp_path / "central-key")[1]
    data.update(over)
    return ApplianceSettings.model_validate(data)


@pytest.fixture
def app(tmp_path, demo_library, pipeline):
    """The desk app with the real pipeline and library, sync not started (no broker needed)."""
    application = create_app(appliance_settings(tmp_path, demo_library), pipeline=pipeline, start_sync=False)
    application.config["TESTING"] = True
    return application
