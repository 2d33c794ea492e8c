from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.settings import ApplianceSettings
from appliance.web import create_app
from tests.desk_authorisation import seed_authorisation
from tests.desk_keys import provision_library_key
from tests.fleet_key import write_command_key


def own_copy(tmp_path: Path, shipped: Path) -> Path:
    """The desk's own copy of a session-wide library file: a desk that is wiped, or whose provisioned library
    is retired or expires, destroys the file it was installed from, which other tests still need. A file that
    is not there is passed through as it is: a test that removed it wants the desk to find it missing."""
    if not Path(shipped).exists():
        return Path(shipped)
    target = tmp_path / "shipped-library" / Path(shipped).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shipped, target)
    return target


def appliance_settings(tmp_path: Path, library: tuple[Path, Path], mqtt_port: int = 1, *, authorised: bool = True,
                       **over) -> ApplianceSettings:
    """A provisioned desk's settings: its own key-wrapping key, the library key wrapped to it (as central does),
    and the test central's fleet-command public key (``tests.fleet_key``) unless told otherwise.

    ``authorised``: the desk is given central's authorisation manifest for its provisioned library through the
    desk's own apply path (``tests.desk_authorisation``), as a provisioned desk receives it on first contact."""
    device_id, data_dir = over.get("device_id", "desk-test-01"), over.get("data_dir", tmp_path / "device")
    data = {
        "device_id": device_id,
        "data_dir": data_dir,
        "library": {"path": own_copy(tmp_path, library[0]),
                    "wrapped_key": provision_library_key(data_dir, device_id, library[1])},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "web": {"secret_key": "test-secret-key-0123456789"},
    }
    if "fleet_command_public_key" not in over:
        data["fleet_command_public_key"] = write_command_key(tmp_path / "central-key")[1]
    data.update(over)
    settings = ApplianceSettings.model_validate(data)
    if authorised:
        seed_authorisation(settings)
    return settings


@pytest.fixture
def app(tmp_path, demo_library, pipeline):
    """The desk app with the real pipeline and library, sync not started (no broker needed)."""
    application = create_app(appliance_settings(tmp_path, demo_library), pipeline=pipeline, start_sync=False)
    application.config["TESTING"] = True
    return application
