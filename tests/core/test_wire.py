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
