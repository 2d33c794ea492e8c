"""Central's settings: one strict, typed object loaded once at start.

Unknown keys are errors (a misspelt key would otherwise silently fall back to a
default), and every field says what it is for, because the file is edited by
whoever runs the server, not by whoever wrote it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings import StrictModel, load_settings

ENV_PREFIX = "RFR_CENTRAL"


class MqttSettings(StrictModel):
    """Where the broker is, and the identity central's ingest holds a session under."""

    host: str = Field(description="Broker host name or address.")
    port: int = Field(ge=1, le=65535, description="Broker TCP port.")
    client_id: str = Field(
        default="central-ingest",
        min_length=1,
        description="Fixed client id: the broker keeps the persistent session (and queued "
        "QoS 1 audit events) under this name while central is down.",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long the broker keeps central's session and queued events after a "
        "disconnect. Longer than any planned outage of central.",
    )


class WebSettings(StrictModel):
    """The RFR team's web interface."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8100, ge=1, le=65535, description="Port to listen on.")
    secret_key: str = Field(
        min_length=16,
        description="Signs sessions and CSRF tokens; a long random string kept out of version control.",
    )


class CentralSettings(StrictModel):
    """Everything ``python -m central serve`` needs."""

    data_dir: Path = Field(description="Folder holding central.db (audit events and rejections).")
    mqtt: MqttSettings
    web: WebSettings


def load(path: Path | None) -> CentralSettings:
    """Settings from a TOML file (optional) overridden by ``RFR_CENTRAL__SECTION__KEY`` variables."""
    return load_settings(CentralSettings, path, ENV_PREFIX)
