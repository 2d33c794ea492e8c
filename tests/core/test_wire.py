"""Every wire format refuses what is not strict JSON, the same way."""

import pytest

from core.audit.ack import Ack
from core.audit.checkpoint import Checkpoint
from core.errors import WireFormatError
from core.events import AuditEvent
from core.fleet import FleetCommand, Heartbeat
from core.library_announce import LibraryAnnouncement
from core.peer_review import PeerReviewOutcome, PeerReviewRequest
from core.wire import decode_object, encode_object

PARSERS = [AuditEvent.from_bytes, Ack.from_bytes, Checkpoint.from_bytes, LibraryAnnouncement.from_bytes,
           Heartbeat.from_bytes, FleetCommand.from_bytes, PeerReviewRequest.from_bytes, PeerReviewOutcome.from_bytes]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("payload", [b'{"v": NaN}', b'{"v": Infinity}', b"\xff\xfe", b"[1]", b'{"v": 1'])
def test_non_json_payloads_are_refused_by_every_message_type(parse, payload):
    with pytest.raises(WireFormatError):
        parse(payload)


@pytest.mark.parametrize("parse", PARSERS)
def test_oversized_payloads_are_refused_before_parsing(parse):
    with pytest.raises(WireFormatError, match="limit"):
        parse(b"{" + b" " * 1_000_000 + b"}")


def test_decoder_checks_version_and_exact_fields():
    assert decode_object(b'{"v": 2, "a": 1}', 100, "Thing", version=2, fields={"v", "a"}) == {"a": 1}
    with pytest.raises(WireFormatError, match="schema version 1"):
        decode_object(b'{"v": 1, "a": 1}', 100, "Thing", version=2)
    with pytest.raises(WireFormatError, match=r"missing \['b'\], unexpected \['a'\]"):
        decode_object(b'{"v": 2, "a": 1}', 100, "Thing", version=2, fields={"v", "b"})


def test_encoder_refuses_nan_and_oversize():
    with pytest.raises(WireFormatError, match="not plain JSON"):
        encode_object({"x": float("nan")}, 100, "Thing")
    with pytest.raises(WireFormatError, match="limit"):
        encode_object({"x": "y" * 200}, 100, "Thing")


@pytest.mark.parametrize("parse", PARSERS)
def test_deep_nesting_is_refused_as_a_wire_error_not_a_recursion_error(parse):
    # 16 KB of brackets used to raise RecursionError from json, which no caller caught.
    with pytest.raises(WireFormatError):
        parse(b"[" * 16_000)
    with pytest.raises(WireFormatError):
        parse(b'{"v": 1, "details": ' + b'{"a": ' * 500 + b"1" + b"}" * 501)


def test_shape_caps_name_what_was_too_big():
    with pytest.raises(WireFormatError, match="nested more than 16 levels"):
        decode_object(b'{"a": ' + b"[" * 17 + b"]" * 17 + b"}", 10_000, "Thing")
    many = b"{" + b",".join(b'"k%d": 1' % i for i in range(2001)) + b"}"
    with pytest.raises(WireFormatError, match="more than 2000 keys"):
        decode_object(many, 100_000, "Thing")
    with pytest.raises(WireFormatError, match="text value longer than"):
        decode_object(b'{"a": "' + b"x" * 70_000 + b'"}', 100_000, "Thing")


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_towards_depth():
    text = '{"a": "' + "[{" * 100 + '\\"' + '", "b": [[["\\\\"]]]}'
    assert decode_object(text.encode(), 10_000, "Thing") == {"a": "[{" * 100 + '"', "b": [[["\\"]]]}


def test_unterminated_string_is_refused_as_invalid_json():
    with pytest.raises(WireFormatError, match="not valid JSON"):
        decode_object(b'{"a": "abc\\', 100, "Thing")


def _valid(message: object) -> dict:
    import json

    return json.loads(message.to_bytes())  # type: ignore[attr-defined]


def _hostile_messages() -> list[tuple[object, bytes]]:
    """Payloads the property tests and the fuzzer found raising TypeError or ValueError instead of WireFormatError."""
    import json
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from core.peer_review import CandidateSummary

    command = _valid(FleetCommand.sign(Ed25519PrivateKey.generate(), "desk-01", "wipe", now=datetime.now(UTC)))
    announcement = _valid(LibraryAnnouncement.now(3, "library-v000003.db", "full", "sha256:" + "d" * 64))
    request = _valid(PeerReviewRequest(device_id="desk-01", case_id="C-1", custody_ref="CR/1", requested_by="o1",
                                       doubts="Unsure.", ranks=(1,),
                                       candidates=(CandidateSummary(1, "S-1", 0.9, "strong", "needs_peer_review"),)))
    outcome = _valid(PeerReviewOutcome(device_id="desk-01", request_id="12345678-1234-4234-8234-123456789abc",
                                       reviewer="fr1", decisions={1: "viable"}, notes="Same scar."))
    cases = [
        (FleetCommand, command | {"command": []}),  # unhashable: `[] in frozenset` is a TypeError
        (FleetCommand, command | {"command": {}}),
        (LibraryAnnouncement, announcement | {"kind": ["full"]}),
        (PeerReviewRequest, request | {"candidates": [request["candidates"][0] | {"decision": []}]}),
        (PeerReviewOutcome, outcome | {"decisions": {"1" * 5000: "viable"}}),  # past int()'s 4300-digit limit
    ]
    return [(cls, json.dumps(obj).encode()) for cls, obj in cases]


@pytest.mark.parametrize(("cls", "payload"), _hostile_messages())
def test_values_of_the_wrong_type_are_wire_errors_not_crashes(cls, payload: bytes) -> None:
    with pytest.raises(WireFormatError):
        cls.from_bytes(payload)


@pytest.mark.parametrize("kind", [["full"], {"a": 1}])
def test_target_custom_metadata_with_an_unhashable_kind_is_a_wire_error(kind: object) -> None:
    from core.library_announce import LibraryTargetInfo

    with pytest.raises(WireFormatError):
        LibraryTargetInfo.from_dict({"kind": kind, "library_version": 3, "embedder_id": "emb@1",
                                     "result_digest": "sha256:" + "d" * 64})
