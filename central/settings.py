"""Central's settings: one strict, typed object loaded once at start.

Unknown keys are errors (a misspelt key would otherwise silently fall back to a
default), and every field says what it is for, because the file is edited by
whoever runs the server, not by whoever wrote it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from central.peer_review.settings import PeerReviewSettings
from central.publish.settings import PublishSettings, database_url
from central.reports.settings import ReportsSettings
from core.settings import StrictModel, load_settings
from transport.settings import MqttSettings
from webserver.metrics import MetricsSettings
from webserver.settings import ServedWebSettings

ENV_PREFIX = "RFR_CENTRAL"


class CentralMqttSettings(MqttSettings):
    """Where the broker is, and the identity central's ingest holds a session under."""

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


class IngestSettings(StrictModel):
    """How many ingest workers run, and whether they share the audit topics."""

    workers: int = Field(
        default=1, ge=1, le=64,
        description="Ingest workers. 1: in central's own process (client id <client_id>). More: one "
        "process each (Python runs one thread at a time per process), client id <client_id>-<n>, "
        "each with its own persistent session and database connection, started again at once if "
        "it dies (docs/operations.md, 'Central on several workers and machines').",
    )
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Subscribe with the MQTT v5 shared subscription $share/<group>/... so each "
        "event goes to one worker of the group (several processes may join it). Needed when "
        "workers > 1; without it every worker would receive every event.",
    )
    ack_interval_s: float = Field(
        default=0.2, gt=0, le=10,
        description="How often each worker tells devices how much of their chain is stored.",
    )


#: The placeholder in central.example.toml (and the one it had before): never a key a server may start with.
EXAMPLE_SECRET_KEYS = frozenset({"paste-the-output-of-python-secrets-token-hex-32-here",
                                 "change-me-change-me-change-me"})
MIN_SECRET_KEY_LENGTH = 43  # 32 random bytes as token_urlsafe; token_hex(32) gives 64
MIN_SECRET_KEY_SYMBOLS = 12  # distinct characters: "x" * 64 or "abab..." is not random
MAKE_SECRET_KEY = "python -c \"import secrets; print(secrets.token_hex(32))\""


def check_secret_key(key: str) -> str:
    """The key, if it could be 32 random bytes; else ``ValueError`` with one line saying how to make one.

    The key signs the sign-in form's CSRF cookie and the CSRF tokens (sessions themselves are rows in
    the database), so a guessable key lets a stranger forge those: the example, an empty key and
    anything shorter or plainer than 32 random bytes are refused at start.
    """
    key = key.strip()
    if not key:
        problem = "is empty"
    elif key in EXAMPLE_SECRET_KEYS:
        problem = "is the example's"
    elif len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < MIN_SECRET_KEY_SYMBOLS:
        problem = f"is shorter or plainer than 32 random bytes ({MIN_SECRET_KEY_LENGTH}+ varied characters)"
    else:
        return key
    raise ValueError(f"the web secret_key {problem}; make one with: {MAKE_SECRET_KEY}")


class WebSettings(ServedWebSettings):
    """The RFR team's web interface and the desks' /tuf repository: gunicorn over HTTPS, ``workers`` processes."""

    port: int = Field(default=8100, ge=1, le=65535, description="HTTPS port; no plain-HTTP port is opened.")
    workers: int = Field(default=2, ge=1, le=16, description="Web worker processes (each with ``threads`` "
                         "threads and its own database connections).")
    client_ca_file: Path | None = Field(
        default=None, description="The fleet CA bundle (ca.pem): desks present certificates from it to fetch "
        "/tuf. Absent: /tuf serves nobody.")
    crl_file: Path | None = Field(
        default=None, description="The fleet CRL checked for every /tuf request (default: [fleet] ca_dir's "
        "crl.pem); a revoked desk gets nothing.")
    secret_key: str = Field(
        description="Signs the CSRF tokens and the sign-in form's cookie: 32 random bytes kept out of version "
        f"control, made with {MAKE_SECRET_KEY}. The example's, an empty or a short key is refused at start.",
    )
    secure_cookie: bool = Field(
        default=True,
        description="Send cookies over HTTPS only. Turn off only for a test over plain HTTP: central is served "
        "over TLS, and a cookie sent in clear can be copied off the network.",
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, le=240, description="A session unused for this long ends (an unattended screen).")
    session_hours: int = Field(default=12, ge=1, le=24, description="Any session ends this long after sign-in.")

    @field_validator("secret_key")
    @classmethod
    def _random_enough(cls, key: str) -> str:
        return check_secret_key(key)


