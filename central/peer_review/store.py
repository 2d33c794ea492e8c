"""Peer review requests, decisions and who did what, in central's one database (``central.database``).

The database is the queue between the reviewers' page and the MQTT worker:
the page records a decision (once: a decided request cannot be decided again),
and the worker finds decided outcomes not yet sent and sends them, so the page
and the ingest may run in different processes. A device repeats a request
until its outcome arrives; a repeat of a decided request marks the outcome
for sending again, which covers an outcome the broker lost.

``peer_review_log`` is central's own record of each step (request received,
probe held, every view of the images, decided by whom with what, probe
destroyed and how, outcome sent); like the audit store it holds no biometric
data, only references. The probe itself is never in the database: it waits in
the probe vault (``central.peer_review.probe_vault``) and the row says only
whether one is held (``probe_state``: NULL none sent, ``held``, ``destroyed``),
with the date taken and quality the desk stated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, added_columns
from core import peer_review as wire
from core.errors import CustodyRfrError, WireFormatError
from core.morphology import Morphology
from core.topics import peer_review_outcome_topic

_COLUMNS = ("request_id, device_id, case_id, custody_ref, requested_by, requested_at, library_version, doubts,"
            " ranks, candidates, received_at, repeats, status, reviewer, outcome, decisions, notes, decided_at,"
            " sent_at, sends, probe_state, probe_received_at, probe_destroyed_at, probe_taken_on, probe_quality,"
            " morphology")
#: Columns added since the table was first made (a database made before them gains them when opened).
_PROBE_COLUMNS = (("probe_state", "TEXT"), ("probe_received_at", "TEXT"), ("probe_destroyed_at", "TEXT"),
                  ("probe_taken_on", "TEXT"), ("probe_quality", "TEXT"),
                  # The officer's feature-by-feature comparisons (``core.morphology``), in words; they describe
                  # the detainee's face, so they are kept only until the review is answered or the probe goes.
                  ("morphology", "TEXT"))


class PeerReviewError(CustodyRfrError):
    """A decision cannot be recorded (unknown or already decided request, invalid decision)."""


def _schema(dialect: Dialect) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS peer_review_requests (
            request_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            custody_ref TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            library_version TEXT,
            doubts TEXT NOT NULL,
            ranks TEXT NOT NULL,
            candidates TEXT NOT NULL,
            received_at TEXT NOT NULL,
            repeats INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',
            reviewer TEXT,
            outcome TEXT,
            decisions TEXT,
            notes TEXT,
            decided_at TEXT,
            payload TEXT,
            sent_at TEXT,
            sends INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS peer_review_requests_by_status ON peer_review_requests (status, received_at)",
        *added_columns(dialect, "peer_review_requests", _PROBE_COLUMNS),
        f"""CREATE TABLE IF NOT EXISTS peer_review_log (
            id {dialect.id_column},
            at TEXT NOT NULL,
            request_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL)""",
    ]


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PeerReviewRecord:
    """One request as the reviewers see it, with its decision once made."""

    request_id: str
    device_id: str
    case_id: str
    custody_ref: str
    requested_by: str
    requested_at: str
    library_version: str | None
    doubts: str
    ranks: list[int]
    candidates: list[dict[str, Any]]
    received_at: str
    repeats: int
    status: str
    reviewer: str | None
    outcome: str | None
    decisions: dict[int, str] | None
    notes: str | None
    decided_at: str | None
    sent_at: str | None
    sends: int
    probe_state: str | None = None
    probe_received_at: str | None = None
    probe_destroyed_at: str | None = None
    probe_taken_on: str | None = None
    probe_quality: str | None = None
    #: The officer's feature comparison per candidate rank, while the review is open.
    morphology: dict[int, Morphology] | None = None

    @property
    def in_question(self) -> list[dict[str, Any]]:
        """The candidates the reviewer must decide."""
        return [c for c in self.candidates if c["rank"] in self.ranks]

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> PeerReviewRecord:
        decisions = {int(k): v for k, v in json.loads(r["decisions"]).items()} if r["decisions"] else None
        morphology = None
        if r.get("morphology"):
            compared = [wire.CandidateMorphology.from_dict(m) for m in json.loads(r["morphology"])]
            morphology = {m.rank: m.findings for m in compared}
        return cls(**{**r, "ranks": json.loads(r["ranks"]), "candidates": json.loads(r["candidates"]),
                      "decisions": decisions, "repeats": int(r["repeats"]), "sends": int(r["sends"]),
                      "morphology": morphology})


class PeerReviewStore(SqlStore):
    """Requests and decisions in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772002, error=PeerReviewError, what="peer review store")
        self._add_missing_columns("peer_review_requests", _PROBE_COLUMNS)

    def _log(self, request_id: str, device_id: str, action: str, actor: str, detail: str = "") -> None:
        self._execute("INSERT INTO peer_review_log (at, request_id, device_id, action, actor, detail)"
                      " VALUES (?, ?, ?, ?, ?, ?)", (_iso(), request_id, device_id, action, actor, detail[:1000]))

    # --- requests from the desks ---

    def add_request(self, request: wire.PeerReviewRequest, received_at: datetime | None = None, *,
                    probe_held: bool = False) -> str:
        """Store a request once: "new", "repeat" (resent by the device) or "conflict" (same id, other case).

        ``probe_held``: the request's probe was put in the vault for it (the request's ``probe`` field itself is
        never stored here)."""
        sealed = request.probe
        with self._lock:
            cur = self._execute(
                "INSERT INTO peer_review_requests (request_id, device_id, case_id, custody_ref, requested_by,"
                " requested_at, library_version, doubts, ranks, candidates, received_at, probe_state,"
                " probe_received_at, probe_taken_on, probe_quality, morphology)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (request.request_id, request.device_id, request.case_id, request.custody_ref,
                 request.requested_by, request.requested_at, request.library_version, request.doubts,
                 json.dumps(list(request.ranks)), json.dumps([c.to_dict() for c in request.candidates]),
                 _iso(received_at), "held" if probe_held else None, _iso(received_at) if probe_held else None,
                 sealed.taken_on if sealed and probe_held else None,
                 sealed.quality if sealed and probe_held else None,
                 json.dumps([m.to_dict() for m in request.morphology]) if request.morphology else None))
            if cur.rowcount == 1:
                self._log(request.request_id, request.device_id, "requested", request.requested_by,
                          f"case {request.case_id}, custody ref {request.custody_ref}, "
                          f"candidates in question {list(request.ranks)}")
                if probe_held:
                    self._log(request.request_id, request.device_id, "probe_held", "central",
                              "the probe's face thumbnail arrived sealed to central's review key and is held "
                              "encrypted outside the database until the review is answered or the case closes")
                return "new"
            existing = self.get(request.request_id)
            if existing is None or (existing.device_id, existing.case_id) != (request.device_id, request.case_id):
                self._log(request.request_id, request.device_id, "request_conflict", request.device_id,
                          "a different request arrived with a stored request id; the first is kept")
                return "conflict"
            # A repeat of a decided request means the device has not got the outcome: send it again.
            self._execute("UPDATE peer_review_requests SET repeats = repeats + 1, sent_at = CASE WHEN status ="
                          " 'decided' THEN NULL ELSE sent_at END WHERE request_id = ?", (request.request_id,))
            return "repeat"

    def get(self, request_id: str) -> PeerReviewRecord | None:
        with self._lock:
            rows = self._rows(f"SELECT {_COLUMNS} FROM peer_review_requests WHERE request_id = ?", (request_id,))
        return PeerReviewRecord.from_row(rows[0]) if rows else None

    def pending(self, limit: int = 200) -> list[PeerReviewRecord]:
        """Requests waiting for a reviewer, oldest first."""
        with self._lock:
            rows = self._rows(f"SELECT {_COLUMNS} FROM peer_review_requests WHERE status = 'pending'"
                              " ORDER BY received_at LIMIT ?", (limit,))
        return [PeerReviewRecord.from_row(r) for r in rows]

    def decided(self, limit: int = 50) -> list[PeerReviewRecord]:
        """Recently decided requests, newest first."""
        with self._lock:
            rows = self._rows(f"SELECT {_COLUMNS} FROM peer_review_requests WHERE status = 'decided'"
                              " ORDER BY decided_at DESC LIMIT ?", (limit,))
        return [PeerReviewRecord.from_row(r) for r in rows]

    # --- the reviewer's decision ---

    def record_outcome(self, request_id: str, reviewer: str, decisions: dict[int, str],
                       notes: str) -> wire.PeerReviewOutcome:
        """Record the decision (once) and queue the outcome for its device."""
        record = self.get(request_id)
        if record is None:
            raise PeerReviewError(f"There is no peer review request {request_id}.")
        if record.status != "pending":
            raise PeerReviewError(f"This request was already decided by {record.reviewer}.")
        if set(decisions) != set(record.ranks):
            raise PeerReviewError("Decide each candidate in question: viable or not viable.")
        try:
            outcome = wire.PeerReviewOutcome(device_id=record.device_id, request_id=request_id,
                                             reviewer=reviewer.strip(), decisions=decisions, notes=notes.strip())
            payload = outcome.to_bytes()
        except WireFormatError as e:
            raise PeerReviewError(str(e)) from e
        with self._lock:
            cur = self._execute(
                "UPDATE peer_review_requests SET status = 'decided', reviewer = ?, outcome = ?, decisions = ?,"
                " notes = ?, decided_at = ?, payload = ?, morphology = NULL"
                " WHERE request_id = ? AND status = 'pending'",
                (outcome.reviewer, outcome.outcome, json.dumps(outcome.to_dict()["decisions"]), outcome.notes,
                 outcome.decided_at, payload.decode(), request_id))
            if cur.rowcount != 1:
                raise PeerReviewError("This request was decided by someone else a moment ago.")
            self._log(request_id, record.device_id, "decided", outcome.reviewer,
                      f"{outcome.outcome}; decisions {outcome.to_dict()['decisions']}")
        return outcome

    # --- outcomes to send (the MQTT worker) ---

    def claim_due(self) -> list[tuple[str, str, bytes]]:
        """Decided outcomes not yet sent, each claimed for this sender: (request_id, topic, payload)."""
        out = []
        with self._lock:
            rows = self._rows("SELECT request_id, device_id, payload FROM peer_review_requests"
                              " WHERE status = 'decided' AND sent_at IS NULL ORDER BY decided_at LIMIT 100")
            for r in rows:
                cur = self._execute("UPDATE peer_review_requests SET sent_at = ?, sends = sends + 1"
                                    " WHERE request_id = ? AND sent_at IS NULL", (_iso(), r["request_id"]))
                if cur.rowcount == 1:  # another worker did not get there first
                    out.append((r["request_id"], peer_review_outcome_topic(r["device_id"]), r["payload"].encode()))
        return out

    def sent(self, request_id: str, ok: bool) -> None:
        """After a send: logged, or (if the client refused it) released to be sent again."""
        with self._lock:
            if not ok:
                self._execute("UPDATE peer_review_requests SET sent_at = NULL WHERE request_id = ?", (request_id,))
                return
            record = self.get(request_id)
            if record is not None:
                self._log(request_id, record.device_id, "outcome_sent", "central",
                          f"send {record.sends} to {peer_review_outcome_topic(record.device_id)}")

    # --- the probe ---

    def held_probes(self) -> list[PeerReviewRecord]:
        """Requests whose probe is still held, oldest first (for the sweep)."""
        with self._lock:
            rows = self._rows(f"SELECT {_COLUMNS} FROM peer_review_requests WHERE probe_state = 'held'"
                              " ORDER BY received_at")
        return [PeerReviewRecord.from_row(r) for r in rows]

    def probe_destroyed(self, request_id: str, actor: str, why: str, detail: str) -> bool:
        """Mark the probe destroyed and log why, how and by whom; True the first time (a repeat logs nothing)."""
        with self._lock:
            cur = self._execute("UPDATE peer_review_requests SET probe_state = 'destroyed', probe_destroyed_at = ?,"
                                " morphology = NULL WHERE request_id = ? AND probe_state = 'held'",
                                (_iso(), request_id))
            if cur.rowcount != 1:
                return False
            record = self.get(request_id)
            self._log(request_id, record.device_id if record else "", "probe_destroyed", actor, f"{why}: {detail}")
            return True

    def record(self, request_id: str, device_id: str, action: str, actor: str, detail: str = "") -> None:
        """Log one step that changes nothing else (an image viewed, access refused)."""
        with self._lock:
            self._log(request_id, device_id, action, actor, detail)

    def log(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Who did what, newest first (for one request, or all)."""
        where, args = ("WHERE request_id = ? ", [request_id]) if request_id else ("", [])
        with self._lock:
            return self._rows(f"SELECT at, request_id, device_id, action, actor, detail FROM peer_review_log {where}"
                              "ORDER BY id DESC LIMIT ?", (*args, limit))

    def log_for_case(self, device_id: str, case_id: str) -> list[dict[str, Any]]:
        """Central's steps for every peer review of one case (the auditor's case timeline), oldest first."""
        with self._lock:
            return self._rows("SELECT l.at, l.request_id, l.device_id, l.action, l.actor, l.detail"
                              " FROM peer_review_log l JOIN peer_review_requests r ON r.request_id = l.request_id"
                              " WHERE r.device_id = ? AND r.case_id = ? ORDER BY l.id", (device_id, case_id))
