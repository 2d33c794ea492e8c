"""Fixtures that start real services on free ports and tear them down.

Face images come from pinned registry packages (verified into the supply
cache by scripts/setup.sh), so these tests run on a fresh machine without
``../shared``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from testbed.mosquitto import Broker
from testbed.ports import free_port

# Property tests (tests/*/test_*_properties.py) keep no example database in the checkout and have no per-example
# deadline: the machine is shared, and a slow example is not a failure. Each test sets its own max_examples.
settings.register_profile("custody-rfr", database=None, deadline=None)
settings.load_profile("custody-rfr")

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces" / "dev"
_FR = "face_recognition-1.3.0/tests/test_images/"


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Broker]:
    """A real Mosquitto with its own config on a free port (plain TCP, loopback only)."""
    workdir = Path(tempfile.mkdtemp(prefix="rfr-mosquitto-"))
    os.chmod(workdir, 0o755)
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=workdir)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def face_photo():
    """Path of a real photo from the face_recognition sdist, e.g. ``face_photo("obama2.jpg")``."""
    from supply.pinned import member

    def get(name: str) -> Path:
        return member("face-recognition-sdist", _FR + name)

    return get


@pytest.fixture(scope="session")
def group_photo() -> Path:
    """A real photo with several faces (from npm @vladmandic/face-api's demo folder)."""
    from supply.pinned import member

    return member("vladmandic-face-api", "package/demo/sample1.jpg")


@pytest.fixture(scope="session")
def default_pipeline():
    """The shipped default pipeline (``models.pipeline.DEFAULT_EMBEDDER``), compiled once for the session.

    Not meant to be overridden: fixtures that must stay on the shipped default
    (``demo_library``) ask for this one, since a folder's conftest may override ``pipeline``.
    """
    from models.pipeline import FacePipeline

    return FacePipeline.load()


@pytest.fixture(scope="session")
def pipeline(default_pipeline):
    """The real face pipeline: OpenVINO inference on the pinned, converted models (the shipped default here)."""
    return default_pipeline


@pytest.fixture(scope="session")
def demo_library(default_pipeline, face_photo, tmp_path_factory):
    """A small real library: two photos of DEMO-OBAMA, one of DEMO-BIDEN, and every face in two
    group photos as distractors. obama3.jpg is kept out, to be the probe.

    Built with the shipped default pipeline whichever folder asks first: it is cached for the
    session, so depending on an overridable ``pipeline`` would make its embedder depend on test order.
    """
    pipeline = default_pipeline
    import cv2

    from library.records import ReferenceRecord
    from library.snapshot import SnapshotWriter, new_key, write_key_file
    from supply.pinned import member

    folder = tmp_path_factory.mktemp("library")
    key = new_key()
    write_key_file(folder / "lib.key", key)
    with SnapshotWriter.create(folder / "lib.db", key, embedder_id=pipeline.embedder_id, dim=pipeline.dim) as w:
        for subject, name in [("DEMO-OBAMA", "obama.jpg"), ("DEMO-OBAMA", "obama2.jpg"), ("DEMO-BIDEN", "biden.jpg")]:
            result = pipeline.process(face_photo(name).read_bytes())
            w.add(ReferenceRecord(subject_ref=subject, source=name), result.template, result.thumbnail)
        for n in (2, 3):
            image = cv2.imread(str(member("vladmandic-face-api", f"package/demo/sample{n}.jpg")))
            for i, face in enumerate(pipeline.detect(image)):
                w.add(ReferenceRecord(subject_ref=f"DEMO-F{n}{i}", source=f"sample{n}.jpg#{i}"),
                      pipeline.embed(image, face), pipeline.thumbnail_jpeg(image, face))
    return folder / "lib.db", folder / "lib.key"


@pytest.fixture(scope="session")
def enrolled_library(tmp_path_factory):
    """The library central's own commands build from the demo registry, once a session: the served systems
    (``tests/served_system.py``) each copy it, so no test changes another's."""
    from tests.served_system import enrol_demo_library

    return enrol_demo_library(tmp_path_factory.mktemp("enrolled-library"))


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (initdb in a temp dir, unix socket only, free port);
    ``postgres.create_database()`` gives a fresh database URL per test."""
    from testbed.postgres import start_postgres

    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def publisher(mosquitto) -> Iterator[Callable[[str, bytes], None]]:
    """Publish QoS 1 on the session broker as any client could, waiting for the broker to take each message."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:12]}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()

    def publish(topic: str, payload: bytes) -> None:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    yield publish
    client.disconnect()
    client.loop_stop()
