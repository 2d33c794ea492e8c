"""The desk warns on every page while its face model is evaluation-grade (the embedder manifest's licence)."""

from __future__ import annotations

import copy

from appliance.web import create_app
from tests.appliance.conftest import appliance_settings


def _graded(pipeline, grade: str):  # type: ignore[no-untyped-def]
    """The same pipeline under a manifest of another licence grade (the default's grade is the model card's call)."""
    manifest = pipeline.embedder_manifest
    regraded = copy.copy(pipeline)
    regraded.embedder_manifest = manifest.model_copy(
        update={"licence": manifest.licence.model_copy(update={"grade": grade})})
    return regraded


def test_an_evaluation_grade_model_is_announced_on_every_page(tmp_path, demo_library, pipeline) -> None:  # type: ignore[no-untyped-def]
    """As MobileFaceNet (evaluation only) would be, were a site to run it."""
    app = create_app(appliance_settings(tmp_path, demo_library), pipeline=_graded(pipeline, "evaluation"),
                     start_sync=False)
    app.config["TESTING"] = True
    page = app.test_client().get("/login").get_data(as_text=True)
    assert "Evaluation-grade face model" in page and "licensed for evaluation only" in page
    assert page.index("Evaluation-grade face model") < page.index('<main id="main"')  # above the page's content


def test_a_licensed_model_shows_no_warning(tmp_path, demo_library, pipeline) -> None:  # type: ignore[no-untyped-def]
    """The same pipeline under a manifest graded deployable, as a site's licensed model would be."""
    desk = create_app(appliance_settings(tmp_path, demo_library), pipeline=_graded(pipeline, "deployable"),
                      start_sync=False)
    desk.config["TESTING"] = True
    page = desk.test_client().get("/login").get_data(as_text=True)
    assert "Sign in" in page and "Evaluation-grade" not in page
