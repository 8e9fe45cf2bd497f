"""Phone sync on a thread of its own, for the window: it reports progress as one status line
and flags the gallery as changed whenever photos arrive, so the index can pick them up.

After the first sync it keeps looking (every RESYNC_SECONDS, an incremental listing that
transfers only new photos), so a photo taken while the program runs is searched; a phone
unplugged and plugged in again is picked up without a restart. What to say and how long to
wait is decided by ResyncPlan, a plain object; the thread only carries it out, waiting on a
stop Event, and is a daemon: it never delays the program's end.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device.phone_sync import DEFAULT_ADB_PORT, DEFAULT_FOLDERS, SyncLimitError, SyncReport, sync_phone
from sketch_search.common.errors import SketchSearchError

log = logging.getLogger(__name__)

# Photos pulled between two "gallery changed" signals: the index catches up in steps, not per file.
SIGNAL_EVERY = 50
RESYNC_SECONDS = 15.0


@dataclass(frozen=True)
class Step:
    """What to do after one sync attempt."""
    status: str           # the status line
    signal: bool          # photos arrived (or left): the index looks again
    wait: float | None    # seconds until the next look; None: look no more


class ResyncPlan:
    """The live re-sync's decisions, thread-free: after each attempt, what to say, whether the
    gallery changed and when to look again."""

    def __init__(self, interval: float = RESYNC_SECONDS):
        self.interval = interval
        self.connected: bool | None = None     # None: not tried yet

    def synced(self, report: SyncReport) -> Step:
        new = len(report.pulled)
        back = self.connected is False
        self.connected = True
        phone = report.model or "phone"
        text = (f"phone {phone}: reconnected, {new} new" if back
                else f"phone {phone}: {new} new, {report.unchanged} unchanged")
        return Step(text, bool(new or report.deleted), self.interval)

    def failed(self) -> Step:
        """No sync this time (no phone, unplugged, not authorised...): keep looking. The status
        line is short enough to read beside the search's; why, and what to do, is in the log."""
        was = self.connected
        self.connected = False
        return Step("phone unplugged, looking" if was else "no phone yet, looking", False,
                    self.interval)

    def stopped(self, message: str, copied: bool) -> Step:
        """A sync that must not be repeated as it is (a listing over the limits, a bug)."""
        self.connected = False
        return Step(f"phone: {message}", copied, None)


class BackgroundSync:
    def __init__(self, dest: Path, serial: str | None = None,
                 folders: Sequence[str] = DEFAULT_FOLDERS, adb_port: int = DEFAULT_ADB_PORT,
                 originals: bool = False, interval: float = RESYNC_SECONDS):
        self.dest, self.serial, self.folders, self.adb_port = dest, serial, list(folders), adb_port
        self.originals = originals
        self.plan = ResyncPlan(interval)
        self.gallery_changed = threading.Event()
        self.done = threading.Event()          # the first sync attempt has ended
        self.report: SyncReport | None = None
        self.error: str | None = None
        self.syncs = 0                         # attempts made
        self._stop = threading.Event()
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

    def stop(self) -> None:
        """Look no more; returns at once (a sync under way ends with its own bounds)."""
        self._stop.set()

    def _progress(self, done: int, total: int, device_path: str) -> None:
        if total:
            self._say(f"phone: pulling {done}/{total}")
        if done and done % SIGNAL_EVERY == 0:
            self.gallery_changed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            step = self._attempt()
            self.syncs += 1
            self._say(step.status)
            if step.signal:
                self.gallery_changed.set()
            self.done.set()
            if step.wait is None or self._stop.wait(step.wait):
                return

    def _attempt(self) -> Step:
        try:
            self.report = sync_phone(self.dest, self.serial, self.folders, adb_port=self.adb_port,
                                     progress=self._progress, show_progress=False,
                                     originals=self.originals)
            self.error = None
            return self.plan.synced(self.report)
        except SyncLimitError as exc:     # a listing cut short: what it copied is in the gallery
            self.report, self.error = exc.report, str(exc)
            log.warning("phone sync: %s", exc)
            return self.plan.stopped(str(exc), bool(exc.report.pulled))
        except SketchSearchError as exc:  # no phone, not authorised, cable pulled...
            self.error = str(exc)
            # Said once when the phone goes; the looking that follows only at info level.
            log.log(logging.INFO if self.plan.connected is False else logging.WARNING,
                    "phone sync: %s", exc)
            return self.plan.failed()
        except Exception as exc:  # a bug: keep the traceback in the log, keep the window alive
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("phone sync failed")
            return self.plan.stopped(f"sync failed ({self.error})", False)
