"""Which connected phone a synced photo came from, and where the photo lies in the gallery as the
sync record keys it: one answer for "show on phone" and for pulling a lean photo's original."""
from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path

from ppadb.client import Client

from device.adb_server import PhoneInfo, list_phones
from device.phone_errors import PhoneError
from device.phone_shell import own_serial
from device.sync_protocol import MAX_PATH_BYTES
from device.sync_state import SyncedPhoto, find_synced
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

MAX_SERIAL_CHARS = 255


def synced_record(gallery: Path, photo: Path) -> tuple[str, SyncedPhoto] | None:
    """(phone serial, sync record) of `photo`, a file in `gallery`; None when no sync brought it,
    or when the record holds a path or serial no phone could have written (said in the log)."""
    relative = gallery_relative(Path(gallery), Path(photo))
    found = find_synced(Path(gallery), relative) if relative is not None else None
    if found is None:
        return None
    serial, record = found
    if not plausible_device_path(record.device_path) or not serial or len(serial) > MAX_SERIAL_CHARS:
        log.warning("the sync record of %s holds an unusable phone path: %s",
                    display_name(relative), display_name(record.device_path))
        return None
    return found


def plausible_device_path(path: str) -> bool:
    """Whether a recorded phone path is one a phone could hold: absolute, short enough for adbd,
    no control characters."""
    return (path.startswith("/") and len(path.encode("utf-8", errors="replace")) <= MAX_PATH_BYTES
            and not any(unicodedata.category(char) in ("Cc", "Cs") for char in path))


def find_owner(client: Client, owner: str, chosen: str | None,
               timeout: float) -> tuple[PhoneInfo | None, list[PhoneInfo]]:
    """The connected phone that is `owner` (its own serial, or the transport serial an older sync
    recorded), among `chosen` only (adb's name for it or its own serial) when given; and the
    phones looked at, so the caller can say why none was (unauthorised, offline, none)."""
    phones = list_phones(client)
    own = {p.serial: _own(client, p.serial, timeout) for p in phones if p.state == "device"}
    if chosen is not None:
        phones = [p for p in phones if chosen in (p.serial, own.get(p.serial))]
    for phone in phones:
        if phone.state == "device" and owner in (phone.serial, own[phone.serial]):
            return phone, phones
    return None, phones


def _own(client: Client, transport: str, timeout: float) -> str | None:
    try:
        return own_serial(client, transport, timeout)
    except PhoneError as error:
        log.info("phone %s: no serial number (%s)", transport, error)
        return None


def gallery_relative(gallery: Path, photo: Path) -> str | None:
    """`photo`'s path inside `gallery`, '/'-separated, as the sync record keys it; None outside."""
    try:
        return Path(os.path.abspath(photo)).relative_to(os.path.abspath(gallery)).as_posix()
    except ValueError:
        try:                            # one of them reached through a symbolic link
            return Path(photo).resolve().relative_to(Path(gallery).resolve()).as_posix()
        except (ValueError, OSError):
            return None
