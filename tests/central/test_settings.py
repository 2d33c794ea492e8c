"""Central's settings: strict keys, environment overrides, and a sentence for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.__main__ import main
from central.settings import CentralSettings, load
from core.errors import SettingsError

EXAMPLE = Path(__file__).resolve().parents[2] / "central" / "central.example.toml"

GOOD = """
data_dir = "/tmp/central"
[mqtt]
host = "broker.local"
port = 8883
[web]
secret_key = "0123456789abcdef0123"
"""


def test_defaults_and_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    settings = load(path)
    assert isinstance(settings, CentralSettings)
    assert settings.mqtt.client_id == "central-ingest"
    assert (settings.web.host, settings.web.port) == ("127.0.0.1", 8100)
    assert settings.data_dir == Path("/tmp/central")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("RFR_CENTRAL__MQTT__PORT", "18830")
    assert load(path).mqtt.port == 18830


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace("[web]", "[web]\nprot = 1"))
    with pytest.raises(SettingsError, match=r"web\.prot"):
        load(path)


def test_example_file_is_valid() -> None:
    assert load(EXAMPLE).web.port == 8100


def test_serve_with_a_bad_config_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
