"""The search page: upload a probe photo, see ranked potential matches."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, current_app, render_template, request

from appliance.services.search import FaceIndexError, SearchService
from library.errors import SnapshotError
from models.errors import ImageRejectedError, NoFaceError

bp = Blueprint("search", __name__)

# Until accounts arrive, every search is attributed to the desk terminal itself.
DESK_ACTOR = "desk-terminal"


def _rfr(name: str):  # type: ignore[no-untyped-def]
    return current_app.extensions["rfr"][name]


def _render(template: str, status: int = 200, **context: object) -> tuple[str, int]:
    """Partial for htmx requests, the whole page otherwise (the htmx book's pattern)."""
    if request.headers.get("HX-Request"):
        return render_template(template, **context), status
    return render_template("search.html", body_template=template, library=_rfr("library").current.describe(),
                           **context), status


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return render_template("search.html", body_template=None, library=_rfr("library").current.describe())


@bp.post("/search")
def search():  # type: ignore[no-untyped-def]
    upload = request.files.get("probe")
    if upload is None or not upload.filename:
        return _render("_message.html", 400, level="error", message="Choose a photo of the detainee first.")
    data = upload.read()
    face_index: int | None = None
    if request.form.get("face_index", "").strip():
        try:
            face_index = int(request.form["face_index"])
        except ValueError:
            return _render("_message.html", 400, level="error", message="Choose one of the faces shown.")
    service: SearchService = _rfr("search")
    try:
        outcome = service.search(data, DESK_ACTOR, face_index=face_index)
    except FaceIndexError as e:
        return _render("_message.html", 400, level="error", message=str(e))
    except NoFaceError as e:
        return _render("_message.html", 422, level="error", message=str(e))
    except ImageRejectedError as e:
        return _render("_message.html", getattr(e, "status", 422), level="error", message=str(e))
    probe_uri = None
    if outcome.probe_thumbnail:
        probe_uri = "data:image/jpeg;base64," + base64.b64encode(outcome.probe_thumbnail).decode()
    choices = [("data:image/jpeg;base64," + base64.b64encode(c.thumbnail_jpeg).decode(), c)
               for c in outcome.choices]
    return _render("_results.html", outcome=outcome, probe_uri=probe_uri, choices=choices)


@bp.get("/library/<int:version>/records/<int:record_id>/image")
def candidate_image(version: int, record_id: int) -> Response:
    snapshot = _rfr("library").current
    if version != snapshot.version:
        abort(410, "The reference library was updated after this search. Run the search again.")
    try:
        jpeg = snapshot.thumbnail(record_id)
    except SnapshotError:
        abort(404, "That reference image is not in the installed library.")
    response = Response(jpeg, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response
