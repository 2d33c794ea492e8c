"""Peer review by central, end to end: desk app -> real Mosquitto -> central ingest and reviewer page -> desk."""

from __future__ import annotations

import itertools
import json
import queue
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion

from appliance.web import create_app
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.peer_review.store import PeerReviewStore
from central.settings import CentralMqttSettings as CentralMqtt
from central.web import close_stores
from central.web import create_app as create_central
from core.audit.checkpoint import public_key_hex
from core.peer_review import PeerReviewOutcome, PeerReviewRequest
from core.topics import peer_review_outcome_topic, peer_review_request_topic
from testbed.mosquitto import Broker
from testbed.ports import free_port
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import Desk, add_users, approved_case, fast_kdf
from tests.audit_support import wait_for
from tests.central_signin import signed_in
from tests.fleet_key import COMMAND_KEY, FORGER

_ids = itertools.count(1)


def desk_app(tmp_path: Path, library, pipeline, port: int, monkeypatch) -> tuple[Flask, str]:
    """The desk app with central peer review and sync started; a fresh device id (broker sessions persist)."""
    device = f"desk-pr-{uuid.uuid4().hex[:8]}"
    settings = appliance_settings(tmp_path, library, mqtt_port=port, device_id=device,
                                  peer_review={"channel": "central", "resend_after_s": 2})
    app = create_app(settings, pipeline=pipeline, start_sync=True)
    app.config["TESTING"] = True
    fast_kdf(monkeypatch)
    add_users(app)
    return app, device


def stop_desk(app: Flask) -> None:
    app.extensions["desk"].mqtt.stop()


def to_peer_review(app: Flask, photo: bytes) -> str:
    """Officer searches and marks candidate 3 (a second person) for review: the case waits for peer review."""
    desk, case_id = approved_case(app)
    assert desk.upload(case_id, photo).status_code == 200
    assert desk.post(f"/cases/{case_id}/search").status_code == 302
    ranks = [c.rank for c in app.extensions["desk"].cases.candidates(case_id)]
    decisions = {f"decision-{r}": "not_viable" for r in ranks} | {"decision-3": "needs_peer_review"}
    assert desk.post(f"/cases/{case_id}/adjudicate", {**decisions, "doubts": "Ear shape differs."}).status_code == 302
    assert state(app, case_id) == "awaiting_peer_review"
    return case_id


def state(app: Flask, case_id: str) -> str:
    return app.extensions["desk"].cases.get(case_id).state.value


def audit_events(app: Flask, type_: str) -> list[dict]:
    db = app.extensions["desk"].db
    with db.lock:
        rows = db.conn.execute("SELECT payload FROM audit_log ORDER BY seq").fetchall()
    return [e for e in (json.loads(bytes(r[0])) for r in rows) if e["type"] == type_]


@pytest.fixture
def central(tmp_path, mosquitto) -> Iterator[tuple[Flask, AuditIngest]]:
    """Central's ingest worker and web app on one SQLite database, on the session broker."""
    db = tmp_path / "central.db"
    store = AuditStore(db)
    ingest = AuditIngest(CentralMqtt(host=mosquitto.host, port=mosquitto.port,
                                     client_id=f"central-pr-{next(_ids)}"), store, command_key=COMMAND_KEY)
    ingest.start()
    assert ingest.wait_connected(10)
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(db)})
    yield web, ingest
    ingest.stop()
    store.close()
    close_stores(web)


