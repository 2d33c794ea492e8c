"""The probe sealed to central's review key: it opens only there, only for its request, and nothing else passes."""

from __future__ import annotations

import base64
import json
import uuid

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from core.errors import WireFormatError
from core.keywrap import PROBE_SCOPE, UnwrapError, validate_library_id
from core.peer_review import MAX_REQUEST_BYTES, MAX_REQUEST_WITH_PROBE_BYTES, CandidateSummary, PeerReviewRequest
from core.review_probe import MAX_PROBE_IMAGE_BYTES, SealedProbe, check_jpeg, review_key_id

CENTRAL = X25519PrivateKey.generate()
OTHER = X25519PrivateKey.generate()
REQUEST_ID = str(uuid.uuid4())


def face_jpeg(size: int = 160, seed: int = 1) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def sealed(image: bytes | None = None, **over) -> SealedProbe:
    names = dict(device_id="desk-a", request_id=REQUEST_ID, case_id="1A2B3C4D", taken_on="2026-12-04",
                 quality="pass")
    names.update(over)
    return SealedProbe.seal(image or face_jpeg(), CENTRAL.public_key(), **names)


def request(probe: SealedProbe | None, **over) -> PeerReviewRequest:
    values = dict(device_id="desk-a", case_id="1A2B3C4D", custody_ref="CR-1", requested_by="officer",
                  doubts="Ear shape differs.", ranks=(2,), request_id=REQUEST_ID, probe=probe,
                  requested_at="2026-12-04T09:30:00.000+00:00",
                  candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.61, "strong", "not_viable", "obama/1.jpg"),
                              CandidateSummary(2, "DEMO-BIDEN", 0.32, "weak", "needs_peer_review")))
    values.update(over)
    return PeerReviewRequest(**values)


def opens(probe: SealedProbe, key: X25519PrivateKey = CENTRAL, **over) -> bytes:
    names = dict(device_id="desk-a", request_id=REQUEST_ID, case_id="1A2B3C4D")
    names.update(over)
    return probe.open(key, **names)


def test_the_probe_opens_with_central_review_key_for_its_own_request_only() -> None:
    image = face_jpeg()
    probe = sealed(image)
    assert opens(probe) == image
    # Nothing of the image is readable in what travels.
    wire = json.dumps(probe.to_dict()).encode()
    assert image[200:232] not in wire and base64.b64encode(image[300:330]) not in wire
    with pytest.raises(UnwrapError, match="does not open with central's review key"):
        opens(probe, OTHER)  # a rotated or misconfigured review key
    with pytest.raises(UnwrapError):
        opens(probe, request_id=str(uuid.uuid4()))  # moved to another request
    with pytest.raises(UnwrapError):
        opens(probe, case_id="FFFF0000")  # or another case
    with pytest.raises(UnwrapError, match="sealed by desk desk-a, not desk-b"):
        opens(probe, device_id="desk-b")  # or claimed by another desk


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "taken_on", "quality"])
def test_a_tampered_probe_does_not_open(field: str) -> None:
    body = sealed().to_dict()
    if field == "taken_on":
        body[field] = "2020-01-01"
    elif field == "quality":
        body[field] = "fail"
    else:
        raw = bytearray(base64.b64decode(body[field]))
        raw[len(raw) // 2] ^= 1
        body[field] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(UnwrapError, match="altered"):
        opens(SealedProbe.from_dict(body))


def test_oversized_or_malformed_probes_are_refused_before_any_decryption() -> None:
    with pytest.raises(WireFormatError, match="1 to 32768 bytes"):
        sealed(b"\xff\xd8\xff" + b"\x00" * MAX_PROBE_IMAGE_BYTES + b"\xff\xd9")
    with pytest.raises(WireFormatError, match="must be a JPEG"):
        sealed(b"<html><script>alert(1)</script></html>")
    body = sealed().to_dict()
    big = dict(body, ciphertext=base64.b64encode(b"x" * (MAX_PROBE_IMAGE_BYTES + 4096)).decode())
    for bad, reason in [(dict(body, extra=1), "exactly the fields"), (dict(body, kind="keys"), "kind"),
                        (big, "at most"), (dict(body, nonce="!!"), "not base64"),
                        (dict(body, taken_on="04/12/2026"), "date"), (dict(body, quality="x" * 301), "quality"),
                        ([1, 2], "exactly the fields")]:
        with pytest.raises(WireFormatError, match=reason):
            SealedProbe.from_dict(bad)
    assert check_jpeg(face_jpeg()) == face_jpeg()


def test_a_request_carries_the_probe_only_as_an_optional_addition() -> None:
    plain = request(None)
    data = plain.to_bytes()
    # Without a probe the request is exactly what it was before (old desks and centrals read it).
    assert "probe" not in json.loads(data)
    assert PeerReviewRequest.from_bytes(data) == plain
    with_probe = request(sealed())
    again = PeerReviewRequest.from_bytes(with_probe.to_bytes())
    assert again == with_probe and opens(again.probe) == opens(with_probe.probe)
    assert again.candidates[0].source == "obama/1.jpg" and again.candidates[1].source is None
    assert again.without_probe() == plain
    # A probe sealed by another desk cannot ride in this desk's request.
    with pytest.raises(WireFormatError, match="another desk"):
        request(sealed(device_id="desk-b"))


def test_the_larger_size_cap_is_for_requests_with_a_probe_and_oversize_is_still_refused() -> None:
    body = json.loads(request(None).to_bytes())
    body["doubts"] = ""
    padding = [{"rank": r, "subject_ref": "S" * 200, "score": 0.1, "band": "weak", "decision": "not_viable",
                "source": "s" * 200} for r in range(3, 51)]
    # Without a probe: the old 64 KiB cap, even though the parser reads up to the probe-sized cap.
    body["candidates"] += padding
    body["doubts"] = "d" * 4000
    body["custody_ref"] = "C" * 200
    over = json.dumps(body).encode()
    over += b" " * (MAX_REQUEST_BYTES + 10 - len(over))
    with pytest.raises(WireFormatError, match=f"limit without a probe is {MAX_REQUEST_BYTES}"):
        PeerReviewRequest.from_bytes(over)
    # With a probe: nothing over the probe-sized cap is read at all.
    probed = json.loads(request(sealed()).to_bytes())
    huge = json.dumps(probed).encode()
    huge += b" " * (MAX_REQUEST_WITH_PROBE_BYTES + 1 - len(huge))
    with pytest.raises(WireFormatError, match="the limit is"):
        PeerReviewRequest.from_bytes(huge)


def test_the_probe_scope_can_never_name_a_library_and_the_key_has_a_public_name() -> None:
    with pytest.raises(WireFormatError):
        validate_library_id(PROBE_SCOPE)
    name = review_key_id(CENTRAL.public_key())
    assert len(name) == 16 and name != review_key_id(OTHER.public_key())
