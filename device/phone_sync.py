"""Copy a phone's new and changed photos into the gallery folder, safely and incrementally.

Layout: <dest>/<phone serial>/<folder on the phone>/<name>, e.g.
gallery/R5CW12345/DCIM/Camera/IMG_0001.jpg, so two phones never overwrite each other. The serial
is the phone's own (ro.serialno), so the same phone over USB and over Wi-Fi (where adb names it
IP:PORT, new each session) is one folder; a folder a sync named the old way, by IP:PORT, stays
that phone's folder (sync_state.py). A photo is copied only when it is new or its size or time
changed since the last sync, newest first (by the phone's time), the order the index takes too.
Each copy goes to a hidden temporary file in the same folder, is flushed to disk, checked
against the listed size and then renamed over the final name: a pulled cable leaves no
half-written photo, and the next sync picks up where this one stopped.

The phone is not trusted (SyncLimits): no file grows past its listed size, the listing is
bounded (entries per folder, entries in all, folders, depth) and a limit hit ends the sync with
one line; names that could escape the gallery, carry control characters or not fit a file name
are refused, and a device path too long for the protocol is skipped, not fatal.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from device.adb_server import DEFAULT_ADB_PORT, choose_phone, connect_server
from device.lean_sync import READ_AHEAD, ThumbnailReader, keep_lean, lean_names
from device.media_store import SDCARD, MediaEntry, media_entries, phone_timezone
from device.phone_errors import PhoneConnectionLost, PhoneError, PhoneProtocolError
from device.phone_shell import own_serial
from device.shrink import ShrinkError
from device.sync_protocol import (
    DEFAULT_MIN_RATE,
    DEFAULT_TIMEOUT_S,
    MAX_PATH_BYTES,
    RemoteEntry,
    SyncConnection,
)
from device.sync_state import SyncedPhoto, SyncState
from sketch_search.common.errors import GalleryError
from sketch_search.common.files import PHOTO_EXTENSIONS, remove_quietly
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

DEFAULT_FOLDERS = ("DCIM/Camera",)
PART_PREFIX = ".sync-"             # temporary copies: .sync-<hash of the name>.part, hidden
PART_SUFFIX = ".part"
MAX_NAME_BYTES = 255               # a file name on ext4, APFS, NTFS (in UTF-8 bytes here)
REFUSED_SHOWN = 20                 # refused names the summary lists one by one
# Android's MediaStore marks files in the bin and files still being written with these prefixes.
_SKIPPED_PREFIXES = {".trashed-": "in the phone's trash", ".pending-": "still being written"}
_SDCARD_ALIASES = ("/sdcard/", "/storage/emulated/0/", "/storage/self/primary/", "sdcard/")

ProgressCallback = Callable[[int, int, str], None]
"""progress(files_done, files_to_copy, device_path): before each copy, and (n, n, "") at the end."""


@dataclass(frozen=True)
class SyncLimits:
    """What a phone may make one sync do: far above a real phone's gallery, far below a
    broken or hostile phone's endless listing."""
    entries_per_folder: int = 100_000     # entries in one folder's listing
    total_entries: int = 500_000          # entries in all listings of one sync
    folders: int = 2_000                  # folders listed in one sync
    depth: int = 16                       # folder levels below a synced folder
    min_rate: float = DEFAULT_MIN_RATE    # bytes/s a reply keeps up after its first --timeout s


