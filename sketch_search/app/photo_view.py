"""The opened photo, made ready off the camera loop: decoded (EXIF orientation applied, within the
process's decode-memory budget), fitted to the view, dated, and checked for a phone to show it
on; its phone original, for a photo the sync kept lean; and "show on phone" calls, which may
wait seconds on ADB.

A lean photo shows its kept image at once (or its cached original, when the originals cache
holds it); then, when its phone is connected, the original is pulled into the cache and shown
in its place if the photo is still open. Leaving the photo stops the pull. A failure leaves the
kept image with one note (QuietNotes: a reason is told once, until an original arrives again).

Each kind of job runs on a small daemon thread of its own (`Background`); the loop hands jobs
in and picks results up each frame, never waiting. Decoding is Pillow only (retrieval.images),
no torch.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from device.originals_cache import OriginalsCache, PhoneFile
from device.show_on_phone import ShowReason
from sketch.controls import ControlKind
from sketch_search.common.errors import SketchSearchError
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

EXIF_IFD = 0x8769
CAPTURE_TAGS = (36867, 36868)   # DateTimeOriginal, DateTimeDigitized
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"


@dataclass(frozen=True)
class OpenedPhoto:
    """A photo ready to show: `image` is BGR, fitted inside the view (None when it could not be
    read; `error` says why); `date` is the capture time (`date_source` "taken") or the file's
    modification time ("file")."""
    path: Path
    image: np.ndarray | None
    date: datetime | None
    date_source: str | None
    error: str | None = None
    original: bool = False    # decoded from the phone's original (a lean photo's, pulled)


def capture_date(path: Path) -> datetime | None:
    """The EXIF capture time of the photo at `path`, or None (no EXIF, no date, a bad one)."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            tags = exif.get_ifd(EXIF_IFD)
            for tag in CAPTURE_TAGS:
                value = tags.get(tag)
                if isinstance(value, bytes):
                    value = value.decode("ascii", "replace")
                if isinstance(value, str):
                    try:   # "YYYY:MM:DD HH:MM:SS", possibly padded: untrusted, so parse strictly
                        return datetime.strptime(value.strip("\x00 ")[:19], EXIF_DATE_FORMAT)
                    except ValueError:
                        continue
    except Exception as exc:  # noqa: BLE001 (any reader failure means: no capture time)
        log.debug("no EXIF date in %s: %s", path, exc)
    return None


def photo_date(path: Path) -> tuple[datetime | None, str | None]:
    """(date, source): the capture time ("taken") where the photo has one, else the file's
    modification time ("file"), else (None, None)."""
    taken = capture_date(path)
    if taken is not None:
        return taken, "taken"
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime), "file"
    except (OSError, ValueError, OverflowError):
        return None, None


def fit_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (BGR) scaled, aspect kept, to fit inside `size` (width, height)."""
    h, w = image.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, target, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def open_photo(path: Path, size: tuple[int, int], original: Path | None = None) -> OpenedPhoto:
    """Decode and fit the photo at `path` for a view of `size`; never raises for a bad file.
    `original`: the phone's original of `path` to decode instead (its capture time first, then
    the kept file's date)."""
    from retrieval.images import load_image  # Pillow only; shares the process's decode budget
    taken = capture_date(original) if original is not None else None
    date, source = (taken, "taken") if taken is not None else photo_date(path)
    try:
        rgb = load_image(original or path, min_side=min(size))
    except SketchSearchError as exc:
        return OpenedPhoto(path, None, date, source, str(exc), original is not None)
    image = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
    del rgb
    return OpenedPhoto(path, fit_into(image, size), date, source, None, original is not None)


class Background:
    """One daemon thread running jobs in order; their results are collected with `results()`.

    A job that raises posts nothing; the error is logged. Started on the first job.
    """

    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.Queue[Callable[[], object]] = queue.Queue()
        self._done: list[object] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], object]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def results(self) -> list[object]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def idle(self) -> bool:
        """Nothing queued (a job may still be finishing)."""
        return self._jobs.empty()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                result = job()
            except Exception:  # a job failing must not end the thread the window relies on
                log.exception("%s: a background job failed", self.name)
                continue
            if result is not None:
                with self._lock:
                    self._done.append(result)


@dataclass(frozen=True)
class PhoneCheck:
    """Whether a photo can be shown on the phone; `reason` (short words) when not."""
    path: Path
    available: bool
    reason: str | None


@dataclass(frozen=True)
class PhoneShown:
    """The end of a call to show a photo on the phone: `reason` says why not when not ok."""
    path: Path
    ok: bool
    reason: ShowReason | None
    message: str


@dataclass(frozen=True)
class OriginalNote:
    """A lean photo's original cannot be had now (the kept image stays): one status line."""
    path: Path
    message: str


