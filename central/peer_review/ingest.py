"""Peer review requests from the broker into the store (no paho here; ``central.ingest.mqtt`` calls it).

Every request is distrusted like an audit message: it must come on a device's
request topic, from a device registered with central, parse strictly and name
the device it was published by. A refused one is recorded with the audit
store's rejections (topic, reason, size; never content), so it shows on the
audit page with the other refused messages.

A request that carries the probe (``core.review_probe``) is taken only if the
probe opens with central's review key for exactly this desk, request and case
and is a JPEG under the cap: a probe sealed to another key, altered, moved or
oversized refuses the whole request, recorded like any other refusal, and the
desk's resend is refused the same way until it is put right. An opened probe
goes to the vault (``ReviewProbes``), never into the database; a repeat of a
stored request never puts it there again, so a probe destroyed stays destroyed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.peer_review.probes import ReviewProbes
from central.peer_review.store import PeerReviewStore
from core.errors import WireFormatError
from core.keywrap import UnwrapError
from core.peer_review import PeerReviewRequest
from core.topics import PEER_REVIEW_REQUEST, device_from_peer_review_request_topic

logger = logging.getLogger(__name__)


def is_request_topic(topic: str) -> bool:
    """Whether a message belongs here rather than to the audit handler (then checked in full)."""
    return topic.split("/")[-2:] == PEER_REVIEW_REQUEST.split("/")


class PeerReviewIngest:
    def __init__(self, store: PeerReviewStore, registry: RegistryStore, audit: AuditStore, *,
                 review_key: X25519PrivateKey | None = None, probes: ReviewProbes | None = None) -> None:
        """``review_key`` opens the probes requests carry and ``probes`` holds them; without both, a request
        carrying a probe is refused (one without is taken as before)."""
        self.store, self._registry, self._audit = store, registry, audit
        self._review_key, self.probes = review_key, probes
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
            image = self._open_probe(request)
        except (WireFormatError, UnwrapError) as e:
            self.rejected += 1
            logger.warning("rejected peer review request on %s (%s bytes): %s", topic[:200], len(payload), e)
            self._audit.record_rejection(topic, f"peer review request: {e}", len(payload), received_at=when)
            return "rejected"
        if image is None or self.probes is None or self.store.get(request.request_id) is not None:
            return self._add(request.without_probe(), when, probe_held=False)
        self.probes.vault.put(request.request_id, image)
        result = self._add(request, when, probe_held=True)
        if result != "new":  # stored meanwhile (another worker): the row says whether a probe is held
            record = self.store.get(request.request_id)
            if record is None or record.probe_state != "held":
                self.probes.vault.destroy(request.request_id)
        return result

    def _open_probe(self, request: PeerReviewRequest) -> bytes | None:
        """The probe's JPEG, opened in memory; None if the request carries none."""
        if request.probe is None:
            return None
        if self._review_key is None or self.probes is None:
            raise WireFormatError("it carries a probe image but central has no review key configured "
                                  "([peer_review] review_key) to open it")
        return request.probe.open(self._review_key, device_id=request.device_id, request_id=request.request_id,
                                  case_id=request.case_id)

    def _add(self, request: PeerReviewRequest, when: datetime, *, probe_held: bool) -> str:
        result = self.store.add_request(request, when, probe_held=probe_held)
        if result == "new":
            logger.info("peer review request %s from %s (case %s) is waiting for a reviewer",
                        request.request_id, request.device_id, request.case_id)
        return result
