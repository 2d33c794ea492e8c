"""The appliance's one settings object: TOML file plus ``RFR_APPLIANCE__*`` environment overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.display_time import UnknownTimeZoneError, zone
from core.settings import StrictModel, load_settings
from core.topics import validate_device_id
from devicekeys.wrapping import default_path as wrapping_key_default
from models.manifest import fused_names, manifest_names
from models.pipeline import DEFAULT_EMBEDDER
from transport.settings import MqttSettings
from webserver.metrics import MetricsSettings
from webserver.settings import ServedWebSettings


class UpdateSettings(StrictModel):
    """Library updates from central. Absent: the desk keeps the library it was provisioned with."""

    central_url: str = Field(
        pattern=r"^https?://[^/\s]+$",
        description="Central's base URL, e.g. https://central.force.local:8100 (no path). Use https outside "
        "a test bench: TUF protects the content either way, TLS also hides which versions a desk fetches.",
    )
    trusted_root: Path = Field(
        description="central's 1.root.json, copied onto the desk at provisioning: the trust anchor for every "
        "update. Used only on first contact; afterwards the verified copy under data_dir/updates is used.",
    )
    ca_file: Path | None = Field(default=None, description="CA certificate(s) for central's HTTPS certificate "
                                  "(the fleet CA bundle, pki/ca.pem, when central's certificate is from it).")
    cert_file: Path | None = Field(default=None, description="This desk's fleet certificate (pki/device.crt), shown "
                                   "to central: /tuf serves only enrolled, unrevoked desks.")
    key_file: Path | None = Field(default=None, description="Its private key (pki/device.key: a 0600 file, or "
                                  "sealed to the TPM and unsealed into memory only).")
    poll_interval_s: int = Field(
        default=900, ge=0, le=86400,
        description="Check this often even without an announcement (0: only on announcements). Keep it well "
        "under central's timestamp expiry (1 day) so a freeze is noticed.",
    )
    max_download_mb: int = Field(default=4096, ge=1, le=65536,
                                 description="No single download may exceed this, whatever a server sends.")
    timeout_s: int = Field(default=30, ge=1, le=600, description="Network timeout for each request.")
    max_resumes: int = Field(default=5, ge=0, le=100, description="Resumes of one download after a cut link.")
    repair_retry_s: float = Field(default=30, gt=0, le=3600,
                                  description="A damaged library's re-fetch from central is tried again after this "
                                  "many seconds, doubling each time up to an hour, until it succeeds.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> UpdateSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together")
        return self


class LibrarySettings(StrictModel):
    """The library shipped at provisioning, and the key it opens with: wrapped to this desk, never shared.

    Exactly one of ``wrapped_key`` (the secure form) and ``insecure_plain_key_file`` must be set.
    """

    path: Path = Field(description="The library snapshot (SQLCipher file) shipped at provisioning.")
    library_id: str = Field(default="national", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                            description="The library lineage central wraps keys for (core.keywrap).")
    wrapped_key: Path | None = Field(
        default=None, description="The snapshot's content key wrapped to this desk's key-wrapping key, from "
        "`python -m central devices wrap-library-key` (safe to copy: only this desk's sealed key opens it).")
    insecure_plain_key_file: Path | None = Field(
        default=None, description="INSECURE, development only: a plain hex key file that opens the snapshot. "
        "Whoever copies it reads the library; the heartbeat reports key_protection 'insecure' while it is set.")
    store_dir: Path | None = Field(
        default=None, description="Where installed library versions live (default: data_dir/library)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_shared_key_file(cls, data: object) -> object:
        if isinstance(data, dict) and "key_file" in data:
            raise ValueError("key_file is no longer read: a desk gets its library key wrapped to its own key "
                             "(wrapped_key, from `python -m central devices wrap-library-key`); a plain key file "
                             "only as insecure_plain_key_file, for development (docs/fleet.md)")
        return data

    @model_validator(mode="after")
    def _one_key(self) -> LibrarySettings:
        if (self.wrapped_key is None) == (self.insecure_plain_key_file is None):
            raise ValueError("set exactly one of wrapped_key (the library key wrapped to this desk) and "
                             "insecure_plain_key_file (development only); key_file is no longer read")
        return self


class DeskMqttSettings(MqttSettings):
    """The desk's broker: the loopback development broker unless set; for the fleet broker give the mutual-TLS
    files ``python -m provisioning device-install`` prints (pki/ca.pem, pki/device.crt, pki/device.key)."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=18830, ge=1, le=65535, description="Broker TCP port.")
    keepalive_s: int = Field(default=30, ge=5, le=3600)


