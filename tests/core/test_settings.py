from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import StrictModel, load_settings


class Mqtt(StrictModel):
    host: str = "127.0.0.1"
    port: int = 1883


class Example(StrictModel):
    name: str
    mqtt: Mqtt = Mqtt()


def test_environment_overrides_the_file(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "desk"\n[mqtt]\nport = 1000\n')
    settings = load_settings(Example, path, "RFR_X", {"RFR_X__MQTT__PORT": "2000"})
    assert settings.name == "desk" and settings.mqtt.port == 2000


def test_errors_name_the_key(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "desk"\n[mqtt]\nport = "many"\nspeed = 3\n')
    with pytest.raises(SettingsError) as info:
        load_settings(Example, path, "RFR_X", {})
    assert "mqtt.port" in str(info.value) and "mqtt.speed" in str(info.value)


def test_missing_and_malformed_files_are_reported(tmp_path: Path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(Example, tmp_path / "nope.toml", "RFR_X", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(Example, bad, "RFR_X", {})
