"""Frames from a webcam (mirrored, wall-clock time) or a video file (as recorded, its own time)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from sketch_search.common.errors import CameraError

VIEW_WIDTH = 640            # frames are scaled to this width; the canvas lives in these pixels
CAMERA_GRACE_SECONDS = 2.0  # a webcam that gives no frame for this long has failed


class FrameSource:
    """A webcam (mirrored, so moving right draws right; wall-clock time) or a video file (frames
    as they are, timed by the file's own frame rate so gestures behave the same however fast the
    frames are processed). Frames come out VIEW_WIDTH pixels wide."""

    def __init__(self, source: int | str | Path, view_width: int = VIEW_WIDTH):
        # A missing camera or a broken file is reported in our own one line: keep OpenCV's and
        # FFmpeg's messages about it off the terminal (FFmpeg reads this at its first use).
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.live = isinstance(source, int)
        self.view_width = view_width
        if self.live:
            level = cv2.getLogLevel()
            cv2.setLogLevel(0)  # each camera backend OpenCV tries logs its own failure
            try:
                self._capture = cv2.VideoCapture(source)
            finally:
                cv2.setLogLevel(level)
            if not self._capture.isOpened():
                raise CameraError(f"no camera at index {source} (none connected, or in use by another "
                                  "program): connect a webcam, or read a video file instead")
            # 640 x 480 is all the loop uses; a one-frame buffer keeps the view current when a
            # frame takes longer than the camera's frame interval. Cameras may ignore either.
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, 640)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            self.fps = 0.0
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise CameraError(f"video file {path} does not exist: give an existing video file, "
                                  "or a camera index (0)")
            self._capture = cv2.VideoCapture(str(path))
            if not self._capture.isOpened():
                raise CameraError(f"video file {path} cannot be read as a video (OpenCV/FFmpeg "
                                  "does not know its format)")
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frames_read = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        """(BGR frame, seconds) or None at the end of a video file. Raises CameraError when a
        webcam stops giving frames."""
        if self.live:
            deadline = time.monotonic() + CAMERA_GRACE_SECONDS
            while True:
                ok, frame = self._capture.read()
                if ok and frame is not None:
                    break
                if time.monotonic() > deadline:
                    raise CameraError("the camera stopped sending frames (unplugged, or taken by "
                                      "another program)")
                time.sleep(0.02)
            frame = cv2.flip(frame, 1)
            t = time.monotonic()
        else:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return None
            t = self.frames_read / self.fps
        self.frames_read += 1
        h, w = frame.shape[:2]
        if w != self.view_width:
            height = max(1, round(h * self.view_width / w))
            frame = cv2.resize(frame, (self.view_width, height),
                               interpolation=cv2.INTER_AREA if w > self.view_width else cv2.INTER_LINEAR)
        return frame, t

    def close(self) -> None:
        self._capture.release()


# -- gestures to strokes --------------------------------------------------------------------------
