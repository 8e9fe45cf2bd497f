"""A stand-in Android phone: the device side of the ADB wire protocol over TCP.

It answers a real adb server joined with `adb connect 127.0.0.1:PORT`: the CNXN handshake
(with a Galaxy's banner), streams (OPEN/OKAY/WRTE/CLSE) with the protocol's one-write-per-ack
flow control, and the `sync:` service (LIST, STAT, RECV, QUIT) serving a local folder as
/sdcard. It can pose as a phone that has not authorised the computer, as one that never
finishes the handshake (offline), or cut the TCP connection after some bytes of file data,
as a pulled cable does. No AUTH checking and no shell: the product needs neither.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

A_VERSION = 0x01000001          # skips payload checksums, as adb 29 does with this version
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SDCARD = "/sdcard"
_DROP = object()                # sentinel in a stream's output: cut the connection here
_STALL = object()               # sentinel: go silent here, keeping the connection open


def _cmd(name: str) -> int:
    return struct.unpack("<I", name.encode())[0]


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_cmd(name) for name in
                                      ("CNXN", "AUTH", "OPEN", "OKAY", "WRTE", "CLSE"))


class _Stream:
    """One open service stream: bytes from the host, and output waiting for the host's ack."""

    def __init__(self, local_id: int, remote_id: int, phone: "FakePhone"):
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbox = bytearray()
        self.pending: list = []          # bytes objects (and _DROP/_STALL) ready to send
        self.awaiting_ack = False
        # A generator fed through `inbox`; None once the service has ended.
        self.service: Generator | None = _sync_service(phone, self.inbox)
        next(self.service)
        self.closed = False


class FakePhone:
    """Serves `root` as the phone's /sdcard on 127.0.0.1:<port> until stop()."""

    def __init__(self, root: Path, *, model: str = "SM-S918B", product: str = "dm3qxxx",
                 device: str = "dm3q", unauthorized: bool = False, offline: bool = False):
        self.root = Path(root)
        self.model, self.product, self.device = model, product, device
        self.unauthorized = unauthorized
        self.offline = offline
        # device path -> bytes: entries served beside the real files, e.g. hostile names.
        self.extra_files: dict[str, bytes] = {}
        self.drop_after_bytes: int | None = None   # cut the link once this much file data is sent
        self.stall_after_bytes: int | None = None  # or go silent, as a phone that hung
        self.data_bytes_sent = 0
        self.recv_paths: list[str] = []            # every path a RECV asked for
        self.unreadable: set[str] = set()           # device paths whose RECV fails
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "FakePhone":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            for conn in self._connections:
                _hard_close(conn)
            self._connections.clear()

    def __enter__(self) -> "FakePhone":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- transport ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Session(self, conn).run()
        except (OSError, ConnectionError) as error:
            log.debug("fake phone connection ended: %s", error)
        finally:
            _hard_close(conn)
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    def banner(self) -> bytes:
        return (f"device::ro.product.name={self.product};ro.product.model={self.model};"
                f"ro.product.device={self.device};features=cmd").encode()

    # --- the sync service ------------------------------------------------------------------------

    def local_path(self, device_path: str) -> Path | None:
        """The file behind a device path, or None when it lies outside /sdcard."""
        if device_path != SDCARD and not device_path.startswith(SDCARD + "/"):
            return None
        parts = [p for p in device_path[len(SDCARD):].split("/") if p not in ("", ".")]
        if ".." in parts:
            return None
        return self.root.joinpath(*parts)

    def list_dir(self, device_path: str) -> Iterator[tuple[int, int, int, bytes]]:
        """(mode, size, mtime, name) for each entry, '.' and '..' included as adbd sends them."""
        path = self.local_path(device_path)
        if path is None or not path.is_dir():
            return
        for name in (".", ".."):
            st = os.lstat(path)
            yield st.st_mode, st.st_size, int(st.st_mtime), name.encode()
        for entry in sorted(os.listdir(path)):
            st = os.lstat(path / entry)
            yield st.st_mode, st.st_size, int(st.st_mtime), os.fsencode(entry)
        prefix = device_path.rstrip("/") + "/"
        for extra, data in self.extra_files.items():
            if extra.startswith(prefix):
                yield stat.S_IFREG | 0o660, len(data), 1_700_000_000, extra[len(prefix):].encode()

    def stat(self, device_path: str) -> tuple[int, int, int]:
        if device_path in self.extra_files:
            return stat.S_IFREG | 0o660, len(self.extra_files[device_path]), 1_700_000_000
        path = self.local_path(device_path)
        try:
            st = os.lstat(path) if path is not None else None
        except OSError:
            st = None
        return (st.st_mode, st.st_size, int(st.st_mtime)) if st else (0, 0, 0)

    def read_file(self, device_path: str) -> bytes:
        if device_path in self.extra_files:
            return self.extra_files[device_path]
        path = self.local_path(device_path)
        if path is None:
            raise FileNotFoundError(device_path)
        return path.read_bytes()