class FleetSettings(StrictModel):
    """Revocation and health of the desks (docs/fleet.md)."""

    command_key: Path | None = Field(
        default=None, description="Central's Ed25519 fleet-command key (python -m central devices command-key); "
        "signs every ack, peer review outcome and library announcement sent to the desks and the wipe sent to "
        "a revoked desk. Required to run the ingest (serve, ingest); desks refuse unsigned control messages.")
    ca_dir: Path | None = Field(default=None, description="The fleet CA directory: revocation adds the desk's "
                                "certificates to the CRL. Absent: only central's registry is changed.")
    broker_dir: Path | None = Field(default=None, description="The broker's directory (broker-config --out): "
                                    "its copy of the CRL is refreshed on revocation.")
    broker_pid_file: Path | None = Field(default=None, description="File holding the broker's pid, sent SIGHUP "
                                         "to reload the CRL.")
    stale_after_intervals: int = Field(default=3, ge=1, le=100, description="A desk with no heartbeat for this "
                                       "many of its intervals is flagged stale.")
    min_free_disk: float = Field(default=0.10, gt=0, lt=1, description="A desk with less free disk than this "
                                 "fraction is flagged unhealthy.")


class CentralSettings(StrictModel):
    """Everything ``python -m central serve`` needs."""

    data_dir: Path = Field(description="Folder holding central.db (audit events and rejections).")
    database: str | None = Field(
        default=None,
        description="Audit store URL: sqlite:///absolute/path.db or postgresql://user@host/db. "
        "Default: sqlite in data_dir/central.db.",
    )
    mqtt: CentralMqttSettings
    ingest: IngestSettings = IngestSettings()
    publish: PublishSettings = PublishSettings()
    reports: ReportsSettings = ReportsSettings()
    fleet: FleetSettings = FleetSettings()
    peer_review: PeerReviewSettings = PeerReviewSettings()
    web: WebSettings
    metrics: MetricsSettings | None = Field(
        default=None, description="Prometheus scrapes /metrics with a bearer token (docs/operations.md); absent: "
        "/metrics is not served.")

    @property
    def tuf_crl_file(self) -> Path | None:
        """The CRL /tuf checks: ``[web] crl_file``, else the one the fleet CA in ``[fleet] ca_dir`` writes."""
        if self.web.crl_file is not None:
            return self.web.crl_file
        return self.fleet.ca_dir / "crl.pem" if self.fleet.ca_dir is not None else None

    @property
    def review_probe_dir(self) -> Path:
        """Where peer review probes wait: ``[peer_review] probe_dir``, else data_dir/review-probes."""
        return self.peer_review.probe_dir or self.data_dir / "review-probes"

    @property
    def review_libraries(self) -> list[tuple[Path, Path, str]]:
        """(snapshot, key file, library id) central looks references up in: [[peer_review.libraries]], else
        the reports'."""
        chosen = self.peer_review.libraries or self.reports.libraries
        return [(entry.path, entry.key_file, getattr(entry, "library_id", "national")) for entry in chosen]

    @property
    def database_url(self) -> str:
        """The store URL to open, defaulting to SQLite in ``data_dir``."""
        return database_url(self.database, self.data_dir)

    def model_post_init(self, _context: object) -> None:
        if self.ingest.workers > 1 and not self.ingest.shared_group:
            raise ValueError("ingest.workers > 1 needs ingest.shared_group, or every worker stores every event")
        if self.web.client_ca_file is not None and self.tuf_crl_file is None:
            raise ValueError("web.client_ca_file needs web.crl_file (or fleet.ca_dir): /tuf checks every desk "
                             "against the fleet CRL")


def load(path: Path | None) -> CentralSettings:
    """Settings from a TOML file (optional) overridden by ``RFR_CENTRAL__SECTION__KEY`` variables."""
    return load_settings(CentralSettings, path, ENV_PREFIX)
