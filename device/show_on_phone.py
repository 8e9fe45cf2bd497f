"""Open a synced photo in the phone's own gallery viewer, over ADB.

The sync record knows where each synced photo lies on the phone and which phone (its own
serial). Showing it: pick that phone among the connected ones, wake its screen, find the
photo's media-store id (asking the media scanner when the store does not know the file yet) and
start a VIEW intent on its content:// URI; the file:// URI only when the store still has no
entry. Every word reaching the phone's shell is quoted for sh (phone_shell.shell_line), the
media query's where clause for SQL as well, the file:// URI is percent-encoded.

`show_on_phone` never raises for a phone problem: it answers a ShowResult whose `message` is
one line for the status bar and whose `reason` is a ShowReason (the word the window's `command`
event carries). It blocks (about a second
against a phone that answers), so a window calls it from a thread of its own.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from ppadb.client import Client
from ppadb.device import Device

from device.adb_server import DEFAULT_ADB_PORT, connect_server
from device.media_store import MEDIA_URI, SDCARD, STORAGE
from device.phone_errors import PhoneError
from device.phone_owner import find_owner, synced_record
from device.phone_shell import run_shell
from device.sync_protocol import SyncConnection
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

SCAN_ACTION = "android.intent.action.MEDIA_SCANNER_SCAN_FILE"
SCAN_WAIT_S = 1.5                  # the scanner works after the broadcast returns: poll this long
SCAN_POLL_S = 0.25
_MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".heic": "image/heic",
         ".heif": "image/heif", ".webp": "image/webp", ".bmp": "image/bmp", ".gif": "image/gif",
         ".tif": "image/tiff", ".tiff": "image/tiff"}
_ROW = re.compile(r"^Row: \d+ _id=(\d{1,18})$", re.MULTILINE)
# Older phones print these in `dumpsys window` instead of KeyguardServiceDelegate's lines.
_LEGACY_LOCKED = ("mShowingLockscreen=true", "mDreamingLockscreen=true")


class ShowReason(StrEnum):
    """Why a photo was not shown on the phone."""

    NO_PHONE = "no-phone"                # not connected, offline, or the link lost
    NOT_FROM_PHONE = "not-from-phone"    # no sync brought the photo
    UNAUTHORIZED = "unauthorized"        # the phone has not allowed this computer
    LOCKED = "locked"                    # shown, behind the lock screen
    NOT_FOUND = "not-found"              # no longer on the phone
    REFUSED = "refused"                  # the phone would not open it


@dataclass(frozen=True)
class PhoneOrigin:
    serial: str        # the phone's own serial (ro.serialno); an old sync's transport serial
    device_path: str   # where the photo lies on the phone, e.g. /sdcard/DCIM/Camera/x.jpg


@dataclass(frozen=True)
class ShowResult:
    ok: bool
    reason: ShowReason | None
    message: str        # one line for the status bar


class _NotShown(Exception):
    def __init__(self, reason: ShowReason, message: str):
        super().__init__(message)
        self.reason = reason


def phone_origin(gallery: Path, photo: Path) -> PhoneOrigin | None:
    """Which phone `photo` (a file in `gallery`) came from and its path there, from the sync
    record; None when no sync brought it (or the record's path is not one a phone could hold)."""
    found = synced_record(gallery, photo)
    if found is None:
        return None
    serial, record = found
    return PhoneOrigin(serial=serial, device_path=record.device_path)


def show_on_phone(gallery: Path, photo: Path, adb_port: int = DEFAULT_ADB_PORT,
                  serial: str | None = None, timeout: float = 5.0) -> ShowResult:
    """Open `photo` in the viewer of the phone it came from. `serial`: only that phone (adb's
    name for it, or its own serial). `timeout`: seconds for each request to the phone."""
    name = display_name(Path(photo).name)
    origin = phone_origin(gallery, photo)
    if origin is None:
        return ShowResult(False, ShowReason.NOT_FROM_PHONE, f"{name} did not come from a phone sync")
    try:
        client = connect_server(adb_port)
        transport, model = _find_phone(client, origin, serial, timeout)
        return _show(client, transport, model, origin, name, timeout)
    except _NotShown as not_shown:
        return ShowResult(False, not_shown.reason, display_name(str(not_shown)))
    except (PhoneError, OSError) as error:   # the adb server gone, the link lost mid-way, ...
        log.info("show on phone: %s", error)
        return ShowResult(False, ShowReason.NO_PHONE, display_name(f"phone: {error}".splitlines()[0]))


def _find_phone(client: Client, origin: PhoneOrigin, serial: str | None,
                timeout: float) -> tuple[str, str]:
    """(transport serial, model) of the connected phone the photo came from."""
    phone, phones = find_owner(client, origin.serial, serial, timeout)
    if phone is not None:
        return phone.serial, phone.model
    waiting = [p for p in phones if p.state == "unauthorized"]
    if waiting:
        raise _NotShown(ShowReason.UNAUTHORIZED, f"phone {waiting[0].serial} has not authorised this "
                        "computer: unlock it and accept 'Allow USB debugging?'")
    offline = [p for p in phones if p.state == "offline"]
    if offline:
        raise _NotShown(ShowReason.NO_PHONE, f"phone {offline[0].serial} is offline: unlock it, "
                        "reconnect it and try again")
    if not phones:
        raise _NotShown(ShowReason.NO_PHONE, f"no phone connected: connect phone {origin.serial} by "
                        "USB or Wi-Fi to show the photo there")
    raise _NotShown(ShowReason.NO_PHONE, f"phone {origin.serial}, where the photo came from, is not "
                    "connected")


def _show(client: Client, transport: str, model: str, origin: PhoneOrigin, name: str,
          timeout: float) -> ShowResult:
    run_shell(client, transport, ["input", "keyevent", "KEYCODE_WAKEUP"], timeout)
    locked = _keyguard_showing(run_shell(client, transport, ["dumpsys", "window", "policy"],
                                         timeout))
    if not _exists_on_phone(client, transport, origin.device_path, timeout):
        raise _NotShown(ShowReason.NOT_FOUND, f"{name} is no longer on the phone (deleted or moved "
                        "there since the sync)")
    storage_path = _storage_path(origin.device_path)
    media_id = _media_id(client, transport, storage_path, timeout)
    if media_id is None:
        # The store does not know it yet: ask the scanner, which works after the broadcast.
        run_shell(client, transport, ["am", "broadcast", "-a", SCAN_ACTION, "-d",
                                      _file_uri(storage_path)], timeout)
        give_up = time.monotonic() + SCAN_WAIT_S
        media_id = _media_id(client, transport, storage_path, timeout)
        while media_id is None and time.monotonic() < give_up:
            time.sleep(SCAN_POLL_S)
            media_id = _media_id(client, transport, storage_path, timeout)
    uri = f"{MEDIA_URI}/{media_id}" if media_id is not None else _file_uri(storage_path)
    # -W waits until the viewer shows; behind a lock screen it would wait for the unlock.
    wait = [] if locked else ["-W"]
    answer = run_shell(client, transport, ["am", "start", *wait, "-a",
                                           "android.intent.action.VIEW", "-d", uri, "-t",
                                           _mime(origin.device_path)], timeout)
    refusal = _refusal(answer)
    if refusal is not None:
        raise _NotShown(ShowReason.REFUSED, f"the phone would not open {name}: {refusal}")
    phone = model.replace("_", "-") or "the phone"
    if locked:
        return ShowResult(False, ShowReason.LOCKED, f"{phone} is locked: unlock it to see {name}")
    return ShowResult(True, None, f"showing {name} on {phone}")


def _keyguard_showing(dump: str) -> bool:
    """Whether `dumpsys window policy` says the lock screen shows (Android 5 to 15)."""
    lines = [line.strip() for line in dump.splitlines()]
    for index, line in enumerate(lines):
        if line == "KeyguardServiceDelegate":
            for detail in lines[index + 1:index + 4]:
                if detail.startswith("showing="):
                    return detail == "showing=true"
    return any(marker in dump for marker in _LEGACY_LOCKED)


def _exists_on_phone(client: Client, transport: str, device_path: str, timeout: float) -> bool:
    with SyncConnection.open(Device(client, transport), timeout) as connection:
        entry = connection.stat(device_path)
    return entry.exists and not entry.is_dir


def _media_id(client: Client, transport: str, storage_path: str, timeout: float) -> str | None:
    where = "_data='" + storage_path.replace("'", "''") + "'"      # an SQL string literal
    answer = run_shell(client, transport, ["content", "query", "--uri", MEDIA_URI,
                                           "--projection", "_id", "--where", where], timeout)
    if "Exception" in answer or answer.startswith("Error"):
        raise _NotShown(ShowReason.REFUSED, "the phone's media store refused the query: "
                        + _first_line(answer))
    found = _ROW.search(answer)
    return found.group(1) if found else None


def _refusal(answer: str) -> str | None:
    """am start's own complaint ("Error: Activity not started, ..."), or None."""
    for line in answer.splitlines():
        if line.startswith("Error") or "Exception" in line:
            return _first_line(line)
    return None


def _storage_path(device_path: str) -> str:
    if device_path == SDCARD or device_path.startswith(SDCARD + "/"):
        return STORAGE + device_path[len(SDCARD):]
    return device_path


def _file_uri(path: str) -> str:
    return "file://" + quote(path, safe="/")


def _mime(device_path: str) -> str:
    return _MIME.get(os.path.splitext(device_path)[1].lower(), "image/*")


def _first_line(text: str, limit: int = 160) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "no reason given")
    return display_name(line[:limit])
