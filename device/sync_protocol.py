"""The ADB sync service (`sync:`), spoken over a pure-python-adb connection to the adb server.

pure-python-adb's own Sync class has no LIST or STAT, writes a pull straight into its
destination and spins forever on a dropped connection. The protocol is small, so this module
speaks it directly: each message is a 4-byte id and a little-endian 32-bit length (AOSP
packages/modules/adb/SYNC.TXT). Every read has a timeout, and an empty read (the link is
gone) raises instead of looping.
"""
from __future__ import annotations

import logging
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from device.adb_server import send_host_request
from device.phone_errors import PhoneConnectionLost, PhoneError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
MAX_PATH_BYTES = 1024           # adbd refuses longer sync paths
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

    def __init__(self, connection, timeout: float = DEFAULT_TIMEOUT_S):
        self._connection = connection
        self._socket: socket.socket = connection.socket
        self._socket.settimeout(timeout)
        self._timeout = timeout
        self._buffer = bytearray()
        self._send(b"0005sync:")
        self._expect_okay("the file transfer service (sync:)")

    @classmethod
    def open(cls, device, timeout: float = DEFAULT_TIMEOUT_S) -> SyncConnection:
        """Open a sync session with a ppadb Device (its transport request included)."""
        try:
            connection = device.create_connection(set_transport=False, timeout=timeout)
        except RuntimeError as error:           # ppadb's way of saying the server is gone
            raise PhoneError(f"cannot reach the adb server: {error}".splitlines()[0]) from error
        try:
            connection.socket.settimeout(timeout)
            send_host_request(connection.socket, f"host:transport:{device.serial}",
                              f"phone {device.serial}")
            return cls(connection, timeout)
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
        while True:
            header = self._read_exact(20)
            ident = header[:4]
            mode, size, mtime, name_length = struct.unpack("<4I", header[4:])
            if ident == b"DONE":
                return
            if ident != b"DENT":
                raise self._protocol_error("LIST", ident)
            name = self._read_exact(name_length)
            if name in (b".", b".."):
                continue
            yield RemoteEntry(name=name, mode=mode, size=size, mtime=mtime)

    def receive(self, path: str, out: BinaryIO,
                on_data: Callable[[int], None] | None = None) -> int:
        """Copy a phone file into `out`; returns the byte count. Raises PhoneError on FAIL."""
        self._request(b"RECV", path)
        received = 0
        while True:
            ident = self._read_exact(4)
            (length,) = struct.unpack("<I", self._read_exact(4))
            if ident == b"DATA":
                # Copied in slices so a lost link is noticed within one timeout, not one frame.
                remaining = length
                while remaining:
                    piece = self._read_some(remaining)
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

    def _send(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as error:
            raise PhoneConnectionLost(f"lost the connection to the phone: {error}") from error

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted:
            try:
                data = self._socket.recv(_READ_SIZE)
            except TimeoutError as error:
                raise PhoneConnectionLost(
                    f"the phone sent nothing for {self._timeout:g} s") from error
            except OSError as error:
                raise PhoneConnectionLost(f"lost the connection to the phone: {error}") from error
            if not data:
                raise PhoneConnectionLost("the connection to the phone closed")
            self._buffer += data

    def _read_exact(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_some(self, limit: int) -> bytes:
        if not self._buffer:
            self._fill(1)
        size = min(limit, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

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
        return PhoneError(f"unexpected reply {ident!r} to {request} from the phone; "
                          "unplug and replug it, then sync again")
