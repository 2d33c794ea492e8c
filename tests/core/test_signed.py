"""Central's signature on control messages: only its key, only the type it was made for, only unaltered."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from core.audit.ack import ACK_STATEMENT, Ack
from core.audit.chain import canonical_json
from core.errors import WireFormatError
from core.fleet import COMMAND_STATEMENT, FleetCommand
from core.library_announce import LibraryAnnouncement
from core.peer_review import PeerReviewOutcome
from core.signed import UnsignedMessageError, open_sealed, seal
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY, FORGER

ACK = Ack.now("desk-01", 5, 4, "ab" * 32)


def test_a_sealed_ack_opens_with_centrals_key_only() -> None:
    assert Ack.from_signed(ACK.signed(COMMAND_KEY), CENTRAL_PUBLIC) == ACK
    with pytest.raises(UnsignedMessageError, match="not signed by central"):
        Ack.from_signed(ACK.signed(FORGER), CENTRAL_PUBLIC)
    with pytest.raises(UnsignedMessageError, match="carries no signature"):
        Ack.from_signed(ACK.to_bytes(), CENTRAL_PUBLIC)


def test_an_altered_field_breaks_the_signature() -> None:
    obj = json.loads(ACK.signed(COMMAND_KEY))
    obj["events_through"] = 10**6
    with pytest.raises(UnsignedMessageError):
        Ack.from_signed(json.dumps(obj).encode(), CENTRAL_PUBLIC)


def test_a_signature_made_for_one_message_type_never_passes_for_another() -> None:
    body = ACK.to_bytes()
    sealed = ACK.signed(COMMAND_KEY)
    for label in ("custody-rfr peer review outcome v1", "custody-rfr library announcement v1", COMMAND_STATEMENT):
        with pytest.raises(UnsignedMessageError):
            open_sealed(sealed, CENTRAL_PUBLIC, label, limit=512, what="Ack")
    announcement = LibraryAnnouncement.now(2, "library-v000002.db", "full", "sha256:" + "0" * 64).to_bytes()
    with pytest.raises(UnsignedMessageError):  # an announcement sealed as an ack is refused as an announcement
        LibraryAnnouncement.from_signed(seal(COMMAND_KEY, ACK_STATEMENT, announcement, limit=2048, what="x"),
                                        CENTRAL_PUBLIC)
    assert open_sealed(sealed, CENTRAL_PUBLIC, ACK_STATEMENT, limit=512, what="Ack") == body


def test_outcomes_and_announcements_round_trip_sealed() -> None:
    outcome = PeerReviewOutcome(device_id="desk-01", request_id=str(uuid.uuid4()), reviewer="Dr R",
                                decisions={2: "not_viable"}, notes="Different ear shape.")
    assert PeerReviewOutcome.from_signed(PeerReviewOutcome.seal(outcome.to_bytes(), COMMAND_KEY),
                                         CENTRAL_PUBLIC) == outcome
    with pytest.raises(WireFormatError):
        PeerReviewOutcome.from_signed(outcome.to_bytes(), CENTRAL_PUBLIC)
    announcement = LibraryAnnouncement.now(2, "library-v000002.db", "full", "sha256:" + "0" * 64)
    sealed = LibraryAnnouncement.seal(announcement.to_bytes(), COMMAND_KEY)
    assert LibraryAnnouncement.from_signed(sealed, CENTRAL_PUBLIC) == announcement


def test_fleet_commands_keep_the_statement_they_were_signed_with() -> None:
    """A wipe signed before the rule moved to ``core.signed`` still verifies: the signed bytes are unchanged."""
    fields = {"device_id": "desk-01", "command": "wipe", "issued_at": "2030-05-01T12:00:00.000+00:00",
              "nonce": "0" * 32}
    signature = COMMAND_KEY.sign(canonical_json({"statement": "custody-rfr fleet command v1", **fields})).hex()
    command = FleetCommand(**fields, signature=signature)
    command.verify(CENTRAL_PUBLIC, device_id="desk-01", now=datetime.fromisoformat(fields["issued_at"]))
