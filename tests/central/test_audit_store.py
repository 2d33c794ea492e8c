"""The audit store keeps each event once, checks every chain, and behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.audit.filter import EventFilter
from central.audit.store import AuditStore
from central.database import StoreError
from core.audit import chain
from testbed.chain_writer import ChainWriter

NOW = datetime.now(UTC)


@pytest.fixture
def any_store(database_url: str) -> Iterator[AuditStore]:
    store = AuditStore(database_url)
    yield store
    store.close()


def test_insert_is_idempotent_by_device_and_seq(any_store: AuditStore) -> None:
    w = ChainWriter("desk-a")
    event = w.event(reason="identity doubt")
    assert any_store.add_batch([event], [], NOW).stored == 1
    again = any_store.add_batch([event], [], NOW)
    assert (again.stored, again.duplicates) == (0, 1)
    assert any_store.count() == 1
    [row] = any_store.query()
    assert row["event_id"] == event.event_id and row["details"] == {"reason": "identity doubt"}


def test_a_different_event_at_a_stored_position_is_a_conflict_and_never_overwrites(any_store) -> None:
    w = ChainWriter("desk-a")
    first = w.event(actor="pc1")
    forged = chain.seal(replace(first, actor="pc-forger", event_id="00000000-0000-4000-8000-000000000000"),
                        first.prev_hash)
    any_store.add_batch([first], [], NOW)
    assert any_store.add_batch([forged], [], NOW).conflicts == 1
    assert any_store.query()[0]["actor"] == "pc1"
    assert [f["kind"] for f in any_store.findings()] == ["conflict"]


def test_one_batch_with_a_repeat_and_a_rival_for_one_position_keeps_the_first(any_store) -> None:
    """Events go in with one statement per desk: copies inside that one batch are told apart like later ones."""
    w = ChainWriter("desk-a")
    first, second = w.event(actor="pc1"), w.event()
    rival = chain.seal(replace(first, actor="pc-forger", event_id="00000000-0000-4000-8000-000000000001"),
                       first.prev_hash)
    outcome = any_store.add_batch([second, first, first, rival], [], NOW)
    assert (outcome.stored, outcome.duplicates, outcome.conflicts) == (2, 1, 1)
    assert any_store.count() == 2
    assert {r["actor"] for r in any_store.query()} == {"pc1"}
    assert [f["kind"] for f in any_store.findings()] == ["conflict"]
    head = any_store.head("desk-a")
    assert (head.contiguous_seq, head.head_hash, head.duplicates) == (2, second.hash, 1)


def test_head_advances_only_without_gaps_and_checks_links_and_checkpoints(any_store) -> None:
    w = ChainWriter("desk-a")
    events = [w.event() for _ in range(6)]
    cp = w.checkpoint()
    any_store.add_batch(events[3:], [cp], NOW)  # arrives first: 4..6 and the checkpoint
    head = any_store.head("desk-a")
    assert (head.contiguous_seq, head.max_seq, head.checkpoint_seq) == (0, 6, 0)
    assert any_store.gaps("desk-a") == [(1, 3)]
    any_store.add_batch(events[:3], [], NOW)
    head = any_store.head("desk-a")
    assert (head.contiguous_seq, head.checkpoint_seq, head.checkpoint_stored, head.reordered) == (6, 6, 6, 3)
    assert any_store.findings() == [] and any_store.gaps("desk-a") == []


def test_bad_links_edits_and_checkpoint_mismatches_are_recorded_with_their_position(any_store) -> None:
    w = ChainWriter("desk-b")
    events = [w.event() for _ in range(4)]
    cp = w.checkpoint()
    events[1] = replace(events[1], actor="altered")  # content no longer matches its hash
    events[2] = chain.seal(replace(events[2], actor="rehashed"), events[2].prev_hash)  # breaks seq 4's link
    any_store.add_batch(events, [cp], NOW)
    found = {(f["seq"], f["kind"]) for f in any_store.findings()}
    assert found == {(2, "edited"), (4, "bad_link")}
    w2 = ChainWriter("desk-c")
    evs = [w2.event() for _ in range(2)]
    bad_cp = replace(w2.checkpoint(), head="0" * 64)
    any_store.add_batch(evs, [bad_cp], NOW)
    assert (2, "checkpoint_mismatch") in {(f["seq"], f["kind"]) for f in any_store.findings(device_id="desk-c")}


def test_filters_by_device_actor_type_outcome_and_time(any_store) -> None:
    a, b = ChainWriter("desk-a"), ChainWriter("desk-b")
    batch = [
        replace_time(a.event(actor="pc1"), "2030-01-01T10:00:00+00:00"),
        replace_time(a.event(actor="pc2", type="login", outcome="ok"), "2030-01-01T11:00:00+00:00"),
        replace_time(b.event(actor="pc1", outcome="no_candidates"), "2030-01-01T13:00:00+02:00"),  # 11:00 UTC
    ]
    any_store.add_batch(batch, [], NOW)
    assert any_store.count(EventFilter(actor="pc1")) == 2
    assert [r["type"] for r in any_store.query(EventFilter(device_id="desk-a", type="login"))] == ["login"]
    assert any_store.count(EventFilter(outcome="no_candidates")) == 1
    assert any_store.count(EventFilter(since="2030-01-01T10:30:00", until="2030-01-01T12:00:00")) == 2
    assert [r["occurred_at"][:13] for r in any_store.query()] == ["2030-01-01T13", "2030-01-01T11",
                                                                   "2030-01-01T10"]
    assert any_store.devices() == ["desk-a", "desk-b"]


def replace_time(event, occurred_at: str):
    return chain.seal(replace(event, occurred_at=occurred_at), event.prev_hash)


def test_rejections_are_recorded_newest_first(any_store) -> None:
    any_store.record_rejection("rfr/v1/devices/desk-a/audit", "Payload is not valid JSON", 12)
    any_store.record_rejection("rfr/v1/devices/desk-b/audit", "x" * 5000, 20000)
    assert any_store.rejection_count() == 2
    newest, oldest = any_store.rejections(limit=10)
    assert newest["size"] == 20000 and len(newest["reason"]) <= 500
    assert oldest["reason"] == "Payload is not valid JSON"


def test_naive_received_time_is_refused(any_store) -> None:
    with pytest.raises(ValueError):
        any_store.add_batch([ChainWriter("desk-a").event()], [], datetime.now())


def test_a_bare_path_and_an_sqlite_url_open_the_same_file(tmp_path: Path) -> None:
    event = ChainWriter("desk-a").event()
    first = AuditStore(tmp_path / "c.db")
    first.add_batch([event], [], NOW)
    first.close()
    second = AuditStore(f"sqlite:///{tmp_path / 'c.db'}")
    assert second.add_batch([event], [], NOW).duplicates == 1
    second.close()


def test_an_unsupported_url_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Unsupported audit store URL 'mysql://x/central'"):
        AuditStore("mysql://x/central")


def test_concurrent_writers_on_separate_connections_never_double_insert(database_url: str) -> None:
    """Four workers, each with its own connection, all offered every event of two devices."""
    writers = [ChainWriter("desk-a"), ChainWriter("desk-b")]
    events = [w.event() for _ in range(150) for w in writers]
    stores = [AuditStore(database_url) for _ in range(4)]
    errors: list[BaseException] = []

    def work(store: AuditStore, offset: int) -> None:
        try:
            for i in range(0, len(events), 10):
                chunk = events[(i + offset * 10) % len(events):][:10]
                store.add_batch(chunk, [], datetime.now(UTC))
            for i in range(0, len(events), 25):
                store.add_batch(events[i:i + 25], [], datetime.now(UTC))
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].count() == 300
    assert {h.contiguous_seq for h in stores[0].heads()} == {150}
    assert stores[0].findings() == []
    for s in stores:
        s.close()
