"""Properties of every wire format, for any input (Hypothesis): refused as WireFormatError or parsed, never a crash.

For each message type: arbitrary bytes, arbitrary JSON values under exactly the right field names, and
byte mutations of a valid encoding either parse to a valid object or raise ``WireFormatError``; valid
objects round-trip (encode, decode, equal). docs/fuzzing.md has the coverage-guided counterpart.
"""

from __future__ import annotations

import contextlib
import json
import string
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from core.audit.ack import Ack
from core.audit.checkpoint import Checkpoint
from core.errors import WireFormatError
from core.events import EVENT_TYPES, AuditEvent
from core.fleet import KEY_PROTECTION_MODES, FleetCommand, Heartbeat
from core.library_announce import LibraryAnnouncement
from core.peer_review import (
    CANDIDATE_DECISIONS,
    REVIEW_DECISIONS,
    CandidateSummary,
    PeerReviewOutcome,
    PeerReviewRequest,
)
from core.wire import MAX_DEPTH, decode_object, encode_object
from tests.byte_edits import apply_edits

FAST = settings(max_examples=150, deadline=None)
SLOW = settings(max_examples=60, deadline=None)

# --- Strategies -----------------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# Values that break careless parsers: unhashable containers, bools posing as ints, huge and negative numbers.
hostile = st.one_of(json_values, st.just([]), st.just({}), st.just(True), st.just(-1), st.just(2**64),
                    st.just(""), st.just("0" * 5000), st.just(1e308), st.text(string.digits, min_size=1, max_size=6))

device_ids = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}\Z")
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC)).map(lambda d: d.isoformat(timespec="milliseconds"))
short_text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
uuids = st.uuids().map(str)
detail_keys = st.text(max_size=10).filter(lambda k: k.lower() not in {"image", "probe", "template", "embedding",
                                                                      "thumbnail", "crop"})

events = st.builds(AuditEvent, device_id=device_ids, seq=st.integers(1, 2**53),
                   type=st.sampled_from(sorted(EVENT_TYPES)), actor=st.text(min_size=1, max_size=50),
                   outcome=st.text(min_size=1, max_size=50),
                   details=st.dictionaries(detail_keys, json_values, max_size=4), event_id=uuids,
                   occurred_at=times, prev_hash=st.none() | hex64, hash=st.none() | hex64)
acks = st.builds(Ack, device_id=device_ids, events_through=st.integers(0, 2**63),
                 checkpoint_through=st.integers(0, 2**63), head_hash=hex64, issued_at=times)
_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
checkpoints = st.builds(lambda d, s, h, t: Checkpoint.sign(_KEY, d, s, h, t), device_ids, st.integers(1, 2**53),
                        hex64, times)
digests = st.from_regex(r"\A[A-Za-z0-9:_-]{16,60}\Z")
announcements = st.builds(LibraryAnnouncement, library_version=st.integers(1, 10**6),
                          target=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,30}\Z"),
                          kind=st.sampled_from(["full", "delta", "config"]), result_digest=digests, published_at=times)
counts = st.integers(0, 2**50)
finite = st.floats(-1e6, 1e6, allow_nan=False)
heartbeats = st.builds(Heartbeat, device_id=device_ids, sent_at=times, interval_s=st.floats(0.001, 86400),
                       software_version=st.text(min_size=1, max_size=20), library_version=st.none() | counts,
                       embedder_id=st.none() | st.text(min_size=1, max_size=20), disk_free_bytes=counts,
                       disk_total_bytes=counts, memory_available_bytes=st.none() | counts,
                       memory_total_bytes=st.none() | counts, outbox_depth=counts,
                       since_last_sync_s=st.none() | st.floats(0, 1e6), clock_offset_s=st.none() | finite,
                       key_protection=st.sampled_from(KEY_PROTECTION_MODES))
commands = st.builds(lambda d, t, n: FleetCommand.sign(_KEY, d, "wipe", now=t, nonce=n), device_ids,
                     st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1),
                                  max_value=datetime(2100, 1, 1)),
                     st.text("0123456789abcdef", min_size=32, max_size=32))
candidates = st.lists(st.builds(CandidateSummary, rank=st.integers(1, 50), subject_ref=short_text,
                                score=st.floats(-1, 1), band=short_text,
                                decision=st.sampled_from(sorted(CANDIDATE_DECISIONS))),
                      max_size=6, unique_by=lambda c: c.rank)


@st.composite
def review_requests(draw: st.DrawFn) -> PeerReviewRequest:
    cands = draw(candidates)
    ranks = draw(st.lists(st.sampled_from([c.rank for c in cands]), unique=True) if cands else st.just([]))
    doubts = draw(st.text(max_size=100) if ranks else short_text)
    case_id = draw(st.text(min_size=1, max_size=32).filter(str.strip))
    return PeerReviewRequest(device_id=draw(device_ids), case_id=case_id,
                             custody_ref=draw(short_text), requested_by=draw(short_text), doubts=doubts,
                             ranks=tuple(ranks), candidates=tuple(cands),
                             library_version=draw(st.none() | short_text),
                             request_id=draw(uuids), requested_at=draw(times))


