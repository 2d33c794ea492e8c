"""The peer review wire model: round trips, and every malformed message refused with a reason."""

from __future__ import annotations

import json
import uuid

import pytest

from core.errors import WireFormatError
from core.peer_review import (
    MAX_OUTCOME_BYTES,
    CandidateSummary,
    PeerReviewOutcome,
    PeerReviewRequest,
)
from core.topics import (
    device_from_peer_review_request_topic,
    peer_review_outcome_topic,
    peer_review_request_topic,
)


def request(**over) -> PeerReviewRequest:
    values = dict(device_id="desk-a", case_id="1A2B3C4D", custody_ref="CR-1", requested_by="officer",
                  doubts="Ear shape differs.", ranks=(2,),
                  candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.61, "strong", "not_viable"),
                              CandidateSummary(2, "DEMO-BIDEN", 0.32, "weak", "needs_peer_review")),
                  library_version="v3")
    values.update(over)
    return PeerReviewRequest(**values)


def test_request_and_outcome_round_trip_and_carry_no_images() -> None:
    req = request()
    data = req.to_bytes()
    assert PeerReviewRequest.from_bytes(data) == req
    assert set(json.loads(data)["candidates"][0]) == {"rank", "subject_ref", "score", "band", "decision"}
    out = PeerReviewOutcome(device_id="desk-a", request_id=req.request_id, reviewer="Dr R",
                            decisions={2: "not_viable"}, notes="Different nose and ears.")
    assert out.outcome == "confirmed_not_viable"
    assert PeerReviewOutcome.from_bytes(out.to_bytes()) == out
    viable = PeerReviewOutcome(device_id="desk-a", request_id=req.request_id, reviewer="Dr R",
                               decisions={2: "viable"}, notes="Same person in my view.")
    assert viable.outcome == "viable_after_review"


def _mutated(payload: bytes, **changes) -> bytes:
    obj = json.loads(payload)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize("changes, message", [
    ({"v": 2}, "schema version"),
    ({"image": "AAAA"}, "unexpected ['image']"),
    ({"candidates": ...}, "missing ['candidates']"),
    ({"request_id": "not-a-uuid"}, "UUID"),
    ({"device_id": "desk/+"}, "Device id"),
    ({"ranks": [9]}, "not one of the candidates"),
    ({"ranks": [], "doubts": " "}, "name a candidate in question or record doubts"),
    ({"requested_at": "2030-01-01T10:00:00"}, "UTC offset"),
    ({"candidates": [{"rank": 1, "subject_ref": "X", "score": 0.5, "band": "b", "decision": "x",
                      "thumbnail": "AAAA"}]}, "exactly the fields"),
    ({"doubts": "x" * 5000}, "at most 4000"),
])
def test_malformed_requests_are_refused(changes, message) -> None:
    with pytest.raises(WireFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PeerReviewRequest.from_bytes(_mutated(request().to_bytes(), **changes))


def test_malformed_outcomes_are_refused() -> None:
    good = PeerReviewOutcome(device_id="desk-a", request_id=str(uuid.uuid4()), reviewer="Dr R",
                             decisions={2: "not_viable"}, notes="Different nose and ears.").to_bytes()
    cases = [
        ({"outcome": "viable_after_review"}, "contradicts"),
        ({"outcome": "inconclusive"}, "Unknown peer review outcome"),
        ({"decisions": {"2": "needs_peer_review"}}, "'viable' or 'not_viable'"),
        ({"decisions": {"02": "not_viable"}}, "map candidate ranks"),
        ({"reviewer": ""}, "'reviewer'"),
        ({"notes": 5}, "'notes'"),
        ({"decided_at": "yesterday"}, "ISO date"),
    ]
    for changes, message in cases:
        with pytest.raises(WireFormatError, match=message):
            PeerReviewOutcome.from_bytes(_mutated(good, **changes))
    for junk in (b"", b"[]", b"{", b'{"v": 1, "x": NaN}', b"x" * (MAX_OUTCOME_BYTES + 1)):
        with pytest.raises(WireFormatError):
            PeerReviewOutcome.from_bytes(junk)


def test_peer_review_topics_keep_device_writes_under_the_device() -> None:
    assert peer_review_request_topic("desk-a") == "rfr/v1/devices/desk-a/peer-review/request"
    assert peer_review_outcome_topic("desk-a") == "rfr/v1/peer-review/desk-a/outcome"
    assert device_from_peer_review_request_topic("rfr/v1/devices/desk-a/peer-review/request") == "desk-a"
    for bad in ("rfr/v1/devices/desk-a/audit", "rfr/v1/devices/desk-a/peer-review/request/x",
                "rfr/v1/devices/DESK/peer-review/request", "rfr/v1/peer-review/desk-a/outcome"):
        with pytest.raises(WireFormatError):
            device_from_peer_review_request_topic(bad)
