import json

import pytest

from core.errors import WireFormatError
from core.events import MAX_PAYLOAD_BYTES, AuditEvent


def make(**over):
    fields = dict(device_id="desk-01", seq=1, type="search", actor="pc1234", outcome="candidates_shown",
                  details={"candidates": 3})
    fields.update(over)
    return AuditEvent(**fields)


def test_round_trip_keeps_every_field():
    event = make()
    assert AuditEvent.from_bytes(event.to_bytes()) == event


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"v": 99}).encode(), "schema version"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "limit"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(WireFormatError, match=reason):
        AuditEvent.from_bytes(payload)


def test_missing_and_extra_fields_are_named():
    data = make().to_dict()
    del data["actor"]
    data["extra"] = 1
    with pytest.raises(WireFormatError, match=r"missing \['actor'\], unexpected \['extra'\]"):
        AuditEvent.from_bytes(json.dumps(data).encode())


@pytest.mark.parametrize("over", [{"seq": 0}, {"seq": True}, {"type": "reboot"}, {"device_id": "a/b"},
                                  {"actor": ""}, {"event_id": "not-a-uuid"}])
def test_invalid_fields_are_refused(over):
    with pytest.raises(WireFormatError):
        make(**over)


@pytest.mark.parametrize("key", ["template", "Image", "thumbnail"])
def test_biometric_detail_keys_are_refused(key):
    with pytest.raises(WireFormatError, match="biometric"):
        make(details={key: "x"})


def test_oversized_event_cannot_be_serialised():
    with pytest.raises(WireFormatError, match="limit"):
        make(details={"note": "x" * MAX_PAYLOAD_BYTES}).to_bytes()


def test_chain_fields_round_trip_and_must_be_hashes():
    event = make(prev_hash="a" * 64, hash="b" * 64)
    assert AuditEvent.from_bytes(event.to_bytes()) == event
    assert event.sealed and not make().sealed
    with pytest.raises(WireFormatError, match="hex"):
        make(hash="not-a-hash")


@pytest.mark.parametrize("event_type", ["login", "logout", "submission", "approval", "candidate_viewed",
                                        "adjudication", "match_report", "peer_review", "deletion",
                                        "config_change", "request_refused"])
def test_every_desk_action_has_an_event_type(event_type):
    assert make(type=event_type).type == event_type


def test_nan_is_refused_because_it_has_no_canonical_form():
    data = make().to_dict()
    raw = json.dumps(data).replace('"candidates": 3', '"candidates": NaN').encode()
    with pytest.raises(WireFormatError):
        AuditEvent.from_bytes(raw)
