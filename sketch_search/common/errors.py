"""Errors a user can act on. Each carries one line: what was wrong and what to do.

The command-line entry points catch `SketchSearchError`, print its message on one line
and exit non-zero; anything else is a bug and keeps its traceback.
"""


class SketchSearchError(Exception):
    """Base class: the message is shown to the user as it is."""


class MissingCheckpointError(SketchSearchError):
    """A model's files are not where the program looks for them."""


class CheckpointFormatError(SketchSearchError):
    """A model file exists but does not fit the architecture (e.g. a foreign LoRA file)."""


class DeviceError(SketchSearchError):
    """The device asked for (--device cuda, mps) is not there."""


class BlankSketchError(SketchSearchError):
    """The sketch has no strokes."""


class NotAnImageError(SketchSearchError):
    """A path given as an image is missing, unreadable or not an image.

    `reason` is the why alone ("truncated file"), for reports that show the path beside it;
    `permanent` is False where the file may read fine later (permissions, memory, still copying).
    """

    def __init__(self, message: str, reason: str | None = None, permanent: bool = True):
        super().__init__(message)
        self.reason = reason if reason is not None else message
        self.permanent = permanent


class GalleryError(SketchSearchError):
    """The gallery folder or its index cannot be used."""


class CameraError(SketchSearchError):
    """No camera, a camera that stopped, or a video file that cannot be read."""


class DatasetError(SketchSearchError):
    """A training or evaluation data folder is missing or malformed."""
