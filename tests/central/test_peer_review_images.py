"""Peer review with the images at central, through a real Mosquitto: the probe arrives sealed, is held encrypted
outside the database, is shown beside central's reference images only to a reviewer who did not ask for the
review, and is destroyed (and shown gone from every file) when the review is answered or the case closes."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flask import Flask

from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.peer_review.probe_vault import ProbeVault
from central.peer_review.probes import ReviewProbes
from central.peer_review.review_key import make_review_key
from central.peer_review.store import PeerReviewStore
from central.settings import CentralMqttSettings
from central.web import close_stores
from central.web import create_app as create_central
from core.peer_review import MAX_REQUEST_WITH_PROBE_BYTES, CandidateSummary, PeerReviewRequest
from core.review_probe import SealedProbe
from core.topics import audit_topic, peer_review_request_topic
from library.snapshot import Snapshot, read_key_file
from testbed.chain_writer import ChainWriter
from tests.audit_support import wait_for
from tests.central.probe_scan import files_holding, new_temp_files_holding, runs, text_holding
from tests.central_signin import csrf_token, signed_in
from tests.fleet_key import COMMAND_KEY

_ids = itertools.count(1)
SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


@dataclass
class Central:
    web: Flask
    ingest: AuditIngest
    audit: AuditStore
    reviews: PeerReviewStore
    vault: ProbeVault
    root: Path
    review_key: X25519PrivateKey
    desk: ChainWriter

    def request(self, image: bytes, *, key: X25519PrivateKey | None = None, source: str = "obama.jpg",
                **over: object) -> PeerReviewRequest:
        """A desk's request with the probe sealed to ``key`` (central's review key unless given)."""
        request_id, case_id = str(uuid.uuid4()), f"C{uuid.uuid4().hex[:7].upper()}"
        probe = SealedProbe.seal(image, (key or self.review_key).public_key(), device_id=self.desk.device_id,
                                 request_id=request_id, case_id=case_id, taken_on="2026-12-04",
                                 quality="pass")
        values: dict[str, object] = dict(
            device_id=self.desk.device_id, case_id=case_id, custody_ref="CR-2026-000417", requested_by="pc.jones",
            doubts="The ears look different.", ranks=(1, 2), request_id=request_id, probe=probe,
            library_version="1",
            candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.61, "strong", "needs_peer_review", source),
                        CandidateSummary(2, "DEMO-BIDEN", 0.32, "weak", "needs_peer_review", "gone.jpg")))
        values.update(over)
        return PeerReviewRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
def central(tmp_path, mosquitto, demo_library) -> Iterator[Central]:
    root = tmp_path / "central"
    root.mkdir()
    db, probe_dir = root / "central.db", root / "review-probes"
    review_key = make_review_key(tmp_path / "keys" / "review.key")
    audit = AuditStore(db)
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port,
                                             client_id=f"central-img-{next(_ids)}-{uuid.uuid4().hex[:6]}"),
                         audit, command_key=COMMAND_KEY, review_key=review_key, probe_dir=probe_dir)
    ingest.start()
    assert ingest.wait_connected(10)
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": str(db),
                                      "REVIEW_PROBE_DIR": str(probe_dir), "REVIEW_LIBRARIES": [demo_library]})
    desk = ChainWriter(f"desk-img-{uuid.uuid4().hex[:8]}")
    web.extensions["central.registry"].register_device(desk.device_id, desk.public_hex)
    yield Central(web, ingest, audit, web.extensions["central.peer_reviews"], ProbeVault(probe_dir), root,
                  review_key, desk)
    ingest.stop()
    audit.close()
    close_stores(web)


@pytest.fixture
def probe_jpeg(face_photo, pipeline) -> bytes:
    """A face thumbnail as the desk sends it, made unique so its bytes exist nowhere else."""
    import cv2
    import numpy as np

    image = cv2.imread(str(face_photo("obama3.jpg")))
    image[0:6, 0:6] = np.random.default_rng().integers(0, 255, (6, 6, 3), dtype=np.uint8)
    result = pipeline.process(cv2.imencode(".png", image)[1].tobytes())
    return result.thumbnail


def reference_thumbnail(demo_library, source: str) -> bytes:
    snapshot = Snapshot.open(demo_library[0], read_key_file(demo_library[1]))
    try:
        return snapshot.entry(source)[2]
    finally:
        snapshot.close()


def held_secrets(vault: ProbeVault, request_id: str) -> list[bytes]:
    """Byte runs of what the vault holds for the request: its key and its ciphertext."""
    return [(vault.folder / f"{request_id}.key").read_bytes(),
            *runs((vault.folder / f"{request_id}.probe").read_bytes())]


def test_the_probe_arrives_sealed_is_shown_beside_the_references_and_is_destroyed_when_answered(
        central, publisher, probe_jpeg, demo_library, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    since = time.time() - 1
    req = central.request(probe_jpeg)
    payload = req.to_bytes()
    # On the wire: ciphertext only.
    assert not any(n in payload for n in runs(probe_jpeg)) and probe_jpeg[:64] not in payload
    assert not any(base64.b64encode(n)[4:20] in payload for n in runs(probe_jpeg))
    publisher(peer_review_request_topic(central.desk.device_id), payload)
    assert wait_for(lambda: central.reviews.get(req.request_id) is not None, timeout=10)
    record = central.reviews.get(req.request_id)
    assert (record.probe_state, record.probe_taken_on, record.probe_quality) == ("held", "2026-12-04", "pass")
    # At rest: the vault holds ciphertext and a key; no file anywhere under central's folder holds the image,
    # and the database never holds the probe in any form (not even the sealed copy that travelled).
    assert central.vault.held(req.request_id)
    secrets = held_secrets(central.vault, req.request_id)
    assert files_holding(runs(probe_jpeg), central.root) == []
    sealed_runs = runs(base64.b64decode(req.probe.to_dict()["ciphertext"]))
    assert files_holding(sealed_runs, central.root) == []
    assert set(files_holding(secrets, central.root)) == {  # control: the scanner does see what is held
        str(central.vault.folder / f"{req.request_id}.key"), str(central.vault.folder / f"{req.request_id}.probe")}

    # The reviewer sees both images side by side, with the facts beside them.
    client = signed_in(central.web, "dr.ahmed", ["peer_reviewer"])
    page = client.get(f"/peer-review/{req.request_id}").get_data(as_text=True)
    assert "look each subject up" not in page
    assert f'src="/peer-review/{req.request_id}/probe.jpg"' in page
    assert f'src="/peer-review/{req.request_id}/reference/1.jpg"' in page
    assert "Reference not found. Image gone.jpg of DEMO-BIDEN is not in central&#39;s copy of the library." in page
    assert "Date taken</dt><dd>2026-12-04" in page and 'id="zoom-2"' in page
    probe = client.get(f"/peer-review/{req.request_id}/probe.jpg")
    assert probe.status_code == 200 and probe.data == probe_jpeg and probe.mimetype == "image/jpeg"
    assert probe.headers["Cache-Control"].startswith("no-store")
    reference = client.get(f"/peer-review/{req.request_id}/reference/1.jpg")
    assert reference.data == reference_thumbnail(demo_library, "obama.jpg")
    assert reference.headers["Cache-Control"].startswith("no-store")
    assert client.get(f"/peer-review/{req.request_id}/reference/2.jpg").status_code == 404
    assert client.get(f"/peer-review/{req.request_id}/reference/9.jpg").status_code == 404
    actions = [e["action"] for e in central.reviews.log(req.request_id)][::-1]
    assert actions == ["requested", "probe_held", "probe_viewed", "reference_viewed"]

    # Answered: the probe is destroyed at once, and no file under central's folder holds any trace of it.
    response = client.post(f"/peer-review/{req.request_id}", data={
        "csrf_token": csrf_token(page), "decision-1": "not_viable", "decision-2": "not_viable",
        "notes": "Ear lobes and nose bridge differ in both."})
    assert response.status_code == 302
    assert "The probe image held for this review was destroyed." in client.get("/peer-review").get_data(as_text=True)
    assert not central.vault.held(req.request_id) and list(central.vault.folder.iterdir()) == []
    assert files_holding(secrets + runs(probe_jpeg), central.root) == []
    # As on the desk: nor in any new temporary file, nor anything logged.
    assert new_temp_files_holding(secrets + runs(probe_jpeg), since) == []
    assert not text_holding(secrets + runs(probe_jpeg), caplog.text)
    destroyed = [e for e in central.reviews.log(req.request_id) if e["action"] == "probe_destroyed"]
    assert [(e["actor"], e["detail"].split(":")[0]) for e in destroyed] == [("dr.ahmed", "review answered")]
    assert "overwritten with random bytes, removed and checked absent" in destroyed[0]["detail"]
    assert central.reviews.get(req.request_id).probe_state == "destroyed"
    assert client.get(f"/peer-review/{req.request_id}/probe.jpg").status_code == 404
    assert "The face searched was\n  destroyed at" in client.get(f"/peer-review/{req.request_id}").get_data(
        as_text=True)
    # The desk resends until the outcome reaches it: a repeat never brings the probe back.
    publisher(peer_review_request_topic(central.desk.device_id), payload)
    assert wait_for(lambda: central.reviews.get(req.request_id).repeats == 1, timeout=10)
    assert list(central.vault.folder.iterdir()) == []


def test_the_probe_is_destroyed_when_the_desk_reports_the_case_closed(central, publisher, probe_jpeg) -> None:
    req = central.request(probe_jpeg)
    publisher(peer_review_request_topic(central.desk.device_id), req.to_bytes())
    assert wait_for(lambda: central.vault.held(req.request_id), timeout=10)
    secrets = held_secrets(central.vault, req.request_id)
    # Another case's deletion changes nothing; this case's, arriving with the desk's audit trail, destroys it.
    events = [central.desk.event("deletion", "pc.jones", "destroyed", case_id="OTHER123", why="withdrawn"),
              central.desk.event("deletion", "pc.jones", "destroyed", case_id=req.case_id, why="withdrawn")]
    publisher(audit_topic(central.desk.device_id), events[0].to_bytes())
    assert wait_for(lambda: central.audit.count() == 1, timeout=10)
    assert central.ingest._probes.sweep(central.audit) == []
    publisher(audit_topic(central.desk.device_id), events[1].to_bytes())
    assert wait_for(lambda: central.reviews.get(req.request_id).probe_state == "destroyed", timeout=15)
    assert list(central.vault.folder.iterdir()) == []
    assert files_holding(secrets + runs(probe_jpeg), central.root) == []
    destroyed = [e for e in central.reviews.log(req.request_id) if e["action"] == "probe_destroyed"]
    assert [(e["actor"], e["detail"].split(":")[0]) for e in destroyed] == [("central", "case closed on the desk")]
    # The reviewer then sees the request without the face, told why.
    client = signed_in(central.web, "dr.ahmed", ["peer_reviewer"])
    page = client.get(f"/peer-review/{req.request_id}").get_data(as_text=True)
    assert 'id="no-probe"' in page and "probe.jpg" not in page


def test_tampered_wrong_key_moved_and_oversized_probes_are_refused_cleanly(central, publisher, probe_jpeg) -> None:
    topic = peer_review_request_topic(central.desk.device_id)
    wrong_key = central.request(probe_jpeg, key=X25519PrivateKey.generate())
    tampered = json.loads(central.request(probe_jpeg).to_bytes())
    raw = bytearray(base64.b64decode(tampered["probe"]["ciphertext"]))
    raw[100] ^= 0x40
    tampered["probe"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    first, second = central.request(probe_jpeg), central.request(probe_jpeg)
    moved = json.loads(second.to_bytes())
    moved["probe"] = json.loads(first.to_bytes())["probe"]  # a real probe, sealed for another request
    oversized = json.loads(central.request(probe_jpeg).to_bytes())
    oversized["doubts"] = "x" * 60000
    oversized["custody_ref"] = "y" * 200
    big = json.dumps(oversized).encode()
    big += b" " * (MAX_REQUEST_WITH_PROBE_BYTES + 1 - len(big))
    bad = [wrong_key.to_bytes(), json.dumps(tampered).encode(), json.dumps(moved).encode(), big]
    for payload in bad:
        publisher(topic, payload)
    assert wait_for(lambda: len(central.audit.rejections()) == len(bad), timeout=15)
    reasons = sorted(r["reason"] for r in central.audit.rejections())
    assert sum("does not open with central's review key" in r for r in reasons) == 1  # the wrong key
    assert sum("altered after it was sealed" in r for r in reasons) == 2  # tampered, and moved to another request
    assert sum(f"the limit is {MAX_REQUEST_WITH_PROBE_BYTES}" in r for r in reasons) == 1
    assert central.reviews.pending() == [] and list(central.vault.folder.iterdir()) == []
    # The ingest carries on: the genuine request after them is taken.
    publisher(topic, first.to_bytes())
    assert wait_for(lambda: central.vault.held(first.request_id), timeout=10)


def test_only_a_reviewer_who_did_not_ask_for_the_review_sees_the_images(central) -> None:
    req = central.request(b"\xff\xd8\xff\xe0" + b"\x10" * 64 + b"\xff\xd9")
    probes = ReviewProbes(central.reviews, central.vault)
    probes.vault.put(req.request_id, b"\xff\xd8\xff\xe0" + b"\x10" * 64 + b"\xff\xd9")
    central.reviews.add_request(req, probe_held=True)
    asker = signed_in(central.web, "PC.Jones", ["peer_reviewer"])
    for path in ("", "/probe.jpg", "/reference/1.jpg"):
        response = asker.get(f"/peer-review/{req.request_id}{path}")
        assert response.status_code == 403
    assert "another member of the team must review it" in response.get_data(as_text=True)
    assert [e["actor"] for e in central.reviews.log(req.request_id) if e["action"] == "access_refused"] == \
        ["PC.Jones"] * 3
    auditor = signed_in(central.web, "aud", ["auditor"])
    assert auditor.get(f"/peer-review/{req.request_id}/probe.jpg").status_code == 403


def test_the_sweep_destroys_a_probe_held_too_long_or_owned_by_no_request(central) -> None:
    from datetime import UTC, datetime, timedelta

    probes = ReviewProbes(central.reviews, central.vault, max_days=30)
    image = b"\xff\xd8\xff\xe0" + b"\x11" * 64 + b"\xff\xd9"
    old = central.request(image)
    central.vault.put(old.request_id, image)
    central.reviews.add_request(old, datetime.now(UTC) - timedelta(days=31), probe_held=True)
    stray = str(uuid.uuid4())
    central.vault.put(stray, image)
    fresh = central.request(image)
    central.vault.put(fresh.request_id, image)
    central.reviews.add_request(fresh, probe_held=True)
    assert sorted(probes.sweep(None)) == sorted([(old.request_id, "held 30 days"), (stray, "no request holds it")])
    assert central.vault.held(fresh.request_id) and not central.vault.held(old.request_id)
    assert probes.sweep(None) == []
    # Its desk revoked, the outcome can never reach it: the probe goes too.
    assert probes.sweep(None, revoked={central.desk.device_id}) == [(fresh.request_id, "desk revoked")]
    assert list(central.vault.folder.iterdir()) == []


def test_the_review_key_command_makes_a_private_key_once_and_settings_find_everything(tmp_path, capsys) -> None:
    from central.peer_review.__main__ import main
    from central.peer_review.review_key import load_review_key
    from central.settings import load
    from core.errors import SettingsError

    key = tmp_path / "review.key"
    assert main(["review-key", "--out", str(key)]) == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len((tmp_path / "review.key.pub").read_text()) == 65
    assert "give every desk" in capsys.readouterr().out
    assert main(["review-key", "--out", str(key)]) == 2  # never replaced: every desk seals to it
    assert "exists already" in capsys.readouterr().err
    assert load_review_key(key) is not None and load_review_key(None) is None
    (tmp_path / "bad.key").write_text("not hex\n")
    with pytest.raises(SettingsError, match="is not a review key"):
        load_review_key(tmp_path / "bad.key")
    config = tmp_path / "central.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\nport = 1883\n'
                      f'[web]\nsecret_key = "{SECRET}"\n'
                      f'[peer_review]\nreview_key = "{key}"\n'
                      f'[[reports.libraries]]\nname = "National"\npath = "/srv/lib.db"\nkey_file = "/srv/lib.key"\n')
    settings = load(config)
    assert settings.review_probe_dir == tmp_path / "review-probes"
    assert settings.review_libraries == [(Path("/srv/lib.db"), Path("/srv/lib.key"), "national")]  # the reports'


def test_a_desk_with_an_unreadable_review_key_is_told_what_to_copy(tmp_path) -> None:
    from appliance.services.peer_review import load_review_key
    from core.errors import SettingsError

    with pytest.raises(SettingsError, match="copy the public half of central's review key"):
        load_review_key(tmp_path / "missing.pub")
    (tmp_path / "wrong.pub").write_text("abc\n")
    with pytest.raises(SettingsError, match="64 hex digits"):
        load_review_key(tmp_path / "wrong.pub")


def test_a_half_written_probe_is_cleared_by_the_sweep(central) -> None:
    stray = central.vault.folder / f"{uuid.uuid4()}.key.tmp"
    stray.write_bytes(b"k" * 32)
    assert ReviewProbes(central.reviews, central.vault).sweep(None) == []
    assert list(central.vault.folder.iterdir()) == []
