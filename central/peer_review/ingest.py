"""Peer review requests from the broker into the store (no paho here; ``central.ingest.mqtt`` calls it).

Every request is distrusted like an audit message: it must come on a device's
request topic, from a device registered with central, parse strictly and name
the device it was published by. A refused one is recorded with the audit
store's rejections (topic, reason, size; never content), so it shows on the
audit page with the other refused messages.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.peer_review.store import PeerReviewStore
from core.errors import WireFormatError
from core.peer_review import PeerReviewRequest
from core.topics import PEER_REVIEW_REQUEST, device_from_peer_review_request_topic

logger = logging.getLogger(__name__)


def is_request_topic(topic: str) -> bool:
    """Whether a message belongs here rather than to the audit handler (then checked in full)."""
    return topic.split("/")[-2:] == PEER_REVIEW_REQUEST.split("/")


class PeerReviewIngest:
    def __init__(self, store: PeerReviewStore, registry: RegistryStore, audit: AuditStore) -> None:
        self.store, self._registry, self._audit = store, registry, audit
        self.rejected = 0

    def handle(self, topic: str, payload: bytes, received_at: datetime | None = None) -> str:
        """Store one request: "new", "repeat", "conflict" or "rejected". Raises only if a store fails."""
        when = received_at or datetime.now(UTC)
        try:
            device = device_from_peer_review_request_topic(topic)
            self._registry.require_registered(device)
            request = PeerReviewRequest.from_bytes(payload)
            if request.device_id != device:
                raise WireFormatError(f"Request claims device {request.device_id!r} but was published by {device!r}.")
        except WireFormatError as e:
            self.rejected += 1
            logger.warning("rejected peer review request on %s (%s bytes): %s", topic[:200], len(payload), e)
            self._audit.record_rejection(topic, f"peer review request: {e}", len(payload), received_at=when)
            return "rejected"
        result = self.store.add_request(request, when)
        if result == "new":
            logger.info("peer review request %s from %s (case %s) is waiting for a reviewer",
                        request.request_id, device, request.case_id)
        return result