class _Session:
    """One TCP connection from the adb server: handshake, then packets until it closes."""

    def __init__(self, phone: FakePhone, conn: socket.socket):
        self.phone = phone
        self.conn = conn
        self.max_payload = MAX_PAYLOAD
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.online = False

    def run(self) -> None:
        while True:
            command, arg0, arg1, payload = self._read_packet()
            if command == CNXN:
                self._on_connect(arg1)
            elif command == AUTH:
                # A signature is never accepted and a public key waits for a prompt nobody
                # answers: the adb server then shows the phone as "unauthorized".
                if arg0 == AUTH_SIGNATURE:
                    self._send(AUTH, AUTH_TOKEN, 0, os.urandom(20))
            elif not self.online:
                continue
            elif command == OPEN:
                self._on_open(arg0, payload)
            elif command == WRTE:
                self._on_write(arg0, arg1, payload)
            elif command == OKAY:
                stream = self.streams.get(arg1)
                if stream is not None:
                    stream.awaiting_ack = False
                    self._pump(stream)
            elif command == CLSE:
                self.streams.pop(arg1, None)

    def _on_connect(self, host_max_payload: int) -> None:
        if self.phone.offline:
            return
        if self.phone.unauthorized:
            self._send(AUTH, AUTH_TOKEN, 0, os.urandom(20))
            return
        self.max_payload = min(MAX_PAYLOAD, host_max_payload or MAX_PAYLOAD)
        self.online = True
        self._send(CNXN, A_VERSION, MAX_PAYLOAD, self.phone.banner())

    def _on_open(self, remote_id: int, payload: bytes) -> None:
        service = payload.rstrip(b"\0").decode(errors="replace")
        if service != "sync:":
            log.debug("fake phone refuses service %r", service)
            self._send(CLSE, 0, remote_id)
            return
        local_id = self.next_id
        self.next_id += 1
        self.streams[local_id] = _Stream(local_id, remote_id, self.phone)
        self._send(OKAY, local_id, remote_id)

    def _on_write(self, remote_id: int, local_id: int, payload: bytes) -> None:
        stream = self.streams.get(local_id)
        if stream is None:
            self._send(CLSE, 0, remote_id)
            return
        self._send(OKAY, local_id, remote_id)
        if stream.service is None:          # ended; only flushing its last output
            return
        stream.inbox += payload
        try:
            stream.pending.extend(stream.service.send(None))
        except StopIteration as stop:   # QUIT or FAIL: close once the output is flushed
            stream.pending.extend(stop.value or [])
            stream.service = None
        self._pump(stream)

    def _pump(self, stream: _Stream) -> None:
        """Send the next WRTE (one at a time: the host acks each with OKAY)."""
        if stream.awaiting_ack or stream.closed:
            return
        chunk = bytearray()
        while stream.pending and len(chunk) < self.max_payload:
            item = stream.pending[0]
            if item is _STALL:
                break                           # a hung phone: nothing after it is sent
            if item is _DROP:
                if chunk:
                    break
                raise ConnectionAbortedError("fake phone: cable pulled")
            room = self.max_payload - len(chunk)
            chunk += item[:room]
            if len(item) > room:
                stream.pending[0] = item[room:]
            else:
                stream.pending.pop(0)
        if chunk:
            stream.awaiting_ack = True
            self._send(WRTE, stream.local_id, stream.remote_id, bytes(chunk))
        elif stream.service is None and not stream.pending:
            stream.closed = True
            self.streams.pop(stream.local_id, None)
            self._send(CLSE, stream.local_id, stream.remote_id)

    # --- packets ---------------------------------------------------------------------------------

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            got = self.conn.recv(size - len(data))
            if not got:
                raise ConnectionError("adb server closed the connection")
            data += got
        return bytes(data)

    def _read_packet(self) -> tuple[int, int, int, bytes]:
        command, arg0, arg1, length, _checksum, magic = struct.unpack("<6I", self._read_exact(24))
        if magic != command ^ 0xFFFFFFFF:
            raise ConnectionError("bad packet magic")
        return command, arg0, arg1, self._read_exact(length) if length else b""

    def _send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        header = struct.pack("<6I", command, arg0, arg1, len(payload), sum(payload) & 0xFFFFFFFF,
                             command ^ 0xFFFFFFFF)
        self.conn.sendall(header + payload)


