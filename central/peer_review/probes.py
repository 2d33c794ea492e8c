"""The probe's life at central: held for one review, destroyed when it is answered or the case closes.

``ReviewProbes`` joins the vault (the encrypted files) and the store (what the reviewers and auditors
see: whether a probe is held, and the log). A probe is destroyed:

* at once when the reviewer records the outcome (``central.web.peer_review``, actor: the reviewer);
* by the sweep the ingest runs every few seconds, for a probe still held when its request was decided
  (a crash between the decision and the destruction), when the desk's audit trail says the case was
  closed or its photo destroyed (a ``deletion`` event for the case, arriving with the audit), when its
  desk has been revoked (the outcome would never reach it), when it has been held ``probe_max_days``,
  and for any file in the vault no held request owns.

Each destruction is logged in ``peer_review_log`` (``probe_destroyed``: why, by whom, which files were
overwritten and removed); the desk records its own side in its audit trail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from central.audit.filter import EventFilter
from central.audit.store import AuditStore
from central.peer_review.probe_vault import Destruction, ProbeVault
from central.peer_review.store import PeerReviewRecord, PeerReviewStore

logger = logging.getLogger(__name__)

ANSWERED = "review answered"
CASE_CLOSED = "case closed on the desk"
REVOKED = "desk revoked"
SWEEP_ACTOR = "central"


class ReviewProbes:
    def __init__(self, store: PeerReviewStore, vault: ProbeVault, *, max_days: int = 30) -> None:
        self.store, self.vault, self.max_days = store, vault, max_days

    def destroy(self, request_id: str, why: str, actor: str) -> Destruction:
        """Destroy the request's probe (files first, then the mark and the log); safe to repeat."""
        done = self.vault.destroy(request_id)
        if self.store.probe_destroyed(request_id, actor, why, done.describe()):
            logger.info("probe of peer review request %s destroyed (%s)", request_id, why)
        return done

    def sweep(self, audit: AuditStore | None, now: datetime | None = None,
              revoked: Collection[str] = ()) -> list[tuple[str, str]]:
        """Destroy every probe that should no longer be held (``revoked``: desks central has revoked);
        returns (request id, why) for each."""
        now = now or datetime.now(UTC)
        destroyed = []
        held = self.store.held_probes()
        for record in held:
            why = REVOKED if record.device_id in revoked else self._why_destroy(record, audit, now)
            if why is not None:
                self.destroy(record.request_id, why, SWEEP_ACTOR)
                destroyed.append((record.request_id, why))
        owned = {r.request_id for r in held} - {rid for rid, _ in destroyed}
        for request_id in self.vault.request_ids():
            if request_id not in owned:
                self.destroy(request_id, "no request holds it", SWEEP_ACTOR)
                destroyed.append((request_id, "no request holds it"))
        return destroyed

    def _why_destroy(self, record: PeerReviewRecord, audit: AuditStore | None, now: datetime) -> str | None:
        if record.status != "pending":
            return ANSWERED
        if audit is not None and case_closed(audit, record):
            return CASE_CLOSED
        received = datetime.fromisoformat(record.probe_received_at or record.received_at)
        if now - received > timedelta(days=self.max_days):
            return f"held {self.max_days} days"
        return None


def case_closed(audit: AuditStore, record: PeerReviewRecord) -> bool:
    """Whether the desk's audit trail, as stored at central, records its photo destroyed since the request."""
    events = audit.query(EventFilter(device_id=record.device_id, type="deletion", since=record.requested_at),
                         limit=500)
    for event in events:
        details = event.get("details")
        try:
            parsed = json.loads(details) if isinstance(details, str) else details or {}
        except ValueError:
            continue
        if isinstance(parsed, dict) and parsed.get("case_id") == record.case_id:
            return True
    return False