def test_doubted_no_match_is_reviewed_at_central_and_the_outcome_closes_the_case(
        tmp_path, demo_library, pipeline, mosquitto, central, face_photo, monkeypatch) -> None:
    web, _ingest = central
    app, device = desk_app(tmp_path, demo_library, pipeline, mosquitto.port, monkeypatch)
    web.extensions["central.registry"].register_device(
        device, public_key_hex(app.extensions["desk"].outbox.public_key))
    reviews: PeerReviewStore = web.extensions["central.peer_reviews"]
    try:
        assert app.extensions["desk"].mqtt.wait_connected(10)
        case_id = to_peer_review(app, face_photo("obama3.jpg").read_bytes())
        # The request reaches central: references and reasoning, no images.
        assert wait_for(lambda: len(reviews.pending()) == 1, timeout=10)
        request = reviews.pending()[0]
        assert (request.device_id, request.case_id, request.ranks) == (device, case_id, [3])
        assert request.doubts == "Ear shape differs." and request.library_version
        assert all(c["subject_ref"].startswith("DEMO-") for c in request.candidates)
        # The officer is told central decides; the review is not the desk's advisers' to see or post.
        page = Desk(app, "officer").get(f"/cases/{case_id}").get_data(as_text=True)
        assert "gone to the facial recognition team at central" in page
        assert "Record the peer review" not in page
        assert Desk(app, "adviser").get(f"/cases/{case_id}").status_code == 404
        assert Desk(app, "adviser").post(f"/cases/{case_id}/peer-review", {
            "review-3": "not_viable", "notes": "Looked at it closely."}).status_code == 404
        # A reviewer records the outcome on central's page.
        client = signed_in(web, "dr.r.reviewer", ["peer_reviewer"])
        page = client.get(f"/peer-review/{request.request_id}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = client.post(f"/peer-review/{request.request_id}", data={
            "csrf_token": token, "decision-3": "not_viable",
            "notes": "Different ear shape and nose bridge."})
        assert response.status_code == 302
        # The outcome reaches the desk: the case closes and the probe is destroyed as usual.
        assert wait_for(lambda: state(app, case_id) == "closed_no_match", timeout=10)
        assert app.extensions["desk"].cases.probe(case_id) is None
        completed = [e for e in audit_events(app, "peer_review") if e["outcome"] == "completed"]
        assert [(e["actor"], e["details"]["channel"]) for e in completed] == [("dr.r.reviewer", "central")]
        # The outcome is applied on the MQTT thread: the deletion's audit event may land just after the state.
        assert wait_for(lambda: [e["outcome"] for e in audit_events(app, "deletion")] == ["destroyed"], timeout=10)
        assert app.extensions["desk"].cases.peer_review(case_id).reviewer == "dr.r.reviewer"
        assert wait_for(lambda: any(e["action"] == "outcome_sent" for e in reviews.log(request.request_id)))
        # A repeated outcome is ignored.
        channel = app.extensions["desk"].cases.channel
        payload = PeerReviewOutcome(device_id=device, request_id=request.request_id, reviewer="Dr R Reviewer",
                                    decisions={3: "not_viable"}, notes="Different ear shape.").to_bytes()
        assert channel.receive_outcome(PeerReviewOutcome.seal(payload, COMMAND_KEY)) == "repeat"
        assert len([e for e in audit_events(app, "peer_review") if e["outcome"] == "completed"]) == 1
        # Answered: the desk's copy of the request (references, scores, reasoning) is blanked.
        db = app.extensions["desk"].db
        with db.lock:
            kept = db.conn.execute("SELECT payload FROM peer_review_outbox WHERE request_id = ?",
                                   (request.request_id,)).fetchone()
        assert kept is not None and bytes(kept[0]) == b""
    finally:
        stop_desk(app)


