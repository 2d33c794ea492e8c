"""Properties of the photo checks (Hypothesis): any bytes are refused with ImageRejectedError or decoded.

Synthetic gradients only (never a face photo), a few hundred bytes each, so decoding stays fast.
"""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ImageRejectedError
from models.image import Header, decode_image, read_header
from tests.byte_edits import apply_edits


def _encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


_Y, _X = np.mgrid[0:12, 0:16]
_COLOUR = np.dstack([_X * 12, _Y * 18, (_X + _Y) * 6]).astype(np.uint8)
VALID = [
    _encode(".jpg", _COLOUR), _encode(".jpg", _COLOUR, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    _encode(".jpg", _COLOUR, [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]), _encode(".png", _COLOUR),
    _encode(".png", _COLOUR[:, :, 0]), _encode(".png", _COLOUR.astype(np.uint16) * 256),
]
edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)


def _header_or_refusal(data: bytes) -> Header | None:
    try:
        header = read_header(data)
    except ImageRejectedError:
        return None
    assert header.format in ("JPEG", "PNG")
    assert not header.complete or (header.width > 0 and header.height > 0)
    return header


def _decoded_or_refusal(data: bytes) -> np.ndarray | None:
    try:
        image = decode_image(data)
    except ImageRejectedError:
        return None
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    return image


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_or_read(data: bytes) -> None:
    _header_or_refusal(data)
    _decoded_or_refusal(data)


@settings(max_examples=300)
@given(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]), st.binary(max_size=300))
def test_anything_after_a_valid_magic_is_refused_or_read(magic: bytes, rest: bytes) -> None:
    _header_or_refusal(magic + rest)
    _decoded_or_refusal(magic + rest)


@settings(max_examples=50)
@given(st.sampled_from(VALID))
def test_valid_photos_decode_at_their_declared_size(data: bytes) -> None:
    header = read_header(data)
    image = decode_image(data)
    assert header.complete and image.shape[:2] == (header.height, header.width) == (12, 16)


@settings(max_examples=400)
@given(st.sampled_from(VALID), edits)
def test_mutated_photos_are_refused_or_decoded(data: bytes, changes: list) -> None:
    mutated = apply_edits(data, changes)
    _header_or_refusal(mutated)
    _decoded_or_refusal(mutated)


@settings(max_examples=150)
@given(st.sampled_from(VALID), st.integers(1, 400))
def test_truncated_photos_are_refused(data: bytes, cut: int) -> None:
    truncated = data[:max(len(data) - cut, 0)]
    assert _decoded_or_refusal(truncated) is None
