"""The ADB sync service (`sync:`), spoken over a pure-python-adb connection to the adb server.

pure-python-adb's own Sync class has no LIST or STAT, writes a pull straight into its
destination and spins forever on a dropped connection. The protocol is small, so this module
speaks it directly: each message is a 4-byte id and a little-endian 32-bit length (AOSP
packages/modules/adb/SYNC.TXT). Every read has a timeout, and an empty read (the link is
gone) raises instead of looping.

The phone is not trusted: a DATA frame may carry at most SYNC_DATA_MAX bytes, a file no more
than the size the caller expects, a name or message no more than the protocol allows, and a
reply must keep up a minimum average rate once its first `timeout` seconds have passed, so a
phone dripping a byte now and then ends the request instead of holding it for ever.
"""
from __future__ import annotations

import logging
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from device.adb_server import send_host_request
from device.phone_errors import PhoneConnectionLost, PhoneError, PhoneProtocolError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
MAX_PATH_BYTES = 1024           # adbd refuses longer sync paths
SYNC_DATA_MAX = 64 * 1024       # the largest DATA frame adbd sends (and accepts)
MAX_DENT_NAME_BYTES = 1024      # a DENT name longer than a whole sync path is malformed
# Slower than this on average, after the first `timeout` seconds of a reply, is a stalled
# phone: USB 2 moves tens of MB/s and weak Wi-Fi adb some hundreds of KB/s.
DEFAULT_MIN_RATE = 16 * 1024    # bytes per second
_READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class RemoteEntry:
    """A directory entry or stat result as the phone reports it (v1: 32-bit size and time)."""
    name: bytes
    mode: int
    size: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def exists(self) -> bool:
        return self.mode != 0


class SyncConnection:
    """One `sync:` session with a phone; requests run one after another on it.

    `connection` is a pure-python-adb Connection already switched to the phone's transport
    (`device.create_connection()`); this class sends "sync:" on it and owns it from then on.
    """

    def __init__(self, connection, timeout: float = DEFAULT_TIMEOUT_S,
                 min_rate: float = DEFAULT_MIN_RATE):
        self._connection = connection
        self._wire = _Wire(connection.socket, timeout, min_rate)
        self._send = self._wire.send
        self._read_exact = self._wire.read_exact
        self._send(b"0005sync:")
        self._expect_okay("the file transfer service (sync:)")

    @classmethod
    def open(cls, device, timeout: float = DEFAULT_TIMEOUT_S,
             min_rate: float = DEFAULT_MIN_RATE) -> SyncConnection:
        """Open a sync session with a ppadb Device (its transport request included)."""
        try:
            connection = device.create_connection(set_transport=False, timeout=timeout)
        except RuntimeError as error:           # ppadb's way of saying the server is gone
            raise PhoneError(f"cannot reach the adb server: {error}".splitlines()[0]) from error
        try:
            connection.socket.settimeout(timeout)
            send_host_request(connection.socket, f"host:transport:{device.serial}",
                              f"phone {device.serial}")
            return cls(connection, timeout, min_rate)
        except BaseException:
            connection.close()
            raise

    def close(self) -> None:
        try:
            self._send(b"QUIT" + struct.pack("<I", 0))
        except PhoneError:
            pass
        self._connection.close()

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- requests ----------------------------------------------------------------------------

    def stat(self, path: str) -> RemoteEntry:
        self._request(b"STAT", path)
        reply = self._read_exact(16)
        ident, mode, size, mtime = reply[:4], *struct.unpack("<3I", reply[4:])
        if ident != b"STAT":
            raise self._protocol_error("STAT", ident)
        return RemoteEntry(name=path.encode(), mode=mode, size=size, mtime=mtime)

    def list_dir(self, path: str) -> Iterator[RemoteEntry]:
        """The entries of one folder, '.' and '..' left out; nothing when it does not exist.

        The whole listing must be read before the next request, so consume the iterator.
        """
        self._request(b"LIST", path)
        dots = 0
        while True:
            header = self._read_exact(20)
            ident = header[:4]
            mode, size, mtime, name_length = struct.unpack("<4I", header[4:])
            if ident == b"DONE":
                return
            if ident != b"DENT":
                raise self._protocol_error("LIST", ident)
            if name_length > MAX_DENT_NAME_BYTES:
                raise PhoneProtocolError(
                    f"the phone listed a name of {name_length} bytes in {path} (at most "
                    f"{MAX_DENT_NAME_BYTES} make sense): unplug and replug it, then sync again")
            name = self._read_exact(name_length)
            if name in (b".", b".."):
                dots += 1
                if dots > 2:        # never yielded, so a caller's count would not see them
                    raise PhoneProtocolError(f"the phone listed '.' or '..' again and again in "
                                             f"{path}: unplug and replug it, then sync again")
                continue
            yield RemoteEntry(name=name, mode=mode, size=size, mtime=mtime)

    def receive(self, path: str, out: BinaryIO,
                on_data: Callable[[int], None] | None = None,
                max_bytes: int | None = None) -> int:
        """Copy a phone file into `out`; returns the byte count. Raises PhoneError on FAIL.

        At most `max_bytes` are written: a frame that would go past it, or one over the
        protocol's SYNC_DATA_MAX, raises PhoneProtocolError before any of it is read (the
        session is then out of step and must be closed).
        """
        self._request(b"RECV", path)
        received = 0
        while True:
            ident = self._read_exact(4)
            (length,) = struct.unpack("<I", self._read_exact(4))
            if ident in (b"DATA", b"FAIL") and length > SYNC_DATA_MAX:
                raise PhoneProtocolError(f"the phone announced a frame of {length} bytes, over "
                                         f"the protocol's {SYNC_DATA_MAX}")
            if ident == b"DATA":
                if max_bytes is not None and received + length > max_bytes:
                    raise PhoneProtocolError(
                        f"the phone sent more than the {max_bytes} bytes it listed (changed "
                        "while copying, or a broken phone?); the next sync tries again")
                # Copied in slices so a lost link is noticed within one timeout, not one frame.
                remaining = length
                while remaining:
                    piece = self._wire.read_some(remaining)
                    out.write(piece)
                    remaining -= len(piece)
                    received += len(piece)
                    if on_data is not None:
                        on_data(len(piece))
            elif ident == b"DONE":
                return received
            elif ident == b"FAIL":
                message = self._read_exact(length).decode(errors="replace")
                raise PhoneError(f"the phone could not send {path}: {message}")
            else:
                raise self._protocol_error("RECV", ident)

    # --- framing -----------------------------------------------------------------------------

    def _request(self, ident: bytes, path: str) -> None:
        encoded = path.encode("utf-8", errors="surrogateescape")
        if len(encoded) > MAX_PATH_BYTES:
            raise PhoneError(f"path too long for the adb sync service: {path}")
        self._send(ident + struct.pack("<I", len(encoded)) + encoded)
        self._wire.reply_starts()

    def _expect_okay(self, what: str) -> None:
        status = self._read_exact(4)
        if status != b"OKAY":
            raise PhoneError(f"the phone refused {what}: {self._read_failure()}")

    def _read_failure(self) -> str:
        try:
            length = int(self._read_exact(4), 16)
            return self._read_exact(length).decode(errors="replace").strip()
        except (ValueError, PhoneError):
            return "no reason given"

    @staticmethod
    def _protocol_error(request: str, ident: bytes) -> PhoneError:
        return PhoneProtocolError(f"unexpected reply {ident!r} to {request} from the phone; "
                          "unplug and replug it, then sync again")