def test_unsigned_forged_and_malformed_outcomes_are_refused_and_the_case_keeps_waiting(
        tmp_path, demo_library, pipeline, mosquitto, face_photo, monkeypatch) -> None:
    app, device = desk_app(tmp_path, demo_library, pipeline, mosquitto.port, monkeypatch)
    requests: queue.Queue[bytes] = queue.Queue()
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_message = lambda c, u, m: requests.put(m.payload)
    spy.connect(mosquitto.host, mosquitto.port)
    spy.subscribe(peer_review_request_topic(device), qos=1)
    spy.loop_start()
    try:
        assert app.extensions["desk"].mqtt.wait_connected(10)
        case_id = to_peer_review(app, face_photo("obama3.jpg").read_bytes())
        sent = PeerReviewRequest.from_bytes(requests.get(timeout=10))

        def outcome(key=COMMAND_KEY, **over) -> bytes:
            values = dict(device_id=device, request_id=sent.request_id, reviewer="Dr R",
                          decisions={3: "not_viable"}, notes="Different ear shape.")
            body = PeerReviewOutcome(**{**values, **over}).to_bytes()
            return body if key is None else PeerReviewOutcome.seal(body, key)

        channel = app.extensions["desk"].cases.channel
        # Unsigned and signed by another key (what anyone able to publish on central's topics could send),
        # then signed by central but for another desk, an unknown request, the wrong candidates; and junk.
        forged = [outcome(key=None), outcome(key=FORGER), outcome(device_id="desk-someone-else"),
                  outcome(request_id=str(uuid.uuid4())), outcome(decisions={1: "not_viable"}),
                  b'{"v": 1, "outcome": "confirmed_not_viable"}', b"[" * 16384]
        for payload in forged:
            spy.publish(peer_review_outcome_topic(device), payload, qos=1).wait_for_publish(5)
        for payload in forged:  # the same checks, seen directly
            assert channel.receive_outcome(payload) == "refused"
        assert state(app, case_id) == "awaiting_peer_review"
        assert app.extensions["desk"].cases.probe(case_id) is not None
        # Unanswered, the request is sent again (resend_after_s = 2); a genuine outcome then closes the case.
        assert PeerReviewRequest.from_bytes(requests.get(timeout=10)).request_id == sent.request_id
        spy.publish(peer_review_outcome_topic(device), outcome(), qos=1).wait_for_publish(5)
        assert wait_for(lambda: state(app, case_id) == "closed_no_match", timeout=10)
        # Replayed, the answered outcome is ignored.
        assert channel.receive_outcome(outcome()) == "repeat"
    finally:
        spy.loop_stop()
        spy.disconnect()
        stop_desk(app)


def test_a_request_made_while_the_broker_is_down_reaches_central_later(
        tmp_path, demo_library, pipeline, face_photo, monkeypatch) -> None:
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=tmp_path / "broker")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o777)
    app, device = desk_app(tmp_path, demo_library, pipeline, broker.port, monkeypatch)
    db = tmp_path / "central.db"
    store = AuditStore(db)
    registry = RegistryStore(db)
    registry.register_device(device, public_key_hex(app.extensions["desk"].outbox.public_key))
    registry.close()
    ingest = AuditIngest(CentralMqtt(host=broker.host, port=broker.port, client_id="central-pr-late"), store,
                         command_key=COMMAND_KEY)
    reviews = PeerReviewStore(db)
    try:
        case_id = to_peer_review(app, face_photo("obama3.jpg").read_bytes())
        assert not app.extensions["desk"].mqtt.connected
        broker.start()
        ingest.start()
        assert wait_for(lambda: len(reviews.pending()) == 1, timeout=30)
        assert reviews.pending()[0].case_id == case_id
        reviews.record_outcome(reviews.pending()[0].request_id, "Dr R", {3: "not_viable"}, "Different ear shape.")
        assert wait_for(lambda: state(app, case_id) == "closed_no_match", timeout=10)
    finally:
        stop_desk(app)
        ingest.stop()
        reviews.close()
        store.close()
        broker.stop()


