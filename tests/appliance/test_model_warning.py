"""The desk warns on every page while its face model is evaluation-grade (the embedder manifest's licence)."""

from __future__ import annotations

import copy

from appliance.web import create_app
from tests.appliance.conftest import appliance_settings


def test_an_evaluation_grade_model_is_announced_on_every_page(app) -> None:  # type: ignore[no-untyped-def]
    assert app.extensions["desk"].pipeline.embedder_manifest.licence.grade == "evaluation"
    page = app.test_client().get("/login").get_data(as_text=True)
    assert "Evaluation-grade face model" in page and "licensed for evaluation only" in page
    assert page.index("Evaluation-grade face model") < page.index('<main id="main"')  # above the page's content


def test_a_licensed_model_shows_no_warning(tmp_path, demo_library, pipeline) -> None:  # type: ignore[no-untyped-def]
    """The same pipeline under a manifest graded deployable, as a site's licensed model would be."""
    manifest = pipeline.embedder_manifest
    licensed = copy.copy(pipeline)
    licensed.embedder_manifest = manifest.model_copy(
        update={"licence": manifest.licence.model_copy(update={"grade": "deployable"})})
    desk = create_app(appliance_settings(tmp_path, demo_library), pipeline=licensed, start_sync=False)
    desk.config["TESTING"] = True
    page = desk.test_client().get("/login").get_data(as_text=True)
    assert "Sign in" in page and "Evaluation-grade" not in page
