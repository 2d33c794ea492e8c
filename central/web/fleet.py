"""``/fleet``: every registered desk with its last heartbeat and flags, its history, and revocation.

Flags come from ``central.fleet.status`` (stale, unhealthy, old library, revoked). The page also shows which
reference libraries each desk holds, and per library which desks still hold it (``central.fleet.holdings``),
marking copies of a retired or expired library that a desk has not yet destroyed. Revoking is a
CSRF-protected form with a typed confirmation (the desk id), because it cannot be undone: the
desk is refused from then on and, if connected, wipes itself (``central.fleet.revoke``).
Only a signed-in ``fleet_admin`` reaches these pages, and the revocation records that account's username.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from central.fleet.holdings import Holdings, holdings
from central.fleet.model_grade import EVALUATION, grade_of
from central.fleet.revoke import PkiTarget, RevocationError, load_command_key, revoke_device
from central.fleet.status import fleet_status
from central.ingest.mqtt import publish_once
from central.settings import CentralMqttSettings, FleetSettings
from central.web.auth import current_user, signed_in_user
from central.web.guards import extension, found
from central.web.stores import health_store, library_register, registry_store
from core.errors import WireFormatError
from core.topics import validate_device_id

logger = logging.getLogger(__name__)

bp = Blueprint("fleet", __name__, url_prefix="/fleet")


@dataclass(frozen=True)
class FleetConfig:
    settings: FleetSettings
    mqtt: CentralMqttSettings | None  # how to reach the broker for the wipe; None: no wipe is sent


def init_app(app: Flask, settings: FleetSettings | None, mqtt: CentralMqttSettings | None) -> None:
    """``FLEET`` in the app config (tests) overrides the settings file's ``[fleet]`` and ``[mqtt]``."""
    app.extensions["central.fleet"] = app.config.get("FLEET") or FleetConfig(settings or FleetSettings(), mqtt)
    app.register_blueprint(bp)
    app.context_processor(_model_warning_context)


@dataclass(frozen=True)
class ModelWarning:
    """Desks searching with an evaluation-grade face model, for the banner on every central page."""

    devices: tuple[str, ...]
    models: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.devices)


def model_warning() -> ModelWarning | None:
    """From each desk's newest heartbeat (revoked desks left out: they search nothing); None if no desk."""
    revoked = registry_store().revocations()
    hits = {d: str(h["embedder_id"]) for d, h in health_store().latest_health().items()
            if d not in revoked and grade_of(h.get("embedder_id")) == EVALUATION}
    if not hits:
        return None
    return ModelWarning(tuple(sorted(hits)), tuple(sorted(set(hits.values()))))


def _model_warning_context() -> dict[str, object]:
    """Only for a signed-in person: the sign-in page asks the database nothing."""
    return {"model_warning": model_warning() if current_user() is not None else None}


def _config() -> FleetConfig:
    return extension("central.fleet", FleetConfig)


def _published_library() -> int | None:
    """The newest library version central publishes, if it runs a TUF repository here."""
    repo_dir = current_app.config.get("TUF_REPO_DIR")
    if not repo_dir:
        return None
    from central.publish.repository import PublishError, TufRepository

    try:
        versions = [info.library_version for info in TufRepository(repo_dir).published().values()]
    except PublishError as e:
        logger.warning("cannot read the TUF repository for the newest library: %s", e)
        return None
    return max(versions, default=None)


def _device(device_id: str) -> str:
    try:
        validate_device_id(device_id)
    except WireFormatError as e:
        abort(404, str(e))
    found(registry_store().public_key(device_id), f"There is no registered device {device_id!r}.")
    return device_id


def _holdings(latest: Mapping[str, Mapping[str, Any]], revoked: Mapping[str, Any]) -> Holdings:
    """Which desk holds which library, judged against central's register of governed libraries."""
    return holdings(latest, library_register().libraries(), now=datetime.now(UTC), revoked=revoked)


@bp.get("")
def index() -> str:
    registry, config = registry_store(), _config()
    latest, revoked = health_store().latest_health(), registry.revocations()
    rows = fleet_status(sorted(registry.registered_devices()), latest, revoked,
                        now=datetime.now(UTC), published_library=_published_library(),
                        stale_after=config.settings.stale_after_intervals,
                        min_free_disk=config.settings.min_free_disk)
    return render_template("fleet/index.html", rows=rows, held=_holdings(latest, revoked),
                           messages=get_flashed_messages())


@bp.get("/<device_id>")
def device(device_id: str) -> str:
    health, config = health_store(), _config()
    _device(device_id)
    status = fleet_status([device_id], health.latest_health(), registry_store().revocations(), now=datetime.now(UTC),
                          published_library=_published_library(),
                          stale_after=config.settings.stale_after_intervals,
                          min_free_disk=config.settings.min_free_disk)[0]
    held = _holdings(health.latest_health(), registry_store().revocations())
    return render_template("fleet/device.html", s=status, history=health.health_history(device_id),
                           copies=held.by_desk.get(device_id, ()), messages=get_flashed_messages(), errors={})


@bp.post("/<device_id>/revoke")
def revoke(device_id: str) -> Response | tuple[str, int]:
    registry, health, config = registry_store(), health_store(), _config()
    _device(device_id)
    by = signed_in_user().username
    reason = request.form.get("reason", "").strip()
    confirm = request.form.get("confirm", "").strip()
    errors = {}
    if not reason or len(reason) > 300:
        errors["reason"] = "Say why the desk is withdrawn (lost, stolen, decommissioned...)."
    if confirm != device_id:
        errors["confirm"] = f"Type the desk id {device_id} to confirm: revocation cannot be undone."
    if errors:
        status = fleet_status([device_id], health.latest_health(), registry.revocations(), now=datetime.now(UTC),
                              published_library=None)[0]
        held = _holdings(health.latest_health(), registry.revocations())
        return render_template("fleet/device.html", s=status, history=health.health_history(device_id),
                               copies=held.by_desk.get(device_id, ()), messages=[], errors=errors), 422
    try:
        result = revoke_device(registry, device_id, revoked_by=by, reason=reason, **revocation_means(config))
    except RevocationError as e:
        abort(409, str(e))
    flash(result.summary())
    return redirect(url_for("fleet.device", device_id=device_id))


def revocation_means(config: FleetConfig) -> dict[str, object]:
    """The wipe key, the way to send it and the PKI to update, from the settings (each optional)."""
    s = config.settings
    key = load_command_key(s.command_key) if s.command_key is not None else None
    mqtt = config.mqtt
    send = (lambda topic, payload: publish_once(mqtt, topic, payload)) if mqtt is not None else None
    pki = PkiTarget(s.ca_dir, s.broker_dir, s.broker_pid_file) if s.ca_dir is not None else None
    return {"command_key": key, "send": send, "pki": pki}
