"""Phone sync on a thread of its own, for the window: it reports progress as one status line
and flags the gallery as changed whenever photos arrive, so the index can pick them up."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from device.phone_sync import DEFAULT_ADB_PORT, DEFAULT_FOLDERS, SyncLimitError, SyncReport, sync_phone
from sketch_search.common.errors import SketchSearchError

log = logging.getLogger(__name__)

# Photos pulled between two "gallery changed" signals: the index catches up in steps, not per file.
SIGNAL_EVERY = 50


class BackgroundSync:
    def __init__(self, dest: Path, serial: str | None = None,
                 folders: Sequence[str] = DEFAULT_FOLDERS, adb_port: int = DEFAULT_ADB_PORT):
        self.dest, self.serial, self.folders, self.adb_port = dest, serial, list(folders), adb_port
        self.gallery_changed = threading.Event()
        self.done = threading.Event()
        self.report: SyncReport | None = None
        self.error: str | None = None
        self._status = "phone: connecting"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="phone-sync", daemon=True)

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def _say(self, text: str) -> None:
        with self._lock:
            self._status = text

    def start(self) -> None:
        self._thread.start()

    def _progress(self, done: int, total: int, device_path: str) -> None:
        self._say(f"phone: pulling {done}/{total}")
        if done and done % SIGNAL_EVERY == 0:
            self.gallery_changed.set()

    def _run(self) -> None:
        try:
            self.report = sync_phone(self.dest, self.serial, self.folders, adb_port=self.adb_port,
                                     progress=self._progress, show_progress=False)
            pulled = len(self.report.pulled)
            self._say(f"phone {self.report.model}: {pulled} new, {self.report.unchanged} unchanged")
            if pulled or self.report.deleted:
                self.gallery_changed.set()
        except SyncLimitError as exc:     # a listing cut short: what it copied is in the gallery
            self.report = exc.report
            if exc.report.pulled:
                self.gallery_changed.set()
            self.error = str(exc)
            self._say(f"phone: {exc}")
            log.warning("phone sync: %s", exc)
        except SketchSearchError as exc:  # no phone, not authorised, cable pulled...
            self.error = str(exc)
            self._say(f"phone: {exc}")
            log.warning("phone sync: %s", exc)
        except Exception as exc:  # a bug: keep the traceback in the log, keep the window alive
            self.error = f"{type(exc).__name__}: {exc}"
            self._say(f"phone: sync failed ({self.error})")
            log.exception("phone sync failed")
        finally:
            self.done.set()
