"""What the phone's media store knows of its photos: id and capture time, by device path.

One listing query, `content query --uri content://media/external/images/media --projection
_id:datetaken:_data` (no --where), read over adbd's exec: service and parsed strictly: a row is
`Row: N _id=<digits>, datetaken=<digits or NULL>, _data=<path>` (the path last, so commas in a
name cannot shift the columns); any other line is ignored, and a photo without a row falls back
to the pulled original. The reply is bounded in bytes and time (the phone is not trusted).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ppadb.client import Client

from device.phone_errors import PhoneError
from device.phone_shell import run_exec, run_shell

log = logging.getLogger(__name__)

MEDIA_URI = "content://media/external/images/media"
# /sdcard is a link; the media store records files under the storage's real path (_data).
STORAGE = "/storage/emulated/0"
SDCARD = "/sdcard"
MAX_LISTING_BYTES = 64 * 1024 * 1024   # ~300 bytes a row: far above a phone of 100,000 photos
_ROW = re.compile(r"Row: \d+ _id=(\d{1,18}), datetaken=(NULL|-?\d{1,18}), _data=(/[^\n]*)")
_TIMEZONE = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}")


@dataclass(frozen=True)
class MediaEntry:
    media_id: int
    datetaken_ms: int | None     # capture time, ms since the epoch (UTC); None: unknown

    @property
    def thumbnail_uri(self) -> str:
        return f"{MEDIA_URI}/{self.media_id}/thumbnail"


def listing_argv() -> list[str]:
    return ["content", "query", "--uri", MEDIA_URI, "--projection", "_id:datetaken:_data"]


def parse_listing(text: str) -> dict[str, MediaEntry]:
    """Device path (/sdcard/...) -> its entry, from the listing query's answer."""
    entries: dict[str, MediaEntry] = {}
    for line in text.splitlines():
        match = _ROW.fullmatch(line.rstrip("\r"))
        if match is None:
            continue
        data = match.group(3)
        if data.startswith(STORAGE + "/"):
            data = SDCARD + data[len(STORAGE):]
        taken = None if match.group(2) == "NULL" else int(match.group(2))
        entries[data] = MediaEntry(int(match.group(1)), taken)
    return entries


def media_entries(client: Client, serial: str, timeout: float) -> dict[str, MediaEntry]:
    """The media store's photos on phone `serial`; {} (every photo falls back) when it gives
    none. Raises PhoneConnectionLost when the link goes."""
    reply = run_exec(client, serial, listing_argv(), timeout, MAX_LISTING_BYTES)
    entries = parse_listing(reply.decode("utf-8", errors="replace"))
    if not entries:
        log.info("phone %s: its media store lists no photos; each is pulled and shrunk", serial)
    return entries


def phone_timezone(client: Client, serial: str, timeout: float) -> str:
    """The phone's time zone (persist.sys.timezone, e.g. Europe/Berlin); "UTC" when unknown."""
    try:
        answer = run_shell(client, serial, ["getprop", "persist.sys.timezone"], timeout).strip()
    except PhoneError as error:
        log.info("phone %s: no time zone (%s); capture times are written in UTC", serial, error)
        return "UTC"
    return answer if _TIMEZONE.fullmatch(answer) else "UTC"
