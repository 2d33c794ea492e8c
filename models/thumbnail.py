"""Small square JPEG of a face, for showing a reference photo to custody staff.

Cut from the decoded pixels and re-encoded, so no EXIF (location, device) from
the original file travels with it. Parts of the square beyond the image edge
are filled with mid-grey so staff can tell padding from the photo.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.detector import DetectedFace

MARGIN = 0.3  # of the box's longer side, on each side: keeps hair and chin in view
JPEG_QUALITY = 90


def face_thumbnail(image: np.ndarray, face: DetectedFace, size: int = 160) -> bytes:
    """A ``size`` x ``size`` JPEG (quality 90) centred on the face box with a 30% margin."""
    if size <= 0:
        raise ValueError("thumbnail size must be positive")
    side = max(face.w, face.h) * (1 + 2 * MARGIN)
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    n = max(1, round(side))
    h, w = image.shape[:2]
    crop = np.full((n, n, 3), 128, dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_CUBIC
    thumb = cv2.resize(crop, (size, size), interpolation=interp)
    ok, encoded = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the thumbnail as JPEG")
    return encoded.tobytes()
