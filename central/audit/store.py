"""Central's audit events: stored once each, every chain checked, findings and refused messages kept.

Ingest is at-least-once (device resends plus broker redelivery), so storage is
idempotent by (device, seq): a repeat is counted, never stored twice, and a
*different* event at a stored position is a conflict that is recorded as a
finding, never allowed to overwrite what was stored first.

Each device has a head row: how far its chain is stored with no gap
(``contiguous_seq``) and the hash there. Every batch takes that row's lock
(``FOR UPDATE`` in PostgreSQL, ``BEGIN IMMEDIATE`` in SQLite), so several
ingest workers can share the topics without double inserts or lost updates.
When the gap closes, the head walks forward checking that each event links to
the one before; checkpoints are matched against the chain once it reaches
them. What fails is written to ``audit_findings`` with its position.

Rejected messages are recorded in ``audit_rejections`` with topic, reason and
size (never content, which may be hostile).

The store lives in central's one database (``central.database``), SQLite or
PostgreSQL; which devices may send, and their keys, is the fleet registry's
(``central.fleet.registry_store``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.audit.filter import EventFilter, utc_sort_key
from central.database import Dialect, SqlStore, StoreError, iso
from core.audit import chain
from core.audit.checkpoint import Checkpoint
from core.events import AuditEvent

_MAX_REASON = 500
_MAX_TOPIC = 300
_WALK_CHUNK = 2000
_INSERT_CHUNK = 1000  # rows per INSERT: 12 parameters each, within SQLite's and PostgreSQL's limits
_EXPORT_CHUNK = 2000


@dataclass
class BatchOutcome:
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    checkpoints: int = 0
    devices: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DeviceHead:
    device_id: str
    contiguous_seq: int
    head_hash: str  # the hash of event ``contiguous_seq`` (the genesis hash before any): what the ack binds
    max_seq: int
    checkpoint_seq: int  # newest checkpoint verified against the chain
    checkpoint_stored: int  # newest checkpoint stored (what the ack reports)
    reordered: int
    duplicates: int


def _schema(dialect: Dialect) -> list[str]:
    id_column, big = dialect.id_column, dialect.big_int
    return [
        f"""CREATE TABLE IF NOT EXISTS audit_events (
            id {id_column},
            device_id TEXT NOT NULL,
            seq {big} NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            occurred_at TEXT NOT NULL,
            occurred_utc TEXT NOT NULL,
            type TEXT NOT NULL,
            actor TEXT NOT NULL,
            outcome TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT,
            hash TEXT,
            received_at TEXT NOT NULL,
            UNIQUE (device_id, seq))""",
        "CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (occurred_utc)",
        "CREATE INDEX IF NOT EXISTS audit_events_by_device_time ON audit_events (device_id, occurred_utc)",
        "CREATE INDEX IF NOT EXISTS audit_events_by_actor_time ON audit_events (actor, occurred_utc)",
        f"""CREATE TABLE IF NOT EXISTS audit_checkpoints (
            device_id TEXT NOT NULL,
            seq {big} NOT NULL,
            head TEXT NOT NULL,
            signed_at TEXT NOT NULL,
            signature TEXT NOT NULL,
            status TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (device_id, seq))""",
        f"""CREATE TABLE IF NOT EXISTS audit_heads (
            device_id TEXT PRIMARY KEY,
            contiguous_seq {big} NOT NULL,
            head_hash TEXT NOT NULL,
            max_seq {big} NOT NULL,
            checkpoint_seq {big} NOT NULL,
            checkpoint_stored {big} NOT NULL,
            reordered {big} NOT NULL,
            duplicates {big} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS audit_findings (
            id {id_column},
            device_id TEXT NOT NULL,
            seq {big},
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            found_at TEXT NOT NULL,
            UNIQUE (device_id, seq, kind))""",
        f"""CREATE TABLE IF NOT EXISTS audit_rejections (
            id {id_column},
            received_at TEXT NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            size {big} NOT NULL)""",
    ]


_EVENT_COLUMNS = ("event_id, device_id, seq, occurred_at, type, actor, outcome, details, prev_hash, hash,"
                  " received_at")


def row_to_event(row: dict[str, Any]) -> AuditEvent:
    """Rebuild the event exactly as the device sent it, so its digest can be recomputed."""
    return AuditEvent(device_id=row["device_id"], seq=int(row["seq"]), type=row["type"], actor=row["actor"],
                      outcome=row["outcome"], details=json.loads(row["details"]), event_id=row["event_id"],
                      occurred_at=row["occurred_at"], prev_hash=row["prev_hash"], hash=row["hash"])


class AuditStore(SqlStore):
    """Audit events, checkpoints, chain heads, findings and rejections, in SQLite (a path or ``sqlite:///path``)
    or PostgreSQL (``postgresql://``); one connection per store object (one per ingest worker)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772001, error=StoreError, what="audit store")

    def record_finding(self, device_id: str, seq: int | None, kind: str, message: str,
                       when: datetime | None = None) -> None:
        """A finding outside a batch (a revoked device still sending), shown on /audit."""
        with self._lock:
            self._finding(device_id, seq, kind, message, iso(when or datetime.now(UTC)))

    # --- ingest ---

    def add_batch(self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint],
                  received_at: datetime) -> BatchOutcome:
        """Store a batch in one transaction, device by device in a fixed order (no deadlocks)."""
        outcome = BatchOutcome()
        by_device: dict[str, tuple[list[AuditEvent], list[Checkpoint]]] = {}
        for e in events:
            by_device.setdefault(e.device_id, ([], []))[0].append(e)
        for c in checkpoints:
            by_device.setdefault(c.device_id, ([], []))[1].append(c)
        if not by_device:
            return outcome
        when = iso(received_at)
        with self._write_transaction():
            for device in sorted(by_device):
                evs, cps = by_device[device]
                self._add_for_device(device, sorted(evs, key=lambda e: e.seq),
                                     sorted(cps, key=lambda c: c.seq), when, outcome)
        outcome.devices = set(by_device)
        return outcome

    def _finding(self, device: str, seq: int | None, kind: str, message: str, when: str) -> None:
        self._execute(
            "INSERT INTO audit_findings (device_id, seq, kind, message, found_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING", (device, seq, kind, message[:_MAX_REASON], when))

    def _add_for_device(self, device: str, events: list[AuditEvent], checkpoints: list[Checkpoint],
                        when: str, outcome: BatchOutcome) -> None:
        self._execute(
            "INSERT INTO audit_heads (device_id, contiguous_seq, head_hash, max_seq, checkpoint_seq,"
            " checkpoint_stored, reordered, duplicates) VALUES (?, 0, ?, 0, 0, 0, 0, 0) ON CONFLICT DO NOTHING",
            (device, chain.genesis_hash(device)))
        row = self._execute("SELECT contiguous_seq, head_hash, max_seq, checkpoint_seq, checkpoint_stored, reordered,"
                            " duplicates FROM audit_heads WHERE device_id = ?" + self.dialect.for_update,
                            (device,)).fetchone()
        contiguous, head_hash, max_seq, cp_seq, cp_stored, reordered, duplicates = (
            int(row[0]), row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6]))
        walk = False
        fresh = self._insert_events(device, events, when)
        lookup = [e for e in events if e.seq not in fresh]
        existing = {int(r["seq"]): r for r in self._existing(device, sorted({e.seq for e in lookup}))}
        for e in events:
            if e.sealed and chain.expected_hash(e) != e.hash:
                self._finding(device, e.seq, "edited",
                              "the event's content does not match its hash: it was altered", when)
            if e.seq in fresh:
                fresh.discard(e.seq)  # a second copy of it in this batch is a repeat
                outcome.stored += 1
                if e.seq < max_seq:
                    reordered += 1
                max_seq = max(max_seq, e.seq)
                walk = walk or e.seq == contiguous + 1
                existing[e.seq] = {"event_id": e.event_id, "hash": e.hash}
                continue
            row = existing.get(e.seq)
            if row is not None and row["event_id"] == e.event_id and row["hash"] == e.hash:
                outcome.duplicates += 1
                duplicates += 1
            else:
                outcome.conflicts += 1
                what = (f"a different event (id {e.event_id}) arrived for this position; the first one is kept"
                        if row is not None else f"event id {e.event_id} is already stored at another position")
                self._finding(device, e.seq, "conflict", what, when)
        if walk:
            contiguous, head_hash = self._walk(device, contiguous, head_hash, when)
        for c in checkpoints:
            cur = self._execute(
                "INSERT INTO audit_checkpoints (device_id, seq, head, signed_at, signature, status, received_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                (device, c.seq, c.head, c.signed_at, c.signature, when))
            if cur.rowcount == 1:
                outcome.checkpoints += 1
                cp_stored = max(cp_stored, c.seq)
            else:
                head = self._scalar("SELECT head FROM audit_checkpoints WHERE device_id = ? AND seq = ?",
                                    (device, c.seq))
                if head != c.head:
                    self._finding(device, c.seq, "checkpoint_conflict",
                                  "a second, different signed checkpoint arrived for this position", when)
                else:
                    outcome.duplicates += 1
        cp_seq = max(cp_seq, self._settle_checkpoints(device, contiguous, when))
        self._execute(
            "UPDATE audit_heads SET contiguous_seq = ?, head_hash = ?, max_seq = ?, checkpoint_seq = ?,"
            " checkpoint_stored = ?, reordered = ?, duplicates = ? WHERE device_id = ?",
            (contiguous, head_hash, max_seq, cp_seq, cp_stored, reordered, duplicates, device))

    def _insert_events(self, device: str, events: list[AuditEvent], when: str) -> set[int]:
        """Insert a device's events, many rows per statement; the seqs actually inserted (not already there).

        Few statements, not one per event: the desk's head row is locked meanwhile, and another worker
        holding events of the same desk waits for it (``central.ingest.processes``)."""
        inserted: set[int] = set()
        for start in range(0, len(events), _INSERT_CHUNK):
            chunk = events[start:start + _INSERT_CHUNK]
            args: list[object] = []
            for e in chunk:
                args += [e.event_id, device, e.seq, e.occurred_at, e.type, e.actor, e.outcome,
                         chain.canonical_json(e.details).decode(), e.prev_hash, e.hash, when,
                         utc_sort_key(e.occurred_at)]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            inserted |= {int(r[0]) for r in self._execute(
                f"INSERT INTO audit_events ({_EVENT_COLUMNS}, occurred_utc) VALUES {values}"
                " ON CONFLICT DO NOTHING RETURNING seq", args).fetchall()}
        return inserted

    def _existing(self, device: str, seqs: list[int]) -> list[dict[str, Any]]:
        """The stored event id and hash at each of ``seqs`` (to tell a repeat from a conflict)."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(seqs), _INSERT_CHUNK):
            chunk = seqs[start:start + _INSERT_CHUNK]
            rows += self._rows(f"SELECT seq, event_id, hash FROM audit_events WHERE device_id = ? AND seq IN"
                               f" ({', '.join('?' * len(chunk))})", (device, *chunk))
        return rows

    def _walk(self, device: str, contiguous: int, head_hash: str, when: str) -> tuple[int, str]:
        """Advance the gap-free head as far as stored events reach, checking each link."""
        while True:
            rows = self._execute(
                "SELECT seq, prev_hash, hash FROM audit_events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device, contiguous, _WALK_CHUNK)).fetchall()
            for seq, prev_hash, hash_ in rows:
                if int(seq) != contiguous + 1:
                    return contiguous, head_hash
                if prev_hash != head_hash:
                    self._finding(device, int(seq), "bad_link",
                                  f"prev_hash does not match the hash of seq {contiguous}: an event was altered, "
                                  "removed or inserted just before this one", when)
                contiguous, head_hash = int(seq), hash_ or ""
            if len(rows) < _WALK_CHUNK:
                return contiguous, head_hash

    def _settle_checkpoints(self, device: str, contiguous: int, when: str) -> int:
        """Match pending checkpoints the gap-free chain has reached; the newest good one's seq."""
        rows = self._execute(
            "SELECT c.seq, c.head, e.hash FROM audit_checkpoints c LEFT JOIN audit_events e"
            " ON e.device_id = c.device_id AND e.seq = c.seq"
            " WHERE c.device_id = ? AND c.status = 'pending' AND c.seq <= ? ORDER BY c.seq",
            (device, contiguous)).fetchall()
        best = 0
        for seq, head, hash_ in rows:
            ok = head == hash_
            self._execute("UPDATE audit_checkpoints SET status = ? WHERE device_id = ? AND seq = ?",
                          ("ok" if ok else "mismatch", device, seq))
            if ok:
                best = max(best, int(seq))
            else:
                self._finding(device, int(seq), "checkpoint_mismatch",
                              "the device's signed head does not match the stored chain here: an event at or "
                              "before this position differs from what the device signed", when)
        return best

    def head(self, device_id: str) -> DeviceHead | None:
        with self._lock:
            rows = self._rows("SELECT * FROM audit_heads WHERE device_id = ?", (device_id,))
        return self._to_head(rows[0]) if rows else None

    @staticmethod
    def _to_head(r: dict[str, Any]) -> DeviceHead:
        return DeviceHead(device_id=r["device_id"], contiguous_seq=int(r["contiguous_seq"]),
                          head_hash=str(r["head_hash"]), max_seq=int(r["max_seq"]),
                          checkpoint_seq=int(r["checkpoint_seq"]), checkpoint_stored=int(r["checkpoint_stored"]),
                          reordered=int(r["reordered"]), duplicates=int(r["duplicates"]))

    def heads(self) -> list[DeviceHead]:
        with self._lock:
            return [self._to_head(r) for r in self._rows("SELECT * FROM audit_heads ORDER BY device_id")]

    def insert(self, event: AuditEvent, received_at: datetime) -> bool:
        """Store one event; False when it (or a conflicting one) is already at its position."""
        return self.add_batch([event], [], received_at).stored == 1

    # --- rejections and findings ---

    def record_rejection(self, topic: str, reason: str, size: int, received_at: datetime | None = None) -> None:
        """Note a refused message: where it came from, why, and how big it was."""
        with self._lock:
            self._execute("INSERT INTO audit_rejections (received_at, topic, reason, size) VALUES (?, ?, ?, ?)",
                          (iso(received_at or datetime.now(UTC)), topic[:_MAX_TOPIC], reason[:_MAX_REASON], size))

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return self._rows("SELECT received_at, topic, reason, size FROM audit_rejections ORDER BY id DESC"
                              " LIMIT ?", (limit,))

    def rejection_count(self) -> int:
        with self._lock:
            return int(self._scalar("SELECT COUNT(*) FROM audit_rejections"))

    def findings(self, limit: int = 100, device_id: str | None = None) -> list[dict[str, Any]]:
        where, args = (" WHERE device_id = ?", [device_id]) if device_id else ("", [])
        with self._lock:
            return self._rows(f"SELECT device_id, seq, kind, message, found_at FROM audit_findings{where}"
                              " ORDER BY id DESC LIMIT ?", (*args, limit))

    def gaps(self, device_id: str, limit: int = 20) -> list[tuple[int, int]]:
        """Missing seq ranges after the gap-free head (first, last), up to the highest stored."""
        head = self.head(device_id)
        if head is None or head.max_seq <= head.contiguous_seq:
            return []
        with self._lock:
            seqs = [int(r[0]) for r in self._execute(
                "SELECT seq FROM audit_events WHERE device_id = ? AND seq > ? ORDER BY seq",
                (device_id, head.contiguous_seq)).fetchall()]
        out: list[tuple[int, int]] = []
        expect = head.contiguous_seq + 1
        for seq in seqs:
            if seq > expect:
                out.append((expect, seq - 1))
                if len(out) >= limit:
                    break
            expect = seq + 1
        return out

    # --- reading ---

    def count(self, flt: EventFilter | None = None) -> int:
        where, args = (flt or EventFilter()).where(self.dialect.postgres)
        with self._lock:
            return int(self._scalar(f"SELECT COUNT(*) FROM audit_events{where}", args))

    def query(self, flt: EventFilter | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Matching events, newest first (by when they happened)."""
        where, args = (flt or EventFilter()).where(self.dialect.postgres)
        with self._lock:
            rows = self._rows(f"SELECT {_EVENT_COLUMNS} FROM audit_events{where}"
                              " ORDER BY occurred_utc DESC, id DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        for row in rows:
            row["details"] = json.loads(row["details"])
        return rows

    def type_counts(self, flt: EventFilter | None = None) -> dict[str, int]:
        """How many matching events of each type (which spreadsheet files an export has)."""
        where, args = (flt or EventFilter()).where(self.dialect.postgres)
        with self._lock:
            return {str(r[0]): int(r[1]) for r in self._execute(
                f"SELECT type, COUNT(*) FROM audit_events{where} GROUP BY type ORDER BY type", args).fetchall()}

    def query_oldest_first(self, flt: EventFilter, limit: int = 5000) -> list[dict[str, Any]]:
        """Matching events in the order they happened (a case's timeline reads forwards)."""
        where, args = flt.where(self.dialect.postgres)
        with self._lock:
            rows = self._rows(f"SELECT {_EVENT_COLUMNS} FROM audit_events{where}"
                              " ORDER BY occurred_utc, device_id, seq LIMIT ?", (*args, limit))
        for row in rows:
            row["details"] = json.loads(row["details"])
        return rows

    def recent(self, limit: int = 100, device_id: str | None = None) -> list[dict[str, Any]]:
        return self.query(EventFilter(device_id=device_id), limit=limit)

    def devices(self) -> list[str]:
        """Every device that has sent at least one stored event, for filters."""
        with self._lock:
            return [r[0] for r in self._execute(
                "SELECT device_id FROM audit_heads WHERE max_seq > 0 ORDER BY device_id").fetchall()]

    def distinct(self, column: str) -> list[str]:
        """Values seen in ``column`` (type or outcome), for filter menus."""
        if column not in ("type", "outcome"):
            raise ValueError(column)
        with self._lock:
            return [r[0] for r in self._execute(
                f"SELECT DISTINCT {column} FROM audit_events ORDER BY {column}").fetchall()]

    def export_records(self, flt: EventFilter, keys: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """The selected events plus what proves them: keys (``keys``, the registry's device keys in hex),
        anchors, links for left-out events, checkpoints.

        Per device the run starts at genesis or just after the newest good checkpoint before the
        first selected event, and ends at the first good checkpoint at or after the last one, so
        every selected event is covered by a signature; left-out events appear only as digests.
        """
        where, args = flt.where(self.dialect.postgres)
        with self._lock:
            per_device = self._rows(
                f"SELECT device_id, MIN(seq) AS lo, MAX(seq) AS hi FROM audit_events{where}"
                " GROUP BY device_id ORDER BY device_id", args)
        for d in per_device:
            device, lo, hi = d["device_id"], int(d["lo"]), int(d["hi"])
            yield {"kind": "device", "device_id": device, "public_key": keys.get(device)}
            with self._lock:
                anchor = self._scalar("SELECT MAX(seq) FROM audit_checkpoints WHERE device_id = ? AND seq < ?"
                                      " AND status = 'ok'", (device, lo))
                end = self._scalar("SELECT MIN(seq) FROM audit_checkpoints WHERE device_id = ? AND seq >= ?"
                                   " AND status = 'ok'", (device, hi))
                dev_where, dev_args = EventFilter(**{**flt.__dict__, "device_id": device}).where(self.dialect.postgres)
                selected = {int(r[0]) for r in self._execute(
                    f"SELECT seq FROM audit_events{dev_where}", dev_args).fetchall()}
                cps = self._rows("SELECT device_id, seq, head, signed_at, signature FROM audit_checkpoints"
                                 " WHERE device_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
                                 (device, int(anchor or 0), int(end or hi)))
            start = int(anchor) + 1 if anchor else 1
            stop = int(end) if end else hi
            by_seq = {int(c["seq"]): c for c in cps}
            if anchor:
                yield {"kind": "checkpoint", **Checkpoint(**{**by_seq.pop(int(anchor))}).to_dict()}
            seq = start
            while seq <= stop:
                with self._lock:
                    rows = self._rows(f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE device_id = ? AND seq >= ?"
                                      " AND seq <= ? ORDER BY seq LIMIT ?", (device, seq, stop, _EXPORT_CHUNK))
                if not rows:
                    break
                for row in rows:
                    event = row_to_event(row)
                    if event.seq in selected:
                        yield {"kind": "event", **event.to_dict()}
                    else:
                        yield {"kind": "link", "device_id": device, "seq": event.seq,
                               "digest": chain.event_digest(event)}
                    cp = by_seq.pop(event.seq, None)
                    if cp:
                        yield {"kind": "checkpoint", **Checkpoint(**cp).to_dict()}
                seq = int(rows[-1]["seq"]) + 1
