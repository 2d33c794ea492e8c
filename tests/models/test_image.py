"""Photo decoding: what the desk accepts, and the messages staff see for what it refuses."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from models import image as image_module
from models.errors import ImageRejectedError
from models.image import MAX_BYTES, decode_image
from tests.models.conftest import portrait


def _jpeg(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, ::-1]).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


@pytest.fixture
def pattern() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.random((60, 80, 3)) * 255).astype(np.uint8)


def test_valid_jpeg_decodes_to_bgr_uint8() -> None:
    decoded = decode_image(portrait("obama.jpg"))
    assert decoded.shape == (1137, 910, 3)
    assert decoded.dtype == np.uint8


def test_valid_png_decodes_losslessly(pattern: np.ndarray) -> None:
    assert np.array_equal(decode_image(_png(pattern)), pattern)


def test_exif_orientation_is_applied() -> None:
    array = np.zeros((40, 80, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue()).shape == (80, 40, 3)


def test_progressive_jpeg_and_trailing_bytes_are_accepted(pattern: np.ndarray) -> None:
    progressive = _jpeg(pattern, progressive=True)
    assert decode_image(progressive).shape == pattern.shape
    # Some phones append their own data after the end-of-image marker.
    assert decode_image(progressive + b"TRAILER" * 100).shape == pattern.shape


def test_empty_file_is_refused() -> None:
    with pytest.raises(ImageRejectedError, match="empty"):
        decode_image(b"")


def test_text_file_is_not_a_photo() -> None:
    with pytest.raises(ImageRejectedError) as err:
        decode_image(b"Custody record 1234\nDetained at 10:42\n")
    assert str(err.value) == "This file is not a photo in a format the desk can read (JPEG or PNG)."


def test_unsupported_image_format_is_named(pattern: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pattern).save(buffer, "GIF")
    with pytest.raises(ImageRejectedError, match=r"GIF format.*JPEG or PNG"):
        decode_image(buffer.getvalue())


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_jpeg_is_refused(keep: float) -> None:
    data = portrait("obama.jpg")
    truncated = data[: int(len(data) * keep)]
    with pytest.raises(ImageRejectedError, match="incomplete"):
        decode_image(truncated)


def test_jpeg_missing_only_its_end_marker_is_refused(pattern: np.ndarray) -> None:
    data = _jpeg(pattern)
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(ImageRejectedError, match="incomplete"):
        decode_image(data[:-2])


def test_truncated_progressive_jpeg_is_refused(pattern: np.ndarray) -> None:
    data = _jpeg(pattern, progressive=True)
    with pytest.raises(ImageRejectedError, match="incomplete"):
        decode_image(data[: len(data) * 2 // 3])


def test_truncated_png_is_refused(pattern: np.ndarray) -> None:
    data = _png(pattern)
    assert data[-8:-4] == b"IEND"
    for cut in (len(data) - 12, len(data) // 2):
        with pytest.raises(ImageRejectedError, match="incomplete"):
            decode_image(data[:cut])


def _with_sof0_size(data: bytes, width: int, height: int) -> bytes:
    sof = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[sof + 5:sof + 7] = height.to_bytes(2, "big")
    patched[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def test_huge_declared_size_is_refused_before_decoding(
    pattern: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _with_sof0_size(_jpeg(pattern), 20000, 20000)
    assert len(bomb) < 10_000

    def must_not_decode(*args: object) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(image_module.cv2, "imdecode", must_not_decode)
    with pytest.raises(ImageRejectedError, match="40 megapixels"):
        decode_image(bomb)


def test_png_with_huge_declared_size_is_refused(pattern: np.ndarray) -> None:
    data = bytearray(_png(pattern))
    data[16:24] = (9000).to_bytes(4, "big") + (9000).to_bytes(4, "big")
    with pytest.raises(ImageRejectedError, match="40 megapixels"):
        decode_image(bytes(data))


def test_oversized_file_is_refused() -> None:
    data = portrait("obama.jpg")
    padded = data + b"\x00" * (MAX_BYTES + 1 - len(data))
    with pytest.raises(ImageRejectedError, match="larger than 20 MB"):
        decode_image(padded)