class PhotoViewer:
    """The window's photo jobs: open (newest wins), the lean photo's original, the phone check,
    and show on phone.

    `gallery`: the folder the matches come from (None: no phone can be known). `adb_port`,
    `serial`: the phone, as for the sync. `originals`: where pulled originals are kept
    (default: the per-user cache of 1 GB; a cache of 0 bytes pulls nothing).
    """

    def __init__(self, gallery: Path | None, adb_port: int = 5037, serial: str | None = None,
                 originals: OriginalsCache | None = None):
        self.gallery = gallery
        self.adb_port = adb_port
        self.serial = serial
        self.originals = originals if originals is not None else OriginalsCache.in_home()
        self._decode = Background("photo-decode")
        self._pull = Background("photo-original")
        self._phone = Background(ControlKind.SHOW_ON_PHONE.value)
        self._wanted: Path | None = None
        self._notes = None    # device.originals.QuietNotes, made on the pull thread

    def open(self, path: Path, size: tuple[int, int]) -> None:
        """Start decoding `path` for a view of `size`; an earlier photo not begun is dropped.
        A lean photo's original is pulled after its kept image is posted."""
        self._wanted = path
        to_pull: list[PhoneFile] = []

        def job():
            if self._wanted != path:  # the person has moved on already
                return None
            opened, lean = self._open(path, size)
            if lean is not None:
                to_pull.append(lean)
            return opened

        def check():
            return self._check_phone(path) if self._wanted == path else None

        def pull_next():
            if to_pull and self._wanted == path:
                self._pull.submit(lambda: self._pull_original(path, size, to_pull[0]))
        self._decode.submit(job)
        self._decode.submit(check)
        self._decode.submit(pull_next)

    def close(self) -> None:
        self._wanted = None

    def show_on_phone(self, path: Path) -> None:
        self._phone.submit(lambda: self._show(path))

    def results(self) -> list[object]:
        """OpenedPhoto, OriginalNote, PhoneCheck and PhoneShown results since the last call, in
        order (a photo's kept image before its original). A photo left is dropped; a note is
        not (told once, it may be about the phone, and it names its photo)."""
        photo_jobs = self._decode.results() + self._pull.results()
        return [r for r in photo_jobs if not isinstance(r, OpenedPhoto) or r.path == self._wanted] \
            + self._phone.results()

    def _open(self, path: Path, size: tuple[int, int]) -> tuple[OpenedPhoto, PhoneFile | None]:
        """The photo as it can be shown now (its cached original, else the kept image), and
        the phone file to pull when the original is still wanted."""
        from device.originals import lean_original
        lean = lean_original(self.gallery, path) if self.originals.max_bytes else None
        cached = self.originals.find(lean) if lean is not None else None
        if cached is None:
            return open_photo(path, size), lean
        opened = open_photo(path, size, cached)
        if opened.image is None:     # the phone's own file does not decode: the kept one does
            log.info("the original of %s does not decode: %s", path.name, opened.error)
            return open_photo(path, size), None
        return opened, None

    def _pull_original(self, path: Path, size: tuple[int, int], lean: PhoneFile):
        """On the pull thread: the original pulled and decoded, a note, or None."""
        from device.originals import OriginalUnavailable, PullCancelled, QuietNotes, pull_original
        self._notes = self._notes or QuietNotes()
        try:
            cached = pull_original(lean, self.originals, lambda: self._wanted != path,
                                   adb_port=self.adb_port, serial=self.serial)
        except PullCancelled:
            log.debug("left %s before its original arrived", path.name)
            return None
        except OriginalUnavailable as unavailable:
            if not self._notes.should_say(unavailable, lean):
                log.debug("original of %s: %s", path.name, unavailable.message)
                return None
            log.info("%s", unavailable.message)
            return OriginalNote(path, display_name(unavailable.message))
        self._notes.clear()
        opened = open_photo(path, size, cached) if self._wanted == path else None
        if opened is not None and opened.image is None:
            log.info("the original of %s does not decode: %s", path.name, opened.error)
            return OriginalNote(path, f"the original of {display_name(path.name)} does not "
                                "decode; showing the small copy")
        return opened

    def _check_phone(self, path: Path) -> PhoneCheck:
        if self.gallery is None:
            return PhoneCheck(path, False, "no gallery")
        from device.show_on_phone import phone_origin
        origin = phone_origin(self.gallery, path)
        return PhoneCheck(path, origin is not None, None if origin is not None else "not from a phone")

    def _show(self, path: Path) -> PhoneShown:
        from device.show_on_phone import show_on_phone  # answers every failure with a result
        result = show_on_phone(self.gallery, path, adb_port=self.adb_port, serial=self.serial)
        return PhoneShown(path, bool(result.ok), result.reason, result.message)