class SyncLimitError(PhoneError):
    """A listing limit was hit: nothing more was listed; `report` holds what was copied."""

    def __init__(self, message: str, report: SyncReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class RemotePhoto:
    device_path: str               # /sdcard/DCIM/Camera/IMG_0001.jpg
    parts: tuple[str, ...]         # ("DCIM", "Camera", "IMG_0001.jpg"), each checked safe
    size: int
    mtime: int


@dataclass
class SyncReport:
    serial: str                                    # the phone's own serial (ro.serialno)
    model: str
    folder: Path                                   # where this phone's photos live
    transport: str = ""                            # adb's name for it now: USB serial or IP:PORT
    pulled: list[Path] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (device path, reason)
    bytes: int = 0                                 # transferred: thumbnails and originals
    kept_bytes: int = 0                            # written into the gallery
    fell_back: list[tuple[str, str]] = field(default_factory=list)  # (device path, why)

    def to_dict(self) -> dict:
        return {"serial": self.serial, "transport": self.transport or self.serial,
                "model": self.model, "folder": str(self.folder),
                "pulled": [str(p) for p in self.pulled], "unchanged": self.unchanged,
                "deleted": [str(p) for p in self.deleted],
                "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped],
                "fell_back": [{"name": name, "reason": reason} for name, reason in self.fell_back],
                "bytes": self.bytes, "kept_bytes": self.kept_bytes}

    def summary(self) -> str:
        over = f" over {self.transport}" if self.transport not in ("", self.serial) else ""
        line = (f"{self.model or 'phone'} {self.serial}{over}: {len(self.pulled)} pulled "
                f"({_human_bytes(self.bytes)} transferred, {_human_bytes(self.kept_bytes)} "
                f"kept), {self.unchanged} unchanged, "
                f"{len(self.deleted)} deleted, {len(self.skipped)} skipped -> {self.folder}")
        reasons: dict[str, int] = {}
        for _, reason in self.skipped:
            reasons[reason] = reasons.get(reason, 0) + 1
        details = [f"  skipped {count}: {reason}" for reason, count in sorted(reasons.items())]
        if self.fell_back:
            details.append(f"  {len(self.fell_back)} without a usable phone thumbnail: the "
                           "original pulled and shrunk (see --json)")
        # Refused names may mean a hostile or broken phone: name them (the first ones).
        refused = [(name, reason) for name, reason in self.skipped if reason.startswith("unsafe")]
        details += [f"  refused {name}: {reason}" for name, reason in refused[:REFUSED_SHOWN]]
        if len(refused) > REFUSED_SHOWN:
            details.append(f"  refused {len(refused) - REFUSED_SHOWN} more (see --json)")
        return "\n".join([line, *details])


def sync_phone(dest: str | os.PathLike, serial: str | None = None,
               folders: Sequence[str] = DEFAULT_FOLDERS, mirror: bool = False,
               adb_port: int = DEFAULT_ADB_PORT, progress: ProgressCallback | None = None, *,
               timeout: float = DEFAULT_TIMEOUT_S, show_progress: bool = True,
               limits: SyncLimits = SyncLimits(), originals: bool = False) -> SyncReport:
    """Bring `dest` up to date with the phone's photos in `folders` (relative to /sdcard).

    Lean (the default): one small image per photo (lean_sync.py); `originals`: byte-for-byte
    copies. Photos kept as originals by an earlier sync stay originals either way.

    Photos deleted on the phone stay in `dest` unless `mirror` is set. Raises a
    SketchSearchError subclass with a one-line message for anything the user must fix; a
    listing over `limits` raises SyncLimitError after copying the photos of the folders
    listed in full before it (and deleting nothing).
    """
    wanted, gallery = _wanted_folders(folders), _gallery_path(dest)
    client = connect_server(adb_port)
    device, phone = choose_phone(client, serial)
    identity = _identity(client, phone.serial, timeout)
    _make_folder(gallery)
    report = SyncReport(serial=identity, model=phone.model, folder=gallery,
                        transport=phone.serial)
    with SyncState(gallery) as state:
        session = _Session(device, timeout, limits.min_rate)
        try:
            photos, found, limit_hit = _list_photos(session, wanted, report, limits)
            report.folder = gallery / _phone_folder(state, identity, phone.serial, photos)
            link = _PhoneLink(client, phone.serial, timeout, originals)
            _copy_changed(session, photos, gallery, report, state, progress, show_progress, link)
            if mirror and limit_hit is None:
                _remove_deleted(photos, found, wanted, gallery, report, state)
        finally:
            session.close()
    log.info(report.summary())
    if limit_hit is not None:
        raise SyncLimitError(
            f"stopped listing phone {report.serial}: {limit_hit}; {len(report.pulled)} new "
            "photos copied from the folders listed before it, nothing deleted: sync fewer or "
            "smaller folders, or check the phone", report)
    return report


def _wanted_folders(folders: Sequence[str]) -> list[tuple[str, ...]]:
    wanted = list(dict.fromkeys(normalise_folder(f) for f in folders))
    if not wanted:
        raise PhoneError("no folder to sync: name one under /sdcard, e.g. DCIM/Camera")
    return wanted


def _gallery_path(dest: str | os.PathLike) -> Path:
    gallery = Path(dest).expanduser()
    if gallery.exists() and not gallery.is_dir():
        raise GalleryError(f"{gallery} exists and is not a folder: give a folder as the "
                           "gallery")
    return gallery


def _identity(client, transport: str, timeout: float) -> str:
    """The phone's own serial; its transport serial when the shell gives none."""
    try:
        serialno = own_serial(client, transport, min(timeout, 10.0))
    except PhoneError as error:
        log.warning("phone %s: cannot read its own serial (%s); naming it %s", transport,
                    error, transport)
        return transport
    return serialno or transport


def _phone_folder(state: SyncState, identity: str, transport: str,
                  photos: dict[str, RemotePhoto]) -> str:
    """The phone's gallery subfolder: the one it has, else the one an old sync made for it
    under its transport serial (adopted with its rows: nothing is pulled again), else new."""
    folder = state.phone_folder(identity)
    listed = [(p.device_path, p.size, p.mtime) for p in photos.values()]
    for legacy in state.legacy_serials():
        if legacy in (identity, transport) or state.shares_photo(legacy, listed):
            state.adopt(legacy, identity)
            folder = folder or safe_serial(legacy)
    folder = folder or safe_serial(identity)
    state.set_phone_folder(identity, folder)
    return folder


def normalise_folder(text: str) -> tuple[str, ...]:
    """'DCIM/Camera' or '/sdcard/DCIM/Camera' -> ('DCIM', 'Camera'); refuses escapes."""
    path = text.strip().replace("\\", "/")
    for alias in _SDCARD_ALIASES:
        if path.startswith(alias):
            path = path[len(alias):]
            break
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if path.startswith("/") or not parts or ".." in parts or "\0" in path:
        raise PhoneError(f"folder {text!r} is not a folder under /sdcard: give one like "
                         "DCIM/Camera or Pictures/Screenshots")
    return parts


def safe_serial(serial: str) -> str:
    """A folder name for a phone: 127.0.0.1:5555 -> 127.0.0.1_5555."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", serial).lstrip(".")
    return name or "phone"


def unsafe_name_reason(name: str) -> str | None:
    """Why a name from the phone cannot be a file name inside the gallery, or None."""
    if name in ("", ".", ".."):
        return "unsafe name: refers to a folder, not a file"
    if "/" in name or "\\" in name:
        return "unsafe name: contains a path separator and could escape the gallery folder"
    if "\0" in name:
        return "unsafe name: contains a NUL character"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "unsafe name: contains a control character (newline, tab, escape...)"
    return None


class _Session:
    """The sync connection, reopened after the phone ends it (adbd does so after a FAIL)."""

    def __init__(self, device, timeout: float, min_rate: float = DEFAULT_MIN_RATE):
        self._device = device
        self._timeout = timeout
        self._min_rate = min_rate
        self._connection: SyncConnection | None = None

    @property
    def connection(self) -> SyncConnection:
        if self._connection is None:
            self._connection = SyncConnection.open(self._device, self._timeout, self._min_rate)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _make_folder(gallery: Path) -> None:
    try:
        gallery.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GalleryError(f"{gallery} is not a folder (or lies under a file): give a folder "
                           "as the gallery") from None
    except OSError as error:
        raise GalleryError(f"cannot create {gallery}: {error.strerror}") from None


class _LimitHit(Exception):
    """A listing went past one of the SyncLimits; the message says which."""


@dataclass
class _Listing:
    limits: SyncLimits
    photos: dict[str, RemotePhoto] = field(default_factory=dict)
    entries: int = 0
    folders: int = 0


def _list_photos(session: _Session, folders: Iterable[tuple[str, ...]], report: SyncReport,
                 limits: SyncLimits) -> tuple[dict[str, RemotePhoto], set[tuple[str, ...]],
                                              str | None]:
    """Every photo under the folders, by device path, the folders that exist, and which limit
    stopped the listing (None: listed in full). Only folders listed in full give photos."""
    listing = _Listing(limits)
    found: set[tuple[str, ...]] = set()
    for parts in folders:
        device_dir = "/".join((SDCARD, *parts))
        try:
            if not session.connection.stat(device_dir).is_dir:
                report.skipped.append((device_dir, "folder not found on the phone"))
                log.warning("%s is not a folder on phone %s", device_dir, report.serial)
                continue
            found.add(parts)
            _walk(session.connection, parts, 0, listing, report)
        except PhoneConnectionLost as error:
            raise PhoneConnectionLost(f"{error} while listing {device_dir} (nothing changed "
                                      "here): reconnect and unlock the phone, then sync "
                                      "again") from None
        except _LimitHit as hit:
            log.info("phone %s: %s", report.serial, hit)
            session.close()             # the rest of that reply is never read
            return listing.photos, found, str(hit)
    return listing.photos, found, None


def _walk(connection: SyncConnection, parts: tuple[str, ...], depth: int, listing: _Listing,
          report: SyncReport) -> None:
    limits = listing.limits
    device_dir = "/".join((SDCARD, *parts))
    listing.folders += 1
    if listing.folders > limits.folders:
        raise _LimitHit(f"more than {limits.folders} folders (the limit per sync)")
    photos: dict[str, RemotePhoto] = {}      # kept only once the folder is listed in full
    subfolders: list[tuple[str, ...]] = []
    for count, entry in enumerate(connection.list_dir(device_dir), 1):
        listing.entries += 1
        if count > limits.entries_per_folder:
            raise _LimitHit(f"more than {limits.entries_per_folder} entries in {device_dir} "
                            "(the limit per folder)")
        if listing.entries > limits.total_entries:
            raise _LimitHit(f"more than {limits.total_entries} entries in all (the limit per "
                            "sync)")
        name = _usable_name(entry, device_dir, report)
        if name is None:
            continue
        if entry.is_dir:
            if depth + 1 > limits.depth:
                raise _LimitHit(f"folders nested more than {limits.depth} deep in "
                                f"{'/'.join((SDCARD, *parts[:len(parts) - depth]))} "
                                "(the depth limit)")
            subfolders.append((*parts, name))
            continue
        reason = _not_a_photo_reason(name, entry)
        if reason is not None:
            report.skipped.append((f"{device_dir}/{display_name(entry.name)}", reason))
            continue
        photos[f"{device_dir}/{name}"] = RemotePhoto(f"{device_dir}/{name}", (*parts, name),
                                                     entry.size, entry.mtime)
    listing.photos.update(photos)
    for subfolder in subfolders:
        _walk(connection, subfolder, depth + 1, listing, report)


def _usable_name(entry: RemoteEntry, device_dir: str, report: SyncReport) -> str | None:
    """The entry's name when it can be a file or folder here; None (skipped, said why, or a
    hidden folder such as .thumbnails passed over) otherwise."""
    shown = f"{device_dir}/{display_name(entry.name)}"
    try:
        name = entry.name.decode("utf-8")
    except UnicodeDecodeError:
        report.skipped.append((shown, "name is not UTF-8"))
        return None
    unsafe = unsafe_name_reason(name)
    if unsafe is not None:
        log.warning("refused %r from phone %s: %s", shown, report.serial, unsafe)
        report.skipped.append((shown, unsafe))
        return None
    if entry.is_dir and name.startswith("."):
        return None             # .thumbnails and the like: not the gallery's photos
    if len(name.encode()) > MAX_NAME_BYTES:
        report.skipped.append((shown, f"name longer than {MAX_NAME_BYTES} bytes: too long "
                                      "for a file name here"))
        return None
    if len(f"{device_dir}/{name}".encode()) > MAX_PATH_BYTES:
        report.skipped.append((shown, f"path longer than {MAX_PATH_BYTES} bytes, which "
                                      "adb's sync service cannot reach"))
        return None
    return name


def _not_a_photo_reason(name: str, entry: RemoteEntry) -> str | None:
    for prefix, reason in _SKIPPED_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    if name.startswith("."):
        return "hidden file"
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in PHOTO_EXTENSIONS:
        return f"not a photo ({suffix or 'no extension'})"
    if not entry.is_file:
        return "not a regular file"
    return None


@dataclass(frozen=True)
class _Item:
    photo: RemotePhoto
    target: Path                    # the original's place, or the kept image's (lean)
    lean: bool
    current: bool                   # already here as the record says: nothing to transfer
    replaces: str | None = None     # a kept file of it under another name, removed once done


def _plan(photo: RemotePhoto, folder: Path, record: SyncedPhoto | None, originals: bool,
          lean_name: str) -> _Item:
    """What to do with one listed photo. A photo kept as an original (a record without lean,
    or a copy from before the record) stays an original unless it is gone here; a lean one is
    made an original only with --originals."""
    original = folder.joinpath(*photo.parts)
    small = folder.joinpath(*photo.parts[:-1], lean_name)
    same = record is not None and (record.size, record.mtime) == (photo.size, photo.mtime)
    if record is not None and record.lean and not originals:
        return _Item(photo, small, True, same and small.exists())
    replaces = record.local_path if record is not None and record.lean else None
    if originals or record is not None or _is_current(photo, original, None):
        current = replaces is None and _is_current(photo, original, record)
        return _Item(photo, original, False, current, replaces)
    return _Item(photo, small, True, False)


def _copy_changed(session: _Session, photos: dict[str, RemotePhoto], gallery: Path,
                  report: SyncReport, state: SyncState, progress: ProgressCallback | None,
                  show_progress: bool, link: _PhoneLink) -> None:
    known = state.photos(report.serial)
    names = lean_names((p.parts[:-1], p.parts[-1]) for p in photos.values())
    to_copy: list[_Item] = []
    for photo in photos.values():
        item = _plan(photo, report.folder, known.get(photo.device_path), link.originals,
                     names[photo.parts[:-1], photo.parts[-1]])
        if not item.current:
            to_copy.append(item)
            continue
        report.unchanged += 1
        if photo.device_path not in known:     # copied before the record existed
            state.record(report.serial, _synced(item, gallery))
    # Newest first (the phone's time), the order the index takes: the photos a person most
    # likely looks for arrive first.
    to_copy.sort(key=lambda item: (-item.photo.mtime, item.photo.device_path))
    copier = _Copier(session, link, gallery, report, state, to_copy)
    try:
        copier.run(progress, show_progress)
    finally:
        copier.close()


@dataclass
class _PhoneLink:
    """How the sync reaches the phone beyond its sync service, and which mode it keeps."""
    client: object
    transport: str
    timeout: float
    originals: bool


class _Copier:
    """Brings each planned photo here: the original pulled, or a kept lean image."""

    def __init__(self, session: _Session, link: _PhoneLink, gallery: Path, report: SyncReport,
                 state: SyncState, items: list[_Item]):
        self.session, self.link, self.gallery = session, link, gallery
        self.report, self.state, self.items = report, state, items
        self.reader: ThumbnailReader | None = None
        self.media: dict[str, MediaEntry] = {}
        self.zone = "UTC"
        if any(item.lean for item in items):
            self.media, self.zone = _media_and_zone(link)
            self.reader = ThumbnailReader(link.client, link.transport, link.timeout)

    def run(self, progress: ProgressCallback | None, show_progress: bool) -> None:
        total = len(self.items)
        by_bytes = not any(item.lean for item in self.items)
        bar = tqdm(total=sum(i.photo.size for i in self.items) if by_bytes else total,
                   unit="B" if by_bytes else " photos", unit_scale=by_bytes, unit_divisor=1024,
                   desc=f"{self.report.serial}: 0/{total} photos",
                   disable=not show_progress or not total)
        with bar, _fsync_folders_after() as touched:
            for index, item in enumerate(self.items):
                self._ask_ahead(index)
                touched.add(item.target.parent)
                bar.set_description(f"{self.report.serial}: {index}/{total} photos", refresh=False)
                if progress is not None:
                    progress(index, total, item.photo.device_path)
                self._one(item, index, bar.update if by_bytes else _ignore)
                if not by_bytes:
                    bar.update(1)
            bar.set_description(f"{self.report.serial}: {total}/{total} photos")
        if progress is not None:
            progress(total, total, "")

    def _ask_ahead(self, index: int) -> None:
        if self.reader is not None:
            for item in self.items[index:index + READ_AHEAD]:
                if item.lean:
                    self.reader.ask(item.photo.device_path, self.media.get(item.photo.device_path))

    def _one(self, item: _Item, index: int, on_bytes: Callable[[int], object]) -> None:
        try:
            received = self._lean(item) if item.lean else _copy_one(
                self.session.connection, item.photo, item.target, on_bytes)
        except PhoneConnectionLost as error:
            raise PhoneConnectionLost(
                f"{error} while copying {item.photo.device_path} ({len(self.report.pulled)} of "
                f"{len(self.items)} copied and kept): reconnect and unlock the phone, then sync "
                "again to resume") from None
        except _Skip as skip:
            self.report.skipped.append((item.photo.device_path, str(skip)))
            log.warning("skipped %s: %s", item.photo.device_path, skip)
            if skip.connection_ended:
                self.session.close()         # the next photo opens a fresh session
            return
        self.report.pulled.append(item.target)
        self.report.bytes += received
        self.report.kept_bytes += _size(item.target)
        self.state.record(self.report.serial, _synced(item, self.gallery))
        if item.replaces is not None and item.replaces != _relative(item.target, self.gallery):
            remove_quietly(self.gallery / item.replaces)

    def _lean(self, item: _Item) -> int:
        photo, target = item.photo, item.target
        thumbnail = self.reader.take(photo.device_path)
        received = len(thumbnail) if isinstance(thumbnail, bytes) else 0

        def pull(part: Path) -> int:
            return _pull_to(self.session.connection, photo, part, _ignore)
        try:
            pulled, reason = keep_lean(thumbnail, self.media.get(photo.device_path), self.zone,
                                       target, photo.mtime, pull, part_path(target))
        except ShrinkError as error:
            raise _Skip(f"not kept: no usable thumbnail, and the original: {error}"
                        ) from None
        except OSError as error:
            raise _disk_error(error, target) from None
        if reason is not None:
            self.report.fell_back.append((photo.device_path, reason))
            log.info("%s: %s; kept a shrunk copy of the original", photo.device_path, reason)
        return received + pulled

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def _media_and_zone(link: _PhoneLink) -> tuple[dict[str, MediaEntry], str]:
    try:
        media = media_entries(link.client, link.transport, link.timeout)
    except PhoneConnectionLost:
        raise
    except PhoneError as error:
        log.warning("phone %s: no media store listing (%s); each photo is pulled and shrunk",
                    link.transport, error)
        media = {}
    return media, phone_timezone(link.client, link.transport, min(link.timeout, 10.0))


def _ignore(_count: int) -> None:
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _relative(path: Path, gallery: Path) -> str:
    return path.relative_to(gallery).as_posix()


def _is_current(photo: RemotePhoto, target: Path, known: SyncedPhoto | None) -> bool:
    try:
        local = target.stat()
    except OSError:
        return False                    # never copied, or removed here: copy it (again)
    # The copy carries the phone's time, so a rename lost in a crash (old file, old time)
    # is seen here too: folders need no fsync per photo.
    if local.st_size != photo.size or int(local.st_mtime) != photo.mtime:
        return False
    return known is None or (known.size == photo.size and known.mtime == photo.mtime)


class _Skip(Exception):
    """This photo cannot be copied now; the others can."""

    def __init__(self, reason: str, connection_ended: bool = False):
        super().__init__(reason)
        self.connection_ended = connection_ended


def _pull_to(connection: SyncConnection, photo: RemotePhoto, part: Path,
             on_bytes: Callable[[int], object]) -> int:
    """The original, whole, into the file `part` (flushed to disk); raises _Skip or
    PhoneConnectionLost; OSError from writing."""
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "wb") as out:
        try:
            received = connection.receive(photo.device_path, out, on_bytes, max_bytes=photo.size)
        except PhoneConnectionLost:
            raise
        except PhoneProtocolError as error:     # refused; the session is out of step
            raise _Skip(f"refused: {error}", connection_ended=True) from None
        except PhoneError as error:      # the phone said FAIL and ended the session
            raise _Skip(f"the phone refused to send it ({error})",
                        connection_ended=True) from None
        out.flush()
        os.fsync(out.fileno())
    if received != photo.size:
        raise _Skip(f"received {received} bytes, listed {photo.size} (changed while "
                    "copying?); the next sync tries again")
    return received


def _copy_one(connection: SyncConnection, photo: RemotePhoto, target: Path,
              on_bytes: Callable[[int], object]) -> int:
    """Copy into a hidden temporary file, verify, then rename over `target`."""
    part = part_path(target)
    try:
        received = _pull_to(connection, photo, part, on_bytes)
        os.utime(part, (photo.mtime, photo.mtime))
        os.replace(part, target)
        return received
    except OSError as error:
        remove_quietly(part)
        raise _disk_error(error, target) from None
    except BaseException:
        remove_quietly(part)
        raise


def _disk_error(error: OSError, target: Path) -> Exception:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return GalleryError(f"cannot write to {target.parent}: {error.strerror}; free some "
                            "space (or sync into another gallery folder) and sync again")
    return _Skip(f"cannot write it here: {error.strerror or error}")


def part_path(target: Path) -> Path:
    """The hidden temporary name a copy is written to: short, so any name fits beside it."""
    digest = hashlib.sha1(os.fsencode(target.name)).hexdigest()[:16]
    return target.with_name(f"{PART_PREFIX}{digest}{PART_SUFFIX}")


def _remove_deleted(photos: dict[str, RemotePhoto], found: set[tuple[str, ...]],
                    folders: Iterable[tuple[str, ...]], gallery: Path, report: SyncReport,
                    state: SyncState) -> None:
    """--mirror: remove local copies of photos no longer on the phone, folder by folder."""
    known = state.photos(report.serial)
    for parts in folders:
        prefix = "/".join((SDCARD, *parts)) + "/"
        gone = [p for p in known.values()
                if p.device_path.startswith(prefix) and p.device_path not in photos]
        if not gone:
            continue
        listed_here = any(path.startswith(prefix) for path in photos)
        if parts not in found or not listed_here:
            # An empty or missing camera folder is more often a locked phone or a storage
            # glitch than a real wipe: keep the copies rather than delete everything.
            report.skipped.append((prefix.rstrip("/"), "not mirrored: the phone lists no photos "
                                   "there; delete the local copies yourself if that is right"))
            continue
        for synced in gone:
            local = gallery / synced.local_path
            try:
                local.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                report.skipped.append((synced.device_path, f"could not delete the local copy: "
                                       f"{error.strerror}"))
                continue
            state.forget(report.serial, synced.device_path)
            report.deleted.append(local)


def _synced(item: _Item, gallery: Path) -> SyncedPhoto:
    photo = item.photo
    return SyncedPhoto(photo.device_path, photo.size, photo.mtime,
                       _relative(item.target, gallery), item.lean)


@contextmanager
def _fsync_folders_after() -> Iterator[set[Path]]:
    """Flush the renames in the folders the caller adds, once at the end (POSIX only)."""
    touched: set[Path] = set()
    try:
        yield touched
    finally:
        if os.name == "posix":
            for folder in touched:
                try:
                    fd = os.open(folder, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                except OSError:
                    pass


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
