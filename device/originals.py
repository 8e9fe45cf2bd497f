"""The phone's original of a photo kept lean in the gallery, pulled when the photo is opened.

A lean sync keeps a small image per phone photo and records it as lean (sync_state.py). Opening
such a photo large pulls the original over adb's sync service (RECV, as the sync does: bounded
by the size the record lists, every read under a timeout and a minimum rate) into the
originals cache (originals_cache.py); a photo the sync copied whole (`--originals`, or a
gallery synced before lean syncs) is never pulled. The caller gives a `cancelled` test,
checked before the pull and at every piece received, so a photo left is not pulled on.

Nothing is sent to the phone's shell but `getprop ro.serialno` (to know which connected
phone a photo came from), through phone_shell's quoting. Every failure is an
OriginalUnavailable with a fixed `reason` and a one-line message: the kept image stays.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ppadb.client import Client
from ppadb.device import Device

from device.adb_server import DEFAULT_ADB_PORT, connect_server
from device.originals_cache import OriginalsCache, PhoneFile
from device.phone_errors import PhoneConnectionLost, PhoneError, PhoneProtocolError
from device.phone_owner import find_owner, synced_record
from device.show_on_phone import ShowReason
from device.sync_protocol import SyncConnection
from sketch_search.common.files import is_photo_name
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

PULL_TIMEOUT_S = 10.0      # seconds any one read may wait (the rate floor bounds the rest)


class OriginalUnavailable(Exception):
    """The original cannot be had now. `reason`: a phone's ShowReason (no phone, unauthorized,
    refused) or gone | changed | too-big | disk; `message`: one line for the status bar."""

    def __init__(self, reason: ShowReason | str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class PullCancelled(Exception):
    """The person moved on: the pull stopped and left nothing behind."""


def lean_original(gallery: Path | None, photo: Path) -> PhoneFile | None:
    """The phone file behind `photo` when the sync kept it lean; None for a photo no sync
    brought, one synced whole, or a record no phone could have written."""
    found = synced_record(gallery, photo) if gallery is not None else None
    if found is None:
        return None
    serial, record = found
    if not record.lean or not is_photo_name(PurePosixPath(record.device_path).name) or record.size <= 0:
        return None
    return PhoneFile(serial, record.device_path, record.size, record.mtime)


def pull_original(photo: PhoneFile, cache: OriginalsCache, cancelled: Callable[[], bool], *,
                  adb_port: int = DEFAULT_ADB_PORT, serial: str | None = None,
                  timeout: float = PULL_TIMEOUT_S) -> Path:
    """Pull `photo`'s original from its phone into `cache`; returns the cached file.

    `serial`: only that phone (adb's name for it or its own serial), as for the sync. Raises
    OriginalUnavailable (the original cannot be had now) or PullCancelled.
    """
    name = display_name(PurePosixPath(photo.device_path).name)
    if not cache.fits(photo):
        raise OriginalUnavailable("too-big", f"the original of {name} ({photo.size} bytes) is "
                                  f"larger than the originals cache ({cache.max_bytes} bytes)")
    if cancelled():
        raise PullCancelled()
    try:
        client = connect_server(adb_port)
        transport = _transport(client, photo.serial, serial, timeout)
        stored = cache.store(photo, lambda tmp: _receive(client, transport, photo, tmp, timeout,
                                                         cancelled))
    except (OriginalUnavailable, PullCancelled):
        raise
    except PhoneProtocolError as error:
        raise OriginalUnavailable(ShowReason.REFUSED, f"the phone sent a broken copy of {name}: "
                                  f"{error}") from None
    except PhoneError as error:      # the adb server gone, the link lost, the phone vanished
        raise OriginalUnavailable(ShowReason.NO_PHONE, display_name(
            f"the original of {name} stays on the phone: {error}".splitlines()[0])) from None
    except OSError as error:
        raise OriginalUnavailable("disk", f"cannot keep the original of {name} in "
                                  f"{cache.folder}: {error.strerror or error}") from None
    assert stored is not None      # cache.fits(photo) held
    return stored


def _receive(client: Client, transport: str, photo: PhoneFile, tmp: Path, timeout: float,
             cancelled: Callable[[], bool]) -> None:
    def on_data(_count: int) -> None:
        if cancelled():
            raise PullCancelled()

    name = display_name(PurePosixPath(photo.device_path).name)
    with open(tmp, "wb") as out, SyncConnection.open(Device(client, transport), timeout) as sync:
        try:
            received = sync.receive(photo.device_path, out, on_data, max_bytes=photo.size)
        except (PhoneConnectionLost, PhoneProtocolError):
            raise
        except PhoneError as error:               # FAIL: not there, not readable
            raise OriginalUnavailable("gone", display_name(
                f"the original of {name} is no longer on the phone ({error})"[:200])) from None
    if received != photo.size:
        raise OriginalUnavailable("changed", f"{name} changed on the phone since the sync "
                                  f"({received} bytes, {photo.size} listed): sync again")


def _transport(client: Client, owner: str, chosen: str | None, timeout: float) -> str:
    """adb's serial of the connected phone `owner`, among `chosen` only when given."""
    phone, phones = find_owner(client, owner, chosen, timeout)
    if phone is not None:
        return phone.serial
    if any(p.state == "unauthorized" for p in phones):
        raise OriginalUnavailable(ShowReason.UNAUTHORIZED, "the phone has not authorised this computer: "
                                  "unlock it and accept 'Allow USB debugging?' to see originals")
    raise OriginalUnavailable(ShowReason.NO_PHONE, f"phone {display_name(owner)} is not connected: "
                              "showing the small copy kept in the gallery")


class QuietNotes:
    """Which failures to tell the person about: each once, until an original arrives again
    (an unplugged phone says so at the first photo opened, not at every one)."""

    def __init__(self):
        self._said: set[str] = set()

    def should_say(self, unavailable: OriginalUnavailable, photo: PhoneFile) -> bool:
        per_photo = unavailable.reason in ("gone", "changed", ShowReason.REFUSED, "too-big")
        key = f"{unavailable.reason}:{photo.device_path}" if per_photo else unavailable.reason
        if key in self._said:
            return False
        self._said.add(key)
        return True

    def clear(self) -> None:
        self._said.clear()
