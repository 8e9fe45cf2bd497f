"""Lean sync: keep one small image per phone photo instead of the original.

The phone's own thumbnail (`content read --uri content://media/external/images/media/<id>/
thumbnail` over adbd's exec: service, a JPEG of about 540 px made by MediaProvider) is read for
each photo, a few at a time (each read starts a process on the phone), each bounded in bytes
and time. A thumbnail that does not decode, is under 256 px on its short side, is cut off or
refused, or a photo the media store does not know, falls back to the original pulled over the
sync service into a hidden temporary file, shrunk here (device/shrink.py) and then deleted.
Every kept image is written atomically with the phone file's time; a photo that cannot be kept
is skipped with one line and the sync goes on.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

from ppadb.client import Client

from device.media_store import MediaEntry
from device.phone_errors import PhoneError
from device.phone_shell import run_exec
from device.shrink import MIN_SHORT_SIDE, ShrinkError, lean_jpeg
from sketch_search.common.files import remove_quietly, write_atomically

log = logging.getLogger(__name__)

READERS = 4                           # thumbnail reads in flight
READ_AHEAD = 8                        # thumbnails asked for before they are kept
MAX_THUMBNAIL_BYTES = 4 * 1024 * 1024
THUMBNAIL_TIMEOUT_S = 10.0
_JPEG = (".jpg", ".jpeg")

PullOriginal = Callable[[Path], int]
"""pull(part) -> bytes received: the original, whole, into the file `part` (or raise)."""


def lean_names(names: Iterable[tuple[tuple[str, ...], str]]) -> dict[tuple[tuple[str, ...], str], str]:
    """(folder parts, phone name) -> the kept image's name: a JPEG photo keeps its whole name
    (IMG.jpg); another format gets the stem and .jpg (IMG.heic -> IMG.jpg), or its whole name
    and .jpg (IMG.heic.jpg) where another photo of its folder has the same stem."""
    names = list(names)
    stems = Counter((folder, os.path.splitext(name)[0].lower()) for folder, name in names)
    kept = {}
    for folder, name in names:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in _JPEG:
            kept[folder, name] = name
        elif stems[folder, stem.lower()] > 1:
            kept[folder, name] = name + ".jpg"
        else:
            kept[folder, name] = stem + ".jpg"
    return kept


class ThumbnailReader:
    """Reads thumbnails on a few daemon threads (never holding up the program's end, as an
    executor's threads would); `ask` early, `take` in order."""

    def __init__(self, client: Client, transport: str, timeout: float):
        self._client, self._transport = client, transport
        self._timeout = min(timeout, THUMBNAIL_TIMEOUT_S)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._asked: dict[str, Future] = {}
        for number in range(READERS):
            threading.Thread(target=self._work, name=f"thumbnail-{number}", daemon=True).start()

    def ask(self, device_path: str, entry: MediaEntry | None) -> None:
        if entry is not None and device_path not in self._asked:
            future: Future = Future()
            self._asked[device_path] = future
            self._jobs.put((entry, future))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            entry, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self._read(entry))
                except Exception as error:  # noqa: BLE001 (never leave a photo waiting)
                    log.exception("thumbnail read failed")
                    future.set_result(f"thumbnail not read ({type(error).__name__})")

    def take(self, device_path: str) -> bytes | str:
        """The thumbnail's bytes, or why there is none."""
        future = self._asked.pop(device_path, None)
        return "the phone's media store does not know it" if future is None else future.result()

    def _read(self, entry: MediaEntry) -> bytes | str:
        argv = ["content", "read", "--uri", entry.thumbnail_uri]
        try:
            data = run_exec(self._client, self._transport, argv, self._timeout,
                            MAX_THUMBNAIL_BYTES)
        except PhoneError as error:    # too big, too slow, the link gone: the fallback tells
            return f"thumbnail not read ({error})"
        return data if data else "the phone sent no thumbnail"

    def close(self) -> None:
        for future in self._asked.values():
            future.cancel()
        for _ in range(READERS):
            self._jobs.put(None)


def keep_lean(thumbnail: bytes | str, entry: MediaEntry | None, zone: str, target: Path,
              mtime: int, pull: PullOriginal, part: Path) -> tuple[int, str | None]:
    """Write the kept image of one photo at `target`: (bytes pulled for it beyond the
    thumbnail, why it fell back or None). Raises ShrinkError when neither source makes an
    image, PhoneError from the pull, OSError from writing."""
    taken = entry.datetaken_ms if entry is not None else None
    reason = thumbnail if isinstance(thumbnail, str) else None
    if reason is None:
        try:
            _write(target, lean_jpeg(thumbnail, taken, zone, MIN_SHORT_SIDE), mtime)
            return 0, None
        except ShrinkError as error:
            reason = f"thumbnail unusable: {error}"
    try:
        received = pull(part)
        image = lean_jpeg(part, taken, zone)
    finally:
        remove_quietly(part)
    _write(target, image, mtime)
    return received, reason


def _write(target: Path, data: bytes, mtime: int) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.utime(tmp, (mtime, mtime))
    write_atomically(target, write)
