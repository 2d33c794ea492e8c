from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from appliance.settings import ApplianceSettings
from appliance.web import create_app


def appliance_settings(tmp_path: Path, library: tuple[Path, Path], mqtt_port: int = 1, **over) -> ApplianceSettings:
    data = {
        "device_id": "desk-test-01",
        "data_dir": tmp_path / "device",
        "library": {"path": library[0], "key_file": library[1]},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "web": {"secret_key": "test-secret-key-0123456789"},
    }
    data.update(over)
    return ApplianceSettings.model_validate(data)


@pytest.fixture
def app(tmp_path, demo_library, pipeline):
    """The desk app with the real pipeline and library, sync not started (no broker needed)."""
    application = create_app(appliance_settings(tmp_path, demo_library), pipeline=pipeline, start_sync=False)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "search page has no CSRF token"
    return match.group(1)


@pytest.fixture
def post_probe(client):
    """Post a photo as the search form does (htmx request, CSRF header)."""
    token = csrf_token(client)

    def post(data: bytes, filename: str = "probe.jpg", htmx: bool = True, **form):
        headers = {"X-CSRFToken": token}
        if htmx:
            headers["HX-Request"] = "true"
        # Encoded in memory: the test client's own encoder spools large bodies to a temp file it never closes.
        boundary, body = encode_multipart({"probe": FileStorage(BytesIO(data), filename=filename), **form})
        return client.post("/search", data=body, headers=headers,
                           content_type=f"multipart/form-data; boundary={boundary}")

    return post
