"""Peer review of a doubtful adjudication: the request goes out, the outcome comes back.

The policy sends a doubtful "no viable match" to the facial recognition team
at central for peer review, and the device may only close the case once the
outcome is back. ``PeerReviewChannel`` is that round trip; the case service
depends on nothing else. Two implementations:

* ``LocalPeerReviewChannel`` (here, complete): the **offline fallback**. The
  request is recorded on the device and a technical adviser signs in on the
  device and records the outcome there. Used by the tests and whenever the
  device has no central peer-review link.
* a central channel (not yet built): sends the request over MQTT through
  ``appliance.comms`` and delivers central's outcome to ``CaseService.apply_peer_review``;
  see docs/desk-workflow.md, "What central still has to provide".
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from appliance.storage.peer_reviews import PeerReviewStore


@dataclass(frozen=True)
class PeerReviewRequest:
    """What the reviewer is asked: which candidates of which case, and the officer's doubts (no biometrics)."""

    case_id: str
    custody_ref: str
    requested_by: str
    ranks: list[int]
    question: str


@dataclass(frozen=True)
class PeerReviewOutcome:
    """The reviewer's decision for each candidate in question: "viable" or "not_viable"."""

    case_id: str
    reviewer: str
    decisions: dict[int, str]
    notes: str


class PeerReviewChannel(ABC):
    """Carries a peer review request to the reviewers and brings the outcome back."""

    name: str

    @abstractmethod
    def send_request(self, request: PeerReviewRequest) -> None:
        """Queue the request for the reviewers; must not lose it if the link is down."""

    @abstractmethod
    def outcome(self, case_id: str) -> PeerReviewOutcome | None:
        """The outcome for this case if it has come back, else None."""


class LocalPeerReviewChannel(PeerReviewChannel):
    """Offline fallback: a technical adviser on this device records the outcome."""

    name = "local"

    def __init__(self, store: PeerReviewStore, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._store, self._clock = store, clock

    def send_request(self, request: PeerReviewRequest) -> None:
        self._store.request(request.case_id, request.custody_ref, request.requested_by, self._clock(),
                            request.ranks, request.question, self.name)

    def record_outcome(self, outcome: PeerReviewOutcome) -> None:
        """Called by the case service once it has checked the reviewer may review this case."""
        self._store.record_outcome(outcome.case_id, outcome.reviewer, outcome.decisions, outcome.notes,
                                   self._clock())

    def outcome(self, case_id: str) -> PeerReviewOutcome | None:
        row = self._store.get(case_id)
        if row is None or row.decisions is None or row.reviewer is None:
            return None
        return PeerReviewOutcome(case_id, row.reviewer, row.decisions, row.notes or "")