def test_the_probe_goes_to_central_sealed_is_shown_to_the_reviewer_and_destroyed_there_when_answered(
        tmp_path, demo_library, pipeline, mosquitto, face_photo, monkeypatch) -> None:
    """Desk -> real Mosquitto -> central and back, with central's review key: the face thumbnail the officer saw
    reaches the reviewer, is ciphertext on the wire and at rest, and is gone from central once answered."""
    from central.peer_review.review_key import make_review_key, public_path
    from core.review_probe import review_key_id
    from tests.central.probe_scan import files_holding, runs

    review_key = make_review_key(tmp_path / "central-keys" / "review.key")
    root = tmp_path / "central"
    root.mkdir()
    db, probe_dir = root / "central.db", root / "review-probes"
    store = AuditStore(db)
    ingest = AuditIngest(CentralMqtt(host=mosquitto.host, port=mosquitto.port, client_id=f"central-pr-{next(_ids)}"),
                         store, command_key=COMMAND_KEY, review_key=review_key, probe_dir=probe_dir)
    ingest.start()
    assert ingest.wait_connected(10)
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(db), "REVIEW_PROBE_DIR": str(probe_dir),
                                      "REVIEW_LIBRARIES": [demo_library]})
    device = f"desk-pi-{uuid.uuid4().hex[:8]}"
    settings = appliance_settings(tmp_path, demo_library, mqtt_port=mosquitto.port, device_id=device,
                                  peer_review={"channel": "central", "resend_after_s": 2,
                                               "central_review_key": public_path(tmp_path / "central-keys" /
                                                                                 "review.key")})
    app = create_app(settings, pipeline=pipeline, start_sync=True)
    app.config["TESTING"] = True
    fast_kdf(monkeypatch)
    add_users(app)
    web.extensions["central.registry"].register_device(device, public_key_hex(app.extensions["desk"].outbox.public_key))
    wire: queue.Queue[bytes] = queue.Queue()
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    spy.on_message = lambda c, u, m: wire.put(m.payload)
    spy.connect(mosquitto.host, mosquitto.port)
    spy.subscribe(peer_review_request_topic(device), qos=1)
    spy.loop_start()
    reviews: PeerReviewStore = web.extensions["central.peer_reviews"]
    try:
        assert app.extensions["desk"].mqtt.wait_connected(10)
        case_id = to_peer_review(app, face_photo("obama3.jpg").read_bytes())
        thumbnail = app.extensions["desk"].cases.probe(case_id).thumbnail
        # On the wire: the request carries the face only sealed to central's review key.
        sent = wire.get(timeout=10)
        assert PeerReviewRequest.from_bytes(sent).probe is not None
        assert not any(n in sent for n in runs(thumbnail)) and files_holding(runs(thumbnail), root) == []
        assert wait_for(lambda: len(reviews.pending()) == 1 and reviews.pending()[0].probe_state == "held",
                        timeout=10)
        request = reviews.pending()[0]
        # The desk audited what it sent and to which key (never the image).
        requested = [e for e in audit_events(app, "peer_review") if e["outcome"] == "requested"]
        assert [(e["details"]["face_image_sent"], e["details"]["review_key_id"], e["details"]["request_id"])
                for e in requested] == [(True, review_key_id(review_key.public_key()), request.request_id)]
        # At rest at central: ciphertext in the vault, nothing in the database or anywhere else under central.
        assert files_holding(runs(thumbnail), root) == []
        held = [(probe_dir / f"{request.request_id}.key").read_bytes(),
                *runs((probe_dir / f"{request.request_id}.probe").read_bytes())]
        # The reviewer sees exactly the face the officer judged, beside central's own reference images.
        client = signed_in(web, "dr.r.reviewer", ["peer_reviewer"])
        page = client.get(f"/peer-review/{request.request_id}").get_data(as_text=True)
        assert client.get(f"/peer-review/{request.request_id}/probe.jpg").data == thumbnail
        rank3 = next(c for c in app.extensions["desk"].cases.candidates(case_id) if c.rank == 3)
        desk_reference = app.extensions["desk"].library.current.thumbnail(rank3.record_id)
        assert f"/peer-review/{request.request_id}/reference/3.jpg" in page
        assert client.get(f"/peer-review/{request.request_id}/reference/3.jpg").data == desk_reference
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert client.post(f"/peer-review/{request.request_id}", data={
            "csrf_token": token, "decision-3": "not_viable",
            "notes": "Different ear shape and nose bridge."}).status_code == 302
        # Destroyed at central at once, with no trace in any of its files; the desk closes the case as before.
        assert list(probe_dir.iterdir()) == [] and files_holding(held + runs(thumbnail), root) == []
        assert wait_for(lambda: state(app, case_id) == "closed_no_match", timeout=10)
        assert app.extensions["desk"].cases.probe(case_id) is None
        assert [e["action"] for e in reviews.log(request.request_id)].count("probe_destroyed") == 1
    finally:
        spy.loop_stop()
        spy.disconnect()
        stop_desk(app)
        ingest.stop()
        store.close()
        close_stores(web)
