"""The reference libraries' pages: what each library is for, on whose authority, until when, and what it holds.

Two blueprints share ``/libraries``: ``libraries`` (reading: library authorisers and auditors) and
``library_actions`` (request, authorise, refuse, review, suspend, reinstate, retire, grant and withdraw:
library authorisers only). The rules (two-person authorisation, a temporary library's expiry) live in
``central.libraries.service``, so the page cannot be got round. After every change, when central's settings
name the library repository, each desk's authorisation manifest is re-signed at once
(``central.publish.authorisations``); if that fails the change stands and the page says how to publish.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
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

from central.libraries.service import KINDS, Actor, LibraryActionError, LibraryRequest, LibraryService
from central.libraries.store import LibraryRecord, LibraryStore
from central.publish.authorisations import MANIFESTS, publish_to
from central.publish.settings import PublishSettings
from central.web.auth import signed_in_user
from central.web.guards import extension, found
from central.web.stores import registry_store
from core.display_time import DEFAULT_ZONE, zone
from core.errors import CustodyRfrError

logger = logging.getLogger(__name__)

bp = Blueprint("libraries", __name__, url_prefix="/libraries")
actions = Blueprint("library_actions", __name__, url_prefix="/libraries")
#: Who may read the pages; changing anything needs ``library_authoriser`` (``actions``).
READERS = ("library_authoriser", "auditor")
_LOCAL = zone(DEFAULT_ZONE)
CATEGORIES = (("Sex", "by_sex"), ("Ethnicity code", "by_ethnicity_code"), ("Age at image date", "by_age_range"),
              ("Image age", "by_image_age"))


def init_app(app: Flask, publish: PublishSettings | None) -> None:
    app.extensions["central.libraries"] = LibraryService(LibraryStore(app.config["DATABASE"]))
    app.extensions["central.publish_settings"] = publish or PublishSettings()
    app.register_blueprint(bp)
    app.register_blueprint(actions)


def service() -> LibraryService:
    return extension("central.libraries", LibraryService)


def _actor() -> Actor:
    user = signed_in_user()
    return Actor(user.username, frozenset(user.roles))


def _record(library_id: str) -> LibraryRecord:
    return found(service().store.get(library_id),
                 f"There is no library with the id {library_id!r}. The list of libraries is at /libraries.")


# -- reading ---------------------------------------------------------------------------------------------


@bp.get("")
def index() -> str:
    today = datetime.now(UTC).date()
    store = service().store
    return render_template("libraries/index.html", libraries=store.all(), today=today,
                           log_problems=store.verify_log(), log_entries=store.log_size(),
                           messages=get_flashed_messages(with_categories=True))


@bp.get("/<library_id>")
def library(library_id: str) -> str:
    return _library_page(_record(library_id), errors={}, values={})


def _library_page(record: LibraryRecord, errors: dict[str, str], values: dict[str, str]) -> str:
    store = service().store
    history = store.log(record.library_id)
    manifests = [e for e in store.log(MANIFESTS)
                 if record.library_id in e.detail.get("libraries", []) + e.detail.get("retired", [])]
    return render_template("libraries/library.html", r=record, grants=store.grants(record.library_id),
                           compositions=store.compositions(record.library_id), categories=CATEGORIES,
                           history=history, manifests=manifests[-20:], errors=errors, values=values,
                           today=datetime.now(UTC).date(), messages=get_flashed_messages(with_categories=True),
                           may_act=signed_in_user().may("library_authoriser"))


# -- acting ----------------------------------------------------------------------------------------------


@actions.route("/new", methods=["GET", "POST"])
def new() -> Response | str | tuple[str, int]:
    if request.method != "POST":  # GET and HEAD
        return render_template("libraries/new.html", errors={}, values={}, kinds=KINDS)
    form = request.form
    values = {k: form.get(k, "") for k in ("library_id", "name", "kind", "purpose_text", "legal_basis",
                                           "authority_reference", "expiry_date", "expiry_time", "default")}
    try:
        expires = _moment(values["expiry_date"], values["expiry_time"]) if values["kind"] == "temporary" else None
        record = service().request(_actor(), LibraryRequest(
            library_id=values["library_id"], name=values["name"], kind=values["kind"],
            purpose_text=values["purpose_text"], legal_basis=values["legal_basis"],
            authority_reference=values["authority_reference"], expires_at=expires,
            default_for_custody=values["default"] == "yes"))
    except LibraryActionError as e:
        return render_template("libraries/new.html", errors={"form": str(e)}, values=values, kinds=KINDS), 422
    logger.info("library %s requested by %s", record.library_id, record.requested_by)
    flash(f"{record.name} is requested. Another library authoriser must now authorise it.", "ok")
    return redirect(url_for("libraries.library", library_id=record.library_id))


@actions.post("/<library_id>/<action>")
def act(library_id: str, action: str) -> Response | tuple[str, int]:
    record = _record(library_id)
    form = request.form
    if action not in _ACTIONS:
        abort(404, f"There is no action {action!r} on a library.")
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    try:
        if form.get("confirm") != ("retire " + record.library_id if action == "retire" else "yes"):
            raise LibraryActionError(_CONFIRM[action].format(id=record.library_id))
        message = _ACTIONS[action](_actor(), record, form)
    except LibraryActionError as e:
        return _library_page(record, errors={action: str(e)}, values=values), 422
    logger.info("library %s: %s by %s", record.library_id, action, signed_in_user().username)
    flash(message, "ok")
    _publish_manifests()
    return redirect(url_for("libraries.library", library_id=record.library_id))


def _authorise(actor: Actor, r: LibraryRecord, form: Any) -> str:
    expiry = _moment(form.get("expiry_date", ""), form.get("expiry_time", "")) if form.get("expiry_date") else None
    service().authorise(actor, r.library_id, authoriser_name=form.get("authoriser_name", ""),
                        authoriser_rank=form.get("authoriser_rank", ""), review_due=_day(form.get("review_due", "")),
                        expires_at=expiry)
    return f"{r.name} is authorised. It is searched at the desks it is granted to."


def _refuse(actor: Actor, r: LibraryRecord, form: Any) -> str:
    service().refuse(actor, r.library_id, form.get("reason", ""))
    return f"{r.name} is refused; the request and your reason are kept."


def _review(actor: Actor, r: LibraryRecord, form: Any) -> str:
    updated = service().review(actor, r.library_id, review_due=_day(form.get("review_due", "")),
                               notes=form.get("notes", ""))
    return f"Review of {r.name} recorded; next review by {updated.review_due}."


def _suspend(actor: Actor, r: LibraryRecord, form: Any) -> str:
    service().suspend(actor, r.library_id, form.get("reason", ""))
    return f"{r.name} is suspended: desks refuse to search it from their next update, and keep their copy."


def _reinstate(actor: Actor, r: LibraryRecord, form: Any) -> str:
    service().reinstate(actor, r.library_id, form.get("reason", ""))
    return f"{r.name} is reinstated: desks may search it again from their next update."


def _retire(actor: Actor, r: LibraryRecord, form: Any) -> str:
    service().retire(actor, r.library_id, form.get("reason", ""))
    return f"{r.name} is retired: desks destroy their copy at their next update."


def _grant(actor: Actor, r: LibraryRecord, form: Any) -> str:
    device = form.get("device_id", "").strip()
    added = service().grant(actor, r.library_id, device)
    where = "Every desk" if device == "*" else device
    return f"{where} may search {r.name}." if added else f"{where} could already search {r.name}."


def _withdraw(actor: Actor, r: LibraryRecord, form: Any) -> str:
    device = form.get("device_id", "").strip()
    if not service().withdraw(actor, r.library_id, device):
        raise LibraryActionError(f"{device} was not granted {r.name}.")
    return f"{'Every desk' if device == '*' else device} no longer searches {r.name} (unless granted otherwise)."


_ACTIONS = {"authorise": _authorise, "refuse": _refuse, "review": _review, "suspend": _suspend,
            "reinstate": _reinstate, "retire": _retire, "grant": _grant, "withdraw": _withdraw}
_CONFIRM = {
    "authorise": "Tick the box to confirm you authorise this library.",
    "refuse": "Tick the box to confirm you refuse this request.",
    "review": "Tick the box to confirm the review.",
    "suspend": "Tick the box to confirm the suspension.",
    "reinstate": "Tick the box to confirm the suspension is lifted.",
    "retire": "Type retire {id} to confirm: retiring cannot be undone and desks destroy their copies.",
    "grant": "Tick the box to confirm the desk may search this library.",
    "withdraw": "Tick the box to confirm the desk may no longer search this library.",
}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise LibraryActionError("Enter the date as a real date (for example 2027-03-31).") from None


def _moment(day: str, clock: str) -> datetime:
    """A date and time typed as UK local time, as an aware moment."""
    the_day = _day(day) if day.strip() else None
    if the_day is None:
        raise LibraryActionError("A temporary library must have an expiry date and time.")
    try:
        at = time.fromisoformat(clock.strip()) if clock.strip() else time(23, 59)
    except ValueError:
        raise LibraryActionError("Enter the expiry time as hours and minutes (for example 18:00).") from None
    return datetime.combine(the_day, at, tzinfo=_LOCAL)


def _publish_manifests() -> None:
    """Re-sign the desks' manifests now when central's settings name the repository; never undo the change."""
    repo_dir = current_app.config.get("TUF_REPO_DIR")
    if not repo_dir:
        return
    registry = registry_store()
    revoked = registry.revocations()
    registered = [d for d in registry.registered_devices() if d not in revoked]
    try:
        published = publish_to(repo_dir, current_app.extensions["central.publish_settings"], service().store,
                               registered, signed_in_user().username, revoked=revoked)
    except (CustodyRfrError, OSError) as e:
        logger.error("the authorisation manifests could not be published: %s", e)
        service().store.log_action(MANIFESTS, "publish_failed", signed_in_user().username, {"error": str(e)[:500]})
        flash("The change is saved, but the desks' authorisation manifests could not be signed "
              f"({e}). Ask central's administrator to run: python -m central.publish "
              "publish-authorisations --repo <repository> --config central.toml", "warn")
        return
    if published:
        flash(f"New authorisation manifests signed for {', '.join(p.device_id for p in published)}.", "ok")
