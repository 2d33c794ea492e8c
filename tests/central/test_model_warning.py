"""The evaluation-grade model warning at central: a banner on every page and a flag on the fleet page,
from the embedder each desk's heartbeat names, graded by the model manifests shipped with the software."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from central.fleet.model_grade import EVALUATION, grade_of, known_grades
from models.manifest import load_manifest

EVALUATION_MODEL = load_manifest("mobilefacenet").ref
LICENSED_MODEL = load_manifest("dlib_resnet").ref


def _beat(app: Flask, device: str, embedder: str | None) -> None:
    app.extensions["central.registry"].register_device(device, "00" * 32)
    now = datetime.now(UTC)
    row: dict[str, Any] = dict(
        device_id=device, received_at=now.isoformat(timespec="milliseconds"), sent_at=now.isoformat(),
        interval_s=60.0, software_version="0.1.0", library_version=3, embedder_id=embedder, disk_free_bytes=50,
        disk_total_bytes=100, memory_available_bytes=1, memory_total_bytes=2, outbox_depth=0,
        since_last_sync_s=1.0, clock_offset_s=0.0, key_protection="tpm")
    app.extensions["central.health_store"].record_health(row)


def _row(page: str, device: str) -> str:
    return page.split(f'data-device="{device}"')[1].split("</tr>")[0]


def test_grades_come_from_the_shipped_manifests() -> None:
    assert grade_of(EVALUATION_MODEL) == EVALUATION == load_manifest("mobilefacenet").licence.grade
    assert grade_of(LICENSED_MODEL) == "deployable"
    assert grade_of("someone-elses@9") == "unknown" and grade_of(None) is None
    assert all(grade in ("evaluation", "deployable") for grade in known_grades().values())


def test_fleet_flags_desks_on_an_evaluation_model(app: Flask, client: FlaskClient) -> None:
    _beat(app, "desk-eval", EVALUATION_MODEL)
    _beat(app, "desk-licensed", LICENSED_MODEL)
    page = client.get("/fleet").get_data(as_text=True)
    assert "evaluation model" in _row(page, "desk-eval")
    assert f"face model {EVALUATION_MODEL} is evaluation-grade" in _row(page, "desk-eval")
    assert "evaluation model" not in _row(page, "desk-licensed") and ">ok<" in _row(page, "desk-licensed")
    assert LICENSED_MODEL in _row(page, "desk-licensed")  # the model each desk names is shown


def test_every_page_warns_while_a_desk_uses_one(app: Flask, client: FlaskClient, anonymous: FlaskClient) -> None:
    _beat(app, "desk-licensed", LICENSED_MODEL)
    assert "Evaluation-grade face model in use" not in client.get("/audit").get_data(as_text=True)
    _beat(app, "desk-eval", EVALUATION_MODEL)
    for path in ("/audit", "/reports", "/fleet", "/peer-review", "/audit/cases"):
        page = client.get(path).get_data(as_text=True)
        assert "Evaluation-grade face model in use" in page, path
        assert "1 desk\n    (desk-eval) searches with" in page and EVALUATION_MODEL in page
    assert "Evaluation-grade" not in anonymous.get("/login").get_data(as_text=True)  # nothing before sign-in
    app.extensions["central.registry"].revoke_device("desk-eval", "fleetadmin", "stolen")
    assert "Evaluation-grade face model in use" not in client.get("/audit").get_data(as_text=True)
