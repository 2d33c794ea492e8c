"""Peer review requests on the desk: kept until answered, then blanked down to the ids that spot repeats."""

from __future__ import annotations

from pathlib import Path

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.peer_review_outbox import PeerReviewOutbox

REQUEST = b'{"candidates": [{"subject_ref": "DEMO-00017", "score": 0.71}], "doubts": "Ear shape differs."}'


def _payloads(db: DeviceDatabase) -> dict[str, bytes]:
    with db.lock:
        rows = db.conn.execute("SELECT request_id, payload FROM peer_review_outbox").fetchall()
    return {r[0]: bytes(r[1]) for r in rows}


def test_an_answered_request_keeps_only_its_ids(tmp_path: Path) -> None:
    db = DeviceDatabase(tmp_path / "device")
    queue = PeerReviewOutbox(db)
    queue.enqueue("req-1", "case-1", REQUEST, now=10.0)
    assert [q.payload for q in queue.due(11.0, 60.0)] == [REQUEST]  # kept while it may need sending again
    assert queue.mark_answered("req-1", now=20.0)
    assert _payloads(db) == {"req-1": b""}
    answered = queue.get("req-1")
    assert answered is not None and answered.answered and answered.case_id == "case-1"
    assert not queue.mark_answered("req-1", now=21.0)  # a repeated outcome is still recognised
    assert queue.due(100.0, 0.0, everything=True) == []


def test_a_request_retired_by_a_newer_one_for_the_same_case_is_blanked(tmp_path: Path) -> None:
    db = DeviceDatabase(tmp_path / "device")
    queue = PeerReviewOutbox(db)
    queue.enqueue("req-old", "case-1", REQUEST, now=10.0)
    queue.enqueue("req-new", "case-1", REQUEST + b" ", now=11.0)
    assert _payloads(db) == {"req-old": b"", "req-new": REQUEST + b" "}
    assert [q.request_id for q in queue.due(12.0, 60.0)] == ["req-new"]


def test_requests_answered_before_this_version_are_blanked_when_the_desk_starts(tmp_path: Path) -> None:
    db = DeviceDatabase(tmp_path / "device")
    PeerReviewOutbox(db)
    with db.lock:  # a row as the previous version left it: answered, payload still there
        db.conn.execute("INSERT INTO peer_review_outbox (request_id, case_id, payload, queued_at, answered_at)"
                        " VALUES ('req-1', 'case-1', ?, 1.0, 2.0)", (REQUEST,))
        db.conn.execute("INSERT INTO peer_review_outbox (request_id, case_id, payload, queued_at)"
                        " VALUES ('req-2', 'case-2', ?, 3.0)", (REQUEST,))
        db.conn.commit()
    PeerReviewOutbox(db)
    assert _payloads(db) == {"req-1": b"", "req-2": REQUEST}
