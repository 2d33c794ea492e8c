"""Central's settings: strict keys, environment overrides, and a sentence for each mistake."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from central.__main__ import main
from central.settings import CentralSettings, load
from central.web import create_app
from core.errors import SettingsError

EXAMPLE = Path(__file__).resolve().parents[2] / "central" / "central.example.toml"

GOOD = """
data_dir = "/tmp/central"
[mqtt]
host = "broker.local"
port = 8883
[web]
secret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"
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


def test_example_file_is_valid_once_given_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFR_CENTRAL__WEB__SECRET_KEY", secrets.token_hex(32))
    settings = load(EXAMPLE)
    assert settings.web.port == 8100 and settings.web.secure_cookie


MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'


@pytest.mark.parametrize("key", [
    None,  # the example file's placeholder
    "change-me-change-me-change-me",  # the placeholder central shipped with before
    "",
    "0123456789abcdef0123",  # 20 characters: far fewer than 32 random bytes
    "x" * 64,  # long but not random
    "ab" * 32,
])
def test_central_refuses_to_start_without_a_real_secret_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], key) -> None:
    config = tmp_path / "c.toml"
    text = EXAMPLE.read_text()
    if key is not None:
        text = re.sub(r'(?m)^secret_key = .*$', f'secret_key = "{key}"', text)
    config.write_text(text)
    with pytest.raises(SettingsError) as refused:
        load(config)
    assert MAKE_ONE in str(refused.value) and "web.secret_key" in str(refused.value)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if MAKE_ONE in line] and "Traceback" not in err


def test_the_app_refuses_a_short_key_however_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="token_hex"):
        create_app(test_config={"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                                "DATABASE": str(tmp_path / "c.db")})
    assert not (tmp_path / "c.db").exists()  # refused before anything was opened


def test_serve_with_a_bad_config_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
