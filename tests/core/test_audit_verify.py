"""Verification names the position, device, sequence and reason of every fault."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit import chain
from core.audit.checkpoint import Checkpoint
from core.audit.verify import CheckpointRecord, EventRecord, LinkRecord, verify_records
from core.events import AuditEvent

KEY = Ed25519PrivateKey.generate()
KEYS = {"desk-01": KEY.public_key()}


def build(n: int = 6, every: int = 3) -> list:
    """Events 1..n with a checkpoint after every ``every``-th and after the last."""
    out: list = []
    prev = chain.genesis_hash("desk-01")
    for seq in range(1, n + 1):
        e = chain.seal(AuditEvent(device_id="desk-01", seq=seq, type="search", actor=f"pc{seq}", outcome="ok"), prev)
        prev = e.hash
        out.append(e)
        if seq % every == 0 or seq == n:
            out.append(Checkpoint.sign(KEY, "desk-01", seq, e.hash))
    return out


def records(items: list) -> list:
    return [EventRecord(i, x) if isinstance(x, AuditEvent) else CheckpointRecord(i, x)
            for i, x in enumerate(items, start=1)]


def kinds(items: list, **kw) -> list[tuple[int, int | None, str]]:
    return [(f.position, f.seq, f.kind) for f in verify_records(records(items), KEYS, **kw).findings]


def test_untouched_chain_verifies():
    report = verify_records(records(build()), KEYS)
    assert report.ok and report.events == 6 and report.checkpoints == 2


def test_edited_event_is_named_at_its_position():
    items = build()
    items[1] = replace(items[1], actor="someone-else")  # position 2, seq 2
    assert kinds(items) == [(2, 2, "edited")]


def test_edited_and_rehashed_event_breaks_the_next_link_and_the_checkpoint():
    items = build()
    items[1] = chain.seal(replace(items[1], actor="someone-else"), items[1].prev_hash)
    found = kinds(items)
    # Its own hash is consistent now, so the fault shows where the next event no longer links.
    assert found == [(3, 3, "bad_link")]


def test_deleted_event_is_a_gap_at_the_next_position():
    items = build()
    del items[1]  # seq 2
    assert kinds(items)[0] == (2, 3, "gap")


def test_inserted_event_is_detected():
    items = build()
    fake = chain.seal(AuditEvent(device_id="desk-01", seq=3, type="search", actor="x", outcome="ok"), items[1].hash)
    items.insert(2, fake)
    # The genuine seq 3 is now a repeat, and the signed head at seq 3 no longer matches the chain.
    assert kinds(items) == [(4, 3, "duplicate"), (5, 3, "checkpoint_mismatch"), (6, 4, "bad_link")]


def test_reordered_events_are_flagged():
    items = build()
    items[4], items[5] = items[5], items[4]  # seq 4 and seq 5 swapped
    assert kinds(items)[:2] == [(5, 5, "gap"), (6, 4, "reorder")]


def test_forged_checkpoint_signature_is_refused():
    items = build()
    bad = Checkpoint.sign(Ed25519PrivateKey.generate(), "desk-01", 3, items[2].hash)
    items[3] = bad
    assert (4, 3, "bad_signature") in kinds(items)


def test_unsigned_tail_is_reported_unless_allowed():
    items = build(5, every=3)[:-1]  # drop the final checkpoint: seqs 4..5 unsigned
    assert kinds(items) == [(5, 4, "unsigned_tail")]
    assert kinds(items, require_signed_tail=False) == []


def test_links_stand_in_for_left_out_events():
    items = build()
    recs = records(items)
    recs[1] = LinkRecord(2, "desk-01", 2, chain.event_digest(items[1]))
    assert verify_records(recs, KEYS).ok
    recs[1] = LinkRecord(2, "desk-01", 2, "0" * 64)
    assert [f.kind for f in verify_records(recs, KEYS).findings] == ["bad_link"]


def test_export_can_start_at_a_checkpoint_anchor():
    items = build()
    anchored = items[3:]  # checkpoint at seq 3, then events 4..6
    assert verify_records(records(anchored), KEYS).ok
    assert kinds(items[4:])[0][2] == "no_anchor"


@pytest.mark.parametrize("unknown", [{}])
def test_missing_key_means_unsigned(unknown):
    assert "unknown_key" in {f.kind for f in verify_records(records(build()), unknown).findings}