outcomes = st.builds(PeerReviewOutcome, device_id=device_ids, request_id=uuids, reviewer=short_text,
                     decisions=st.dictionaries(st.integers(1, 50), st.sampled_from(sorted(REVIEW_DECISIONS)),
                                               max_size=5),
                     notes=short_text, decided_at=times)

MESSAGES = [
    (AuditEvent, events), (Ack, acks), (Checkpoint, checkpoints), (LibraryAnnouncement, announcements),
    (Heartbeat, heartbeats), (FleetCommand, commands), (PeerReviewRequest, review_requests()),
    (PeerReviewOutcome, outcomes),
]
message_types = st.sampled_from(MESSAGES)


def _parse_or_refuse(cls: type, payload: bytes) -> object | None:
    """The parsed object, or None when refused with the documented error; any other exception fails the test."""
    try:
        return cls.from_bytes(payload)  # type: ignore[attr-defined]
    except WireFormatError:
        return None


# (kind, position, byte): kind 0 overwrites, 1 inserts, 2 deletes; bytes that matter to JSON, two that break UTF-8.
edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6),
                           st.sampled_from(b'{}[]":,0123456789-.eE \\\x00\xff')), min_size=1, max_size=6)

# --- core.wire --------------------------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_decode_object_refuses_arbitrary_bytes_only_with_wire_format_error(payload: bytes) -> None:
    try:
        obj = decode_object(payload, 1024, "Payload")
    except WireFormatError:
        return
    assert isinstance(obj, dict)


@FAST
@given(st.text(alphabet='[]{}":,0123456789 ntrufalse\\', max_size=300))
def test_decode_object_refuses_json_shaped_text_only_with_wire_format_error(text: str) -> None:
    with contextlib.suppress(WireFormatError):
        decode_object(text.encode(), 1024, "Payload")


@FAST
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_json_objects_round_trip_through_encode_and_decode(obj: dict) -> None:
    assert decode_object(encode_object(obj, 10**6, "Payload"), 10**6, "Payload") == obj


@FAST
@given(st.integers(1, 5000), st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_is_refused_or_parsed_never_a_recursion_error(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + ("" if opener == "[" else "1") + closer * depth
    payload = ('{"x":' + inner + "}").encode()
    try:
        decode_object(payload, 10**6, "Payload")
    except WireFormatError as e:
        assert depth + 1 > MAX_DEPTH and "nested" in str(e)
    else:
        assert depth + 1 <= MAX_DEPTH


# --- Every message type -----------------------------------------------------------------------------------------


@SLOW
@given(message_types, st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_with_wire_format_error(message: tuple, payload: bytes) -> None:
    cls, _ = message
    _parse_or_refuse(cls, payload)


@SLOW
@given(st.data())
def test_valid_messages_round_trip(data: st.DataObject) -> None:
    cls, strategy = data.draw(message_types)
    message = data.draw(strategy)
    assert cls.from_bytes(message.to_bytes()) == message


@SLOW
@given(st.data())
def test_any_json_values_under_the_right_field_names_are_parsed_or_refused(data: st.DataObject) -> None:
    """The shape that reaches the dataclass checks: every field present, each of any JSON type."""
    cls, strategy = data.draw(message_types)
    valid = json.loads(data.draw(strategy).to_bytes())
    names = sorted(k for k in valid if k != "v")
    changed = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    for name in changed:
        valid[name] = data.draw(hostile)
    parsed = _parse_or_refuse(cls, json.dumps(valid).encode())
    if parsed is not None:
        assert cls.from_bytes(parsed.to_bytes()) == parsed


@SLOW
@given(st.data())
def test_nested_values_are_parsed_or_refused(data: st.DataObject) -> None:
    """Candidates, decisions and details hold structure of their own: hostile values there too."""
    cls, strategy = data.draw(st.sampled_from([(PeerReviewRequest, review_requests()), (PeerReviewOutcome, outcomes),
                                               (AuditEvent, events)]))
    obj = json.loads(data.draw(strategy).to_bytes())
    if cls is PeerReviewRequest:
        obj["candidates"] = data.draw(st.lists(st.fixed_dictionaries(
            {k: hostile for k in ("rank", "subject_ref", "score", "band", "decision")}), max_size=3))
        obj["ranks"] = data.draw(st.lists(hostile, max_size=3))
    elif cls is PeerReviewOutcome:
        ranks = st.text(string.digits, min_size=1, max_size=6) | st.text(max_size=3) | st.just("1" * 5000)
        obj["decisions"] = data.draw(st.dictionaries(ranks, hostile, max_size=3))
        obj["outcome"] = data.draw(hostile)
    else:
        obj["details"] = data.draw(hostile)
    parsed = _parse_or_refuse(cls, json.dumps(obj).encode())
    if parsed is not None:
        assert cls.from_bytes(parsed.to_bytes()) == parsed


@SLOW
@given(st.data(), edits)
def test_mutated_encodings_parse_to_valid_objects_or_are_refused(data: st.DataObject, changes: list) -> None:
    cls, strategy = data.draw(message_types)
    payload = apply_edits(data.draw(strategy).to_bytes(), changes)
    parsed = _parse_or_refuse(cls, payload)
    if parsed is not None:
        assert cls.from_bytes(parsed.to_bytes()) == parsed