def _sync_service(phone: FakePhone, inbox: bytearray):
    """A generator: each send() hands it new bytes in `inbox`; it yields output chunks."""
    output: list = []
    yield output
    while True:
        while len(inbox) >= 8:
            request, length = inbox[:4].decode(errors="replace"), struct.unpack("<I", inbox[4:8])[0]
            if request == "QUIT":
                del inbox[:8]
                return output
            if len(inbox) < 8 + length:
                break
            path = bytes(inbox[8:8 + length]).decode(errors="surrogateescape")
            del inbox[:8 + length]
            if request == "LIST":
                for mode, size, mtime, name in phone.list_dir(path):
                    output.append(b"DENT" + struct.pack("<4I", mode, size & 0xFFFFFFFF, mtime,
                                                        len(name)) + name)
                output.append(b"DONE" + bytes(16))
            elif request == "STAT":
                mode, size, mtime = phone.stat(path)
                output.append(b"STAT" + struct.pack("<3I", mode, size & 0xFFFFFFFF, mtime))
            elif request == "RECV":
                phone.recv_paths.append(path)
                frames = _recv_frames(phone, path)
                output.extend(frames)
                if frames[0].startswith(b"FAIL"):
                    return output               # adbd ends the sync session after a FAIL
            else:
                message = f"unknown sync request {request!r}".encode()
                output.append(b"FAIL" + struct.pack("<I", len(message)) + message)
                return output
        sent, output = output, []
        yield sent


def _recv_frames(phone: FakePhone, path: str) -> list:
    try:
        if path in phone.unreadable:
            raise PermissionError(13, "Permission denied")
        data = phone.read_file(path)
    except OSError as error:
        message = (error.strerror or "No such file or directory").encode()
        return [b"FAIL" + struct.pack("<I", len(message)) + message]
    frames: list = []
    for start in range(0, len(data), SYNC_DATA_MAX):
        piece = data[start:start + SYNC_DATA_MAX]
        limit, cut = phone.drop_after_bytes, _DROP
        if limit is None:
            limit, cut = phone.stall_after_bytes, _STALL
        if limit is not None and phone.data_bytes_sent + len(piece) > limit:
            # The frame's header promises the whole piece; only part of it arrives.
            part = piece[:max(0, limit - phone.data_bytes_sent)]
            phone.drop_after_bytes = phone.stall_after_bytes = None
            phone.data_bytes_sent += len(part)
            frames += [b"DATA" + struct.pack("<I", len(piece)) + part, cut]
            return frames
        phone.data_bytes_sent += len(piece)
        frames.append(b"DATA" + struct.pack("<I", len(piece)) + piece)
    frames.append(b"DONE" + bytes(4))
    return frames


def _hard_close(conn: socket.socket) -> None:
    """Close with a reset, as a vanished USB link looks to the adb server."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass


# --- a real adb server for tests ---------------------------------------------------------------

def require_adb() -> str:
    """The adb program; skips the test when missing, fails under CI (CI=true)."""
    import pytest

    adb = shutil.which("adb")
    if adb is None:
        message = "adb is not installed (Debian/Ubuntu: apt-get install adb)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return adb


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AdbServer:
    """A real adb server on a free port, with its keys in `home` (never the user's ~/.android)."""

    def __init__(self, home: Path, port: int | None = None):
        self.adb = require_adb()
        Path(home).mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.env = {**os.environ, "HOME": str(home), "ANDROID_SDK_HOME": str(home)}

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run([self.adb, "-P", str(self.port), *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> "AdbServer":
        result = self.run("start-server")
        if result.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {result.stderr}")
        return self

    def stop(self) -> None:
        self.run("kill-server")

    def states(self) -> dict[str, str]:
        lines = self.run("devices").stdout.splitlines()[1:]
        return dict(line.split("\t", 1) for line in lines if "\t" in line)

    def wait_for_state(self, serial: str, state: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.states().get(serial) == state:
                return
            time.sleep(0.05)
        raise AssertionError(f"{serial} never became {state}: {self.states()}")

    def connect(self, phone: FakePhone, state: str = "device") -> None:
        """`adb connect` (again, after a drop, until the server has the phone back)."""
        deadline = time.monotonic() + 15
        while True:
            self.run("connect", phone.serial)
            try:
                self.wait_for_state(phone.serial, state, timeout=2)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def connect_in_background(self, phone: FakePhone) -> subprocess.Popen:
        """For a phone that never answers: `adb connect` blocks ~10 s, the state shows at once."""
        return subprocess.Popen([self.adb, "-P", str(self.port), "connect", phone.serial],
                                env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def disconnect(self, phone: FakePhone) -> None:
        self.run("disconnect", phone.serial)
