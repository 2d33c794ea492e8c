"""Decode an uploaded or captured photo safely, or reject it with a message custody staff can act on.

Checks happen before any pixel is decoded: size in bytes, file type, the
dimensions declared in the header (a small file can declare a 20000x20000 image
and exhaust memory when decoded), and completeness (OpenCV 4 silently decodes a
truncated JPEG with a grey bottom half, which would then be enrolled as if it
were a good photo; OpenCV 5.0 refuses it but cannot say why, so checking here
keeps the refusal independent of the decoder version and tells staff that the
file is incomplete rather than damaged). The header is walked here rather than with Pillow because
Pillow reports large images through the ``warnings`` module, whose filters are
process-global and not thread-safe to change per call in a Flask app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from models.errors import ImageRejectedError

logger = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000

NOT_A_PHOTO = "This file is not a photo in a format the desk can read (JPEG or PNG)."
EMPTY = "This file is empty. Take or choose the photo again."
TOO_BIG_BYTES = "This photo file is larger than 20 MB. Save it at a smaller size (JPEG) and try again."
TOO_MANY_PIXELS = (
    "This photo is larger than 40 megapixels. Save it at a smaller size and try again."
)
INCOMPLETE = (
    "This photo file is incomplete (it may not have finished copying or uploading). "
    "Take or copy the photo again."
)
UNREADABLE = "This photo file is damaged and cannot be read. Take or copy the photo again."

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class Header:
    """What the file's header declares, read without decoding pixels."""

    format: str
    width: int
    height: int
    complete: bool


def _other_format(data: bytes) -> str | None:
    """Name image formats staff might upload that the desk does not read, to say so precisely."""
    if data[:4] == b"GIF8":
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"avif"):
        return "AVIF" if data[8:12] == b"avif" else "HEIC"
    return None


def _jpeg_header(data: bytes) -> Header:
    """Walk JPEG segments: the first frame header gives the size, reaching EOI proves completeness.

    Scan data is skipped by looking for the next marker that is not a stuffed
    ``FF00`` or a restart marker; progressive files have several scans, which
    the same loop handles. Anything appended after EOI (phone trailers) is ignored.
    """
    n = len(data)
    i = 2
    width = height = 0
    while i < n:
        if data[i] != 0xFF:
            raise ImageRejectedError(UNREADABLE)
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:
            if width == 0:
                raise ImageRejectedError(UNREADABLE)
            return Header("JPEG", width, height, complete=True)
        if marker in _STANDALONE_MARKERS:
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2:
            raise ImageRejectedError(UNREADABLE)
        if marker in _SOF_MARKERS and width == 0 and i + 7 <= n:
            height = int.from_bytes(data[i + 3:i + 5], "big")
            width = int.from_bytes(data[i + 5:i + 7], "big")
            if width == 0 or height == 0:
                raise ImageRejectedError(UNREADABLE)
        i += length
        if marker == 0xDA:
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return Header("JPEG", width, height, complete=False)
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return Header("JPEG", width, height, complete=False)


def _png_header(data: bytes) -> Header:
    """Walk PNG chunks: IHDR gives the size, reaching IEND proves completeness."""
    n = len(data)
    if n < 33 or data[12:16] != b"IHDR":
        raise ImageRejectedError(UNREADABLE)
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if width == 0 or height == 0:
        raise ImageRejectedError(UNREADABLE)
    i = 8
    while i + 8 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        if end > n:
            break
        if kind == b"IEND":
            return Header("PNG", width, height, complete=True)
        i = end
    return Header("PNG", width, height, complete=False)


def read_header(data: bytes) -> Header:
    """Identify a JPEG or PNG and read its declared size and completeness, or reject the file."""
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_header(data)
    if data.startswith(_PNG_MAGIC):
        return _png_header(data)
    other = _other_format(data)
    if other is not None:
        raise ImageRejectedError(
            f"This photo is in {other} format, which the desk cannot read. "
            f"Save or export it as JPEG or PNG and try again."
        )
    raise ImageRejectedError(NOT_A_PHOTO)


def decode_image(data: bytes) -> np.ndarray:
    """Decode a JPEG or PNG to a BGR uint8 array, upright according to its EXIF orientation."""
    if not data:
        raise ImageRejectedError(EMPTY)
    if len(data) > MAX_BYTES:
        raise ImageRejectedError(TOO_BIG_BYTES)
    header = read_header(data)
    if header.width * header.height > MAX_PIXELS:
        logger.info("refused %s declaring %dx%d", header.format, header.width, header.height)
        raise ImageRejectedError(TOO_MANY_PIXELS)
    if not header.complete:
        raise ImageRejectedError(INCOMPLETE)
    # IMREAD_COLOR applies EXIF orientation and gives 3-channel 8-bit BGR for grey, 16-bit or alpha files.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ImageRejectedError(UNREADABLE)
    return image


def encode_pixels(image: np.ndarray) -> bytes:
    """The decoded pixels as PNG and nothing else: no EXIF (GPS position, camera serial), no comments.

    Lossless, so a face chosen later from the stored photo is found at the same place as in the upload.
    """
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise ImageRejectedError(UNREADABLE)
    return buffer.tobytes()