class _Wire:
    """The socket of a sync session: sends, and reads replies that must keep up `min_rate`
    bytes/s after their first `timeout` seconds (a phone that drips a byte now and then ends)."""

    def __init__(self, sock: socket.socket, timeout: float, min_rate: float):
        self._socket = sock
        self._socket.settimeout(timeout)
        self._timeout = timeout
        self._min_rate = min_rate
        self._buffer = bytearray()
        self.reply_starts()

    def reply_starts(self) -> None:
        """A request was sent: its reply's time and bytes count from now."""
        self._reply_started = time.monotonic()
        self._reply_bytes = 0

    def send(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as error:
            raise PhoneConnectionLost(f"lost the connection to the phone: {error}") from error

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted:
            # The reply may lag the minimum rate by at most `timeout` seconds.
            deadline = self._reply_started + self._timeout + self._reply_bytes / self._min_rate
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._too_slow()
            try:
                self._socket.settimeout(min(self._timeout, left))
                data = self._socket.recv(_READ_SIZE)
            except TimeoutError as error:
                if left < self._timeout:
                    raise self._too_slow() from error
                raise PhoneConnectionLost(
                    f"the phone sent nothing for {self._timeout:g} s") from error
            except OSError as error:
                raise PhoneConnectionLost(f"lost the connection to the phone: {error}") from error
            if not data:
                raise PhoneConnectionLost("the connection to the phone closed")
            self._buffer += data
            self._reply_bytes += len(data)

    def _too_slow(self) -> PhoneConnectionLost:
        elapsed = time.monotonic() - self._reply_started
        return PhoneConnectionLost(
            f"the phone sent {self._reply_bytes} bytes in {elapsed:.0f} s, slower than "
            f"{self._min_rate / 1024:g} KB/s (stalled?)")

    def read_exact(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_some(self, limit: int) -> bytes:
        if not self._buffer:
            self._fill(1)
        size = min(limit, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data
