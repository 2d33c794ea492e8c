"""The announcement wire format and the target description: strict both ways."""

from __future__ import annotations

import json

import pytest

from core.errors import WireFormatError
from core.library_announce import (
    MAX_PAYLOAD_BYTES,
    LibraryAnnouncement,
    LibraryTargetInfo,
    target_name,
    validate_target_name,
)
from core.topics import library_announce_topic

DIGEST = "ab" * 32


def announcement(**over: object) -> LibraryAnnouncement:
    fields: dict[str, object] = dict(library_version=3, target="library-v000003.db", kind="full",
                                     result_digest=DIGEST, published_at="2026-11-26T06:00:00+00:00")
    fields.update(over)
    return LibraryAnnouncement(**fields)  # type: ignore[arg-type]


def test_round_trip_and_topic():
    a = announcement()
    assert LibraryAnnouncement.from_bytes(a.to_bytes()) == a
    assert library_announce_topic() == "rfr/v1/fleet/library"


@pytest.mark.parametrize("payload, reason", [
    (b"\xff not json", "not valid JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"v": 2}).encode(), "schema version"),
    (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "limit"),
    (json.dumps({**announcement().to_dict(), "extra": 1}).encode(), r"unexpected \['extra'\]"),
    (json.dumps({**announcement().to_dict(), "library_version": True}).encode(), "positive integer"),
    (json.dumps({**announcement().to_dict(), "target": "../keys/targets.pem"}).encode(), "not valid"),
    (json.dumps({**announcement().to_dict(), "kind": "patch"}).encode(), "kind"),
    (json.dumps({**announcement().to_dict(), "published_at": "2026-11-26T06:00:00"}).encode(), "time zone"),
])
def test_malformed_announcements_are_refused_with_a_reason(payload, reason):
    with pytest.raises(WireFormatError, match=reason):
        LibraryAnnouncement.from_bytes(payload)


def test_target_info_names_and_validation():
    full = LibraryTargetInfo("full", 2, "emb@1", DIGEST, "0f" * 16)
    delta = LibraryTargetInfo("delta", 3, "emb@1", DIGEST, "0f" * 16, 2, "cd" * 32)
    assert (full.name, delta.name) == ("library-v000002.db", "library-v000002-to-v000003.delta")
    assert LibraryTargetInfo.from_dict(delta.to_dict()) == delta
    assert set(full.to_dict()) == {"kind", "library_version", "embedder_id", "result_digest", "key_id"}
    with pytest.raises(WireFormatError, match="key id must be 32"):
        LibraryTargetInfo("full", 2, "emb@1", DIGEST, "../../etc")
    with pytest.raises(WireFormatError, match="must move forward"):
        LibraryTargetInfo("delta", 2, "emb@1", DIGEST, "0f" * 16, 2, DIGEST)
    with pytest.raises(WireFormatError, match="no base version"):
        LibraryTargetInfo("full", 2, "emb@1", DIGEST, "0f" * 16, 1, DIGEST)
    with pytest.raises(WireFormatError, match=r"missing \['base_digest'\]"):
        LibraryTargetInfo.from_dict({k: v for k, v in delta.to_dict().items() if k != "base_digest"})
    with pytest.raises(WireFormatError):
        target_name("delta", 3)
    for bad in ("", ".hidden", "a/b", "a..b", "x" * 200):
        with pytest.raises(WireFormatError):
            validate_target_name(bad)
