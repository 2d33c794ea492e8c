"""The appliance's one settings object: TOML file plus ``RFR_APPLIANCE__*`` environment overrides."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from appliance.updates.settings import UpdateSettings
from core.settings import StrictModel, load_settings
from core.topics import validate_device_id


class LibrarySettings(StrictModel):
    path: Path = Field(description="The library snapshot (SQLCipher file) to search.")
    key_file: Path = Field(description="Hex key that opens the snapshot (mode 0600).")
    store_dir: Path | None = Field(
        default=None, description="Where installed library versions live (default: data_dir/library)."
    )


class MqttSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=18830, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)


class WebSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    secret_key: str = Field(min_length=16, description="Signs session cookies and CSRF tokens.")
    max_upload_mb: int = Field(default=20, ge=1, le=100)


class SearchSettings(StrictModel):
    top_k: int = Field(default=10, ge=1, le=50, description="How many potential matches to show.")


class AuthSettings(StrictModel):
    """Sign-in and session rules; defaults follow the force's desk-terminal policy."""

    idle_timeout_minutes: int = Field(default=15, ge=1, le=240,
                                      description="A session unused for this long ends (unattended desk).")
    absolute_timeout_hours: int = Field(default=8, ge=1, le=24,
                                        description="Any session ends this long after sign-in (one shift).")
    lockout_after: int = Field(default=5, ge=1, le=50, description="Wrong passwords in a row that lock an account.")
    lockout_minutes: int = Field(default=15, ge=1, le=1440, description="How long a locked account stays locked.")
    min_password_length: int = Field(default=12, ge=8, le=128)
    secure_cookie: bool = Field(default=False, description="Send the session cookie over HTTPS only "
                                                            "(turn on when the desk UI is served over TLS).")


class ApplianceSettings(StrictModel):
    device_id: str
    data_dir: Path = Field(description="Device database and keys live here.")
    library: LibrarySettings
    mqtt: MqttSettings = MqttSettings()
    web: WebSettings
    search: SearchSettings = SearchSettings()
    auth: AuthSettings = AuthSettings()
    updates: UpdateSettings | None = Field(
        default=None, description="Library updates from central; absent: keep the provisioned library."
    )

    def model_post_init(self, _context: object) -> None:
        validate_device_id(self.device_id)


def load(path: Path | None, environ: dict[str, str] | None = None) -> ApplianceSettings:
    return load_settings(ApplianceSettings, path, "RFR_APPLIANCE", environ)
