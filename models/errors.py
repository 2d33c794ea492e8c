"""Errors raised by the model layer.

Two audiences: ``ImageRejectedError`` and ``NoFaceError`` reach custody staff at
the desk, so their messages say what to do next in plain words; the manifest
and checksum errors reach whoever installs the appliance, so they name the file
and the fix.
"""

from __future__ import annotations

from core.errors import CustodyRfrError


class ModelError(CustodyRfrError):
    """A model could not be prepared or run."""


class ModelManifestError(ModelError):
    """A model manifest is missing, malformed, or disagrees with the model file it describes."""


class ModelChecksumError(ModelError):
    """A model file's sha256 is not the one its manifest pins: it must not be used."""


class ImageRejectedError(CustodyRfrError):
    """An uploaded or captured photo cannot be used; the message is written for custody staff."""


class NoFaceError(CustodyRfrError):
    """No usable face was found in a photo; the message is written for custody staff."""


NO_FACE_MESSAGE = (
    "No face was found in this photo. Retake it with the face clearly visible, facing the camera."
)


class FaceAlignmentError(NoFaceError):
    """The face's landmarks are degenerate, so it cannot be lined up for matching."""


FACE_NOT_CONFIRMED_MESSAGE = (
    "The face could not be read reliably in this photo. Retake it with the face clearly visible, "
    "facing the camera, with nothing covering it."
)


class FaceNotConfirmedError(NoFaceError):
    """A fused template's second detector could not find the face the first one chose.

    The photo is refused rather than templated by one part only, which would not be comparable with
    the library's templates.
    """

    def __init__(self, message: str = FACE_NOT_CONFIRMED_MESSAGE) -> None:
        super().__init__(message)
