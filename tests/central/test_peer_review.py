"""Peer review at central: the store, the request ingest's refusals and the reviewers' page."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest
from flask import Flask

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.peer_review.ingest import PeerReviewIngest
from central.peer_review.store import PeerReviewError, PeerReviewStore
from core.morphology import COMPONENTS, ComponentFinding, Morphology
from core.peer_review import CandidateMorphology, CandidateSummary, PeerReviewOutcome, PeerReviewRequest
from core.topics import peer_review_outcome_topic, peer_review_request_topic
from tests.central_signin import signed_in


def make_request(device: str = "desk-a", ranks: tuple[int, ...] = (2,),
                 doubts: str = "Ears differ.") -> PeerReviewRequest:
    return PeerReviewRequest(
        device_id=device, case_id="0A1B2C3D", custody_ref="CR-2025-00123", requested_by="officer",
        doubts=doubts, ranks=ranks, library_version="v7",
        candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.612, "strong", "not_viable"),
                    CandidateSummary(2, "DEMO-BIDEN", 0.301, "weak", "needs_peer_review")))


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


@pytest.fixture
def reviews(app: Flask) -> PeerReviewStore:
    store: PeerReviewStore = app.extensions["central.peer_reviews"]
    return store


def _exercise_store(store: PeerReviewStore) -> None:
    req = make_request()
    assert store.add_request(req) == "new"
    assert store.add_request(req) == "repeat"
    assert [r.request_id for r in store.pending()] == [req.request_id]
    with pytest.raises(PeerReviewError, match="Decide each candidate"):
        store.record_outcome(req.request_id, "Dr R", {}, "Different ears and nose.")
    outcome = store.record_outcome(req.request_id, "Dr R", {2: "not_viable"}, "Different ears and nose.")
    assert outcome.outcome == "confirmed_not_viable"
    with pytest.raises(PeerReviewError, match="already decided by Dr R"):
        store.record_outcome(req.request_id, "Dr S", {2: "viable"}, "Same person in my view.")
    due = store.claim_due()
    assert [(rid, topic) for rid, topic, _ in due] == [(req.request_id, peer_review_outcome_topic("desk-a"))]
    assert PeerReviewOutcome.from_bytes(due[0][2]) == outcome
    assert store.claim_due() == []  # claimed once
    store.sent(req.request_id, ok=True)
    # The device asking again means it never got the outcome: it is due again.
    assert store.add_request(req) == "repeat"
    assert [rid for rid, _, _ in store.claim_due()] == [req.request_id]
    assert [e["action"] for e in store.log(req.request_id)][::-1] == ["requested", "decided", "outcome_sent"]
    assert store.get(req.request_id).sends == 2


def test_store_keeps_one_decision_and_queues_the_outcome(database_url: str) -> None:
    store = PeerReviewStore(database_url)
    try:
        _exercise_store(store)
    finally:
        store.close()


def test_ingest_refuses_unregistered_forged_and_malformed_requests(tmp_path) -> None:
    audit = AuditStore(tmp_path / "central.db")
    registry = RegistryStore(audit.url)
    store = PeerReviewStore(audit.url)
    try:
        ingest = PeerReviewIngest(store, registry, audit)
        req = make_request()
        topic = peer_review_request_topic("desk-a")
        assert ingest.handle(topic, req.to_bytes()) == "rejected"  # desk-a not registered yet
        registry.register_device("desk-a", "00" * 32)
        registry.register_device("desk-b", "11" * 32)
        assert ingest.handle(peer_review_request_topic("desk-b"), req.to_bytes()) == "rejected"  # forged origin
        assert ingest.handle(topic, b'{"v": 1}') == "rejected"
        assert ingest.handle(topic, req.to_bytes()) == "new"
        reasons = [r["reason"] for r in audit.rejections()]
        assert any("not registered" in r for r in reasons)
        assert any("claims device 'desk-a' but was published by 'desk-b'" in r for r in reasons)
        assert [r.device_id for r in store.pending()] == ["desk-a"]
    finally:
        store.close()
        registry.close()
        audit.close()


def test_reviewer_page_lists_requests_and_records_the_outcome(app: Flask, reviews) -> None:
    client = signed_in(app, "dr.reviewer", ["peer_reviewer"])
    req = make_request()
    reviews.add_request(req)
    index = client.get("/peer-review").get_data(as_text=True)
    assert "0A1B2C3D" in index and "CR-2025-00123" in index
    page = client.get(f"/peer-review/{req.request_id}").get_data(as_text=True)
    assert "DEMO-BIDEN" in page and "Ears differ." in page and "<img" not in page
    token = _token(page)
    # No CSRF token: refused like every central form.
    assert client.post(f"/peer-review/{req.request_id}", data={"notes": "Different ears."}).status_code == 400
    missing = client.post(f"/peer-review/{req.request_id}", data={"csrf_token": token, "notes": "short"})
    assert missing.status_code == 422
    text = missing.get_data(as_text=True)
    assert "Decide candidate 2" in text and "sentence or two" in text
    assert reviews.get(req.request_id).status == "pending"
    done = client.post(f"/peer-review/{req.request_id}", data={
        "csrf_token": token, "decision-2": "not_viable", "notes": "Different ear shape and nose bridge."})
    assert done.status_code == 302 and done.headers["Location"] == "/peer-review"
    assert "confirmed not viable" in client.get("/peer-review").get_data(as_text=True)
    record = reviews.get(req.request_id)
    assert (record.status, record.reviewer, record.decisions) == ("decided", "dr.reviewer", {2: "not_viable"})
    again = client.post(f"/peer-review/{req.request_id}", data={
        "csrf_token": token, "reviewer": "Someone Else", "decision-2": "viable", "notes": "Same person, I think."})
    assert again.status_code == 409 and "already decided by dr.reviewer" in again.get_data(as_text=True)
    shown = client.get(f"/peer-review/{req.request_id}").get_data(as_text=True)
    assert "decided · dr.reviewer" in shown
    assert client.get("/peer-review/00000000-0000-4000-8000-000000000000").status_code == 404


def test_store_marks_a_held_probe_destroyed_once_in_either_database(database_url: str) -> None:
    store = PeerReviewStore(database_url)
    try:
        req = make_request()
        assert store.add_request(req, probe_held=True) == "new"
        assert [r.request_id for r in store.held_probes()] == [req.request_id]
        assert store.probe_destroyed(req.request_id, "dr.r", "review answered", "files removed")
        assert not store.probe_destroyed(req.request_id, "central", "review answered", "again")
        record = store.get(req.request_id)
        assert (record.probe_state, store.held_probes()) == ("destroyed", [])
        assert [(e["action"], e["actor"]) for e in store.log(req.request_id)][::-1] == [
            ("requested", "officer"), ("probe_held", "central"), ("probe_destroyed", "dr.r")]
    finally:
        store.close()


def test_the_reviewer_sees_the_officers_feature_comparison_until_the_review_is_answered(app: Flask, reviews) -> None:
    """Issue 17 item 4: the officer's FISWG comparison travels with the request and is shown beside the
    candidate; being a description of the detainee's face, central keeps it only until the outcome."""
    findings = {key: ComponentFinding("not_assessed") for key in COMPONENTS}
    findings["ears"] = ComponentFinding("dissimilar", "Attached lobes in the reference, free in the probe.")
    findings["nose"] = ComponentFinding("similar", "")
    req = dataclasses.replace(make_request(), morphology=(CandidateMorphology(2, Morphology(findings)),))
    assert reviews.add_request(PeerReviewRequest.from_bytes(req.to_bytes())) == "new"
    client = signed_in(app, "dr.reviewer", ["peer_reviewer"])
    page = html.unescape(client.get(f"/peer-review/{req.request_id}").get_data(as_text=True))
    table = page[page.index('id="morphology-2"'):]
    table = table[:table.index("</table>")]
    assert "Attached lobes in the reference, free in the probe." in table
    assert re.search(r"Ears</th><td>Dissimilar</td>", table) and re.search(r"Nose</th><td>Similar</td>", table)
    token = _token(page)
    assert client.post(f"/peer-review/{req.request_id}", data={
        "csrf_token": token, "decision-2": "not_viable", "notes": "Different ear shape and nose bridge."}
    ).status_code == 302
    assert reviews.get(req.request_id).morphology is None, "the officer's description is not kept after the outcome"