class WebSettings(ServedWebSettings):
    """The desk UI: gunicorn over HTTPS with the desk's web certificate from enrolment (pki/web.crt), in one
    worker process (the device database and MQTT link have one writer per process) with ``threads`` threads."""

    port: int = Field(default=8000, ge=1, le=65535, description="HTTPS port; no plain-HTTP port is opened.")
    secret_key: str = Field(min_length=16, description="Signs session cookies and CSRF tokens.")
    max_upload_mb: int = Field(default=20, ge=1, le=100, description="Largest request body (a probe photo); "
                               "larger is refused before it is read.")
    time_zone: str = Field(default="Europe/London", description="IANA zone the pages show times in (with its "
                           "name, e.g. GMT or BST); exports carry UTC.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except UnknownTimeZoneError as e:
            raise ValueError(str(e)) from e
        return value


class ModelSettings(StrictModel):
    """Which face pipeline the desk runs. Its libraries must be built with the same one (the desk refuses others)."""

    embedder: str = Field(default=DEFAULT_EMBEDDER, description="A shipped embedder or fused manifest name, e.g. "
                          "sface_dlib_int8 (the default) or sface_dlib (the same fusion in fp32, docs/model-card.md).")

    @field_validator("embedder")
    @classmethod
    def _shipped(cls, value: str) -> str:
        names = set(manifest_names()) | set(fused_names())
        if value not in names:
            raise ValueError(f"{value!r} is not a shipped face model; choose one of {', '.join(sorted(names))}")
        return value


class SearchSettings(StrictModel):
    top_k: int = Field(default=10, ge=1, le=50, description="How many potential matches to show.")


class AuthSettings(StrictModel):
    """Sign-in and session rules; defaults follow the force's desk-terminal policy."""

    idle_timeout_minutes: int = Field(default=15, ge=1, le=240,
                                      description="A session unused for this long ends (unattended desk).")
    absolute_timeout_hours: int = Field(default=8, ge=1, le=24,
                                        description="Any session ends this long after sign-in (one shift).")
    throttle_after: int = Field(default=5, ge=1, le=50, description="Wrong passwords in a row (for an account, or "
                                "from one address) before each further attempt must wait; the wait doubles from "
                                "one second with every further wrong password.")
    throttle_account_max_s: float = Field(default=60, ge=1, le=3600, description="The longest an account's "
                                          "attempts wait: kept short, so a stranger's guesses cannot keep its "
                                          "owner out.")
    throttle_address_max_s: float = Field(default=60, ge=1, le=86400, description="The longest attempts from "
                                          "one client address wait (the guesser's side of the throttle). Every "
                                          "officer at a desk signs in from its one screen, so a shift's typos add "
                                          "up there: a minute at most keeps the desk usable, and still limits a "
                                          "guesser to about one password a minute.")
    min_password_length: int = Field(default=12, ge=8, le=128)
    secure_cookie: bool = Field(default=False, description="Send the session cookie over HTTPS only. "
                                "`python -m appliance serve` is HTTPS only and always sets it; off is for the "
                                "Flask test client alone.")


class PeerReviewSettings(StrictModel):
    """Where doubtful adjudications are peer reviewed."""

    channel: Literal["local", "central"] = Field(
        default="local", description="'central': requests go to the facial recognition team over MQTT and the "
        "outcome comes back; 'local': the offline fallback, a technical adviser records it on this device.")
    resend_after_s: float = Field(default=300.0, ge=1, le=86400, description="Send a request again after this "
                                  "long without an outcome (and on every reconnection); central ignores repeats.")
    central_review_key: Path | None = Field(
        default=None, description="Central's review public key (the .pub file, 64 hex digits, from `python -m "
        "central.peer_review review-key`). With it, a request to central carries the probe's face thumbnail "
        "sealed to that key, so the reviewer sees the face searched; central destroys it once the review is "
        "answered. Without it the request carries references only.")


class KeySettings(StrictModel):
    """Where the device's keys are kept (docs/fleet.md, key protection): the database key, the audit signing
    key and the key-wrapping key that opens library keys."""

    protection: Literal["auto", "tpm", "file"] = Field(
        default="auto", description="'auto': sealed to the TPM when one is reachable (TPM2TOOLS_TCTI or "
        "/dev/tpmrm0), else 0600 files reported as weaker in the health heartbeat; 'tpm': refuse to start "
        "without a TPM; 'file': never seal (development only).")
    pcrs: str = Field(default="sha256:7", pattern=r"^sha(1|256|384|512):[0-9]{1,2}(,[0-9]{1,2})*$",
                      description="PCRs a sealed key is bound to (tpm2-tools selection): the measured boot "
                      "state it unseals in. Default: PCR 7, Secure Boot state.")
    wrapping_key: Path | None = Field(
        default=None, description="The desk's X25519 key-wrapping key (default: data_dir/pki/library-wrap.key, "
        "made by `python -m provisioning device-keygen`).")


class HealthSettings(StrictModel):
    """The heartbeat the desk publishes to central's fleet page."""

    interval_s: float = Field(default=60.0, ge=0.2, le=3600, description="Seconds between heartbeats; "
                              "central flags the desk as stale after three intervals without one.")


class ApplianceSettings(StrictModel):
    device_id: str
    data_dir: Path = Field(description="Device database and keys live here.")
    library: LibrarySettings
    mqtt: DeskMqttSettings = DeskMqttSettings()
    web: WebSettings
    search: SearchSettings = SearchSettings()
    models: ModelSettings = ModelSettings()
    auth: AuthSettings = AuthSettings()
    peer_review: PeerReviewSettings = PeerReviewSettings()
    updates: UpdateSettings | None = Field(
        default=None, description="Library updates from central; absent: keep the provisioned library."
    )
    keys: KeySettings = KeySettings()
    health: HealthSettings = HealthSettings()
    metrics: MetricsSettings | None = Field(
        default=None, description="Prometheus scrapes /metrics with a bearer token (docs/operations.md); absent: "
        "/metrics is not served.")
    fleet_command_public_key: Path = Field(
        description="Central's fleet-command public key (PEM, installed at provisioning: central's "
        "fleet-command.pem.pub). Only what it signed is believed: central's acks (which delete pending audit "
        "events), peer review outcomes, library announcements and fleet commands (a wipe after revocation).")

    def model_post_init(self, _context: object) -> None:
        validate_device_id(self.device_id)

    @property
    def wrapping_key_path(self) -> Path:
        """The key-wrapping key: where provisioning made it unless ``[keys] wrapping_key`` says otherwise."""
        return self.keys.wrapping_key or wrapping_key_default(self.data_dir)

    @property
    def library_store_dir(self) -> Path:
        """Where installed library versions live: the desk installs there and the selftest reads the same place."""
        return self.library.store_dir or self.data_dir / "library"


def load(path: Path | None, environ: dict[str, str] | None = None) -> ApplianceSettings:
    return load_settings(ApplianceSettings, path, "RFR_APPLIANCE", environ)
