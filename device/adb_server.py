"""The adb server: reach it (starting it when it is not running), list phones, pick one.

Talks to the server through pure-python-adb's connections; requests whose answers the library
parses loosely (device states, FAIL messages) are read here so errors stay one clear line.
"""
from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
from dataclasses import asdict, dataclass

from ppadb.client import Client
from ppadb.device import Device

from device.phone_errors import PhoneConnectionLost, PhoneError
from sketch_search.common.commands_named import Program, named

log = logging.getLogger(__name__)

DEFAULT_ADB_PORT = 5037
SERVER_HOST = "127.0.0.1"
QUERY_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
INSTALL_HINT = ("install Android platform-tools and put `adb` on PATH (Debian/Ubuntu: "
                "`sudo apt-get install adb`; macOS: `brew install android-platform-tools`; "
                "Windows: https://developer.android.com/tools/releases/platform-tools)")
# `adb devices -l` ends the state where the key:value details begin.
_DETAIL_KEYS = ("usb:", "product:", "model:", "device:", "transport_id:", "features:")


@dataclass(frozen=True)
class PhoneInfo:
    """One line of `adb devices -l`."""
    serial: str
    state: str            # device, unauthorized, offline, recovery, "no permissions ...", ...
    model: str = ""       # as adb shows it, e.g. SM_S918B (adb turns '-' into '_')
    product: str = ""
    device: str = ""
    usb: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def connect_server(port: int = DEFAULT_ADB_PORT) -> Client:
    """A client for the adb server on `port`, starting the server when none answers."""
    client = Client(SERVER_HOST, port)
    if _server_answers(port):
        return client
    adb = shutil.which("adb")
    if adb is None:
        raise PhoneError(f"no adb server answers on port {port} and no `adb` program was "
                         f"found: {INSTALL_HINT}")
    log.info("starting the adb server: %s -P %d start-server", adb, port)
    # The server daemonises and may keep inherited pipes open: its stderr goes to a file.
    with tempfile.TemporaryFile() as stderr_file:
        try:
            result = subprocess.run([adb, "-P", str(port), "start-server"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=stderr_file, timeout=START_TIMEOUT_S, check=False)
            stderr_file.seek(0)
            detail = stderr_file.read().decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired) as error:
            result, detail = None, str(error)
    if result is None or result.returncode != 0 or not _server_answers(port):
        last_line = detail.splitlines()[-1] if detail else "no message"
        raise PhoneError(f"could not start the adb server with `{adb} -P {port} start-server` "
                         f"({last_line}): run it yourself and look at its message")
    return client


def host_query(client: Client, service: str) -> str:
    """Send a host request (e.g. host:devices-l) and return the server's text answer."""
    connection = _open(client)
    try:
        sock = connection.socket
        send_host_request(sock, service, service)
        length = int(recv_exact(sock, 4), 16)
        return recv_exact(sock, length).decode(errors="replace")
    except (OSError, ValueError) as error:
        raise PhoneConnectionLost(f"the adb server did not answer {service}: {error}") from error
    finally:
        connection.close()


def host_answer(client: Client, service: str, timeout: float) -> tuple[bool, str]:
    """Send a host request and return (OKAY?, the server's text): for the services whose
    refusal is itself the answer (host:pair on an adb that cannot pair)."""
    try:
        with socket.create_connection((client.host, client.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"%04x" % len(service.encode()) + service.encode())
            status = recv_exact(sock, 4)
            length = int(recv_exact(sock, 4), 16)
            return status == b"OKAY", recv_exact(sock, length).decode(errors="replace").strip()
    except (OSError, ValueError) as error:
        what = service.split(":", 2)[1] if service.count(":") >= 1 else service
        raise PhoneConnectionLost(f"the adb server did not answer {what}: {error}") from error


def list_phones(client: Client) -> list[PhoneInfo]:
    """Every phone the server sees, in any state."""
    return [parse_device_line(line) for line in host_query(client, "host:devices-l").splitlines()
            if line.strip()]


def parse_device_line(line: str) -> PhoneInfo:
    serial, *rest = line.split(None, 1)
    words = rest[0].split() if rest else []
    state_words: list[str] = []
    details: dict[str, str] = {}
    for word in words:
        if not details and not word.startswith(_DETAIL_KEYS):
            state_words.append(word)
        else:
            key, _, value = word.partition(":")
            details[key] = value
    return PhoneInfo(serial=serial, state=" ".join(state_words) or "unknown",
                     model=details.get("model", ""), product=details.get("product", ""),
                     device=details.get("device", ""), usb=details.get("usb", ""))


def choose_phone(client: Client, serial: str | None = None) -> tuple[Device, PhoneInfo]:
    """The one phone to use, ready for file transfer, or a PhoneError saying what to do."""
    phones = list_phones(client)
    if serial is not None:
        matches = [p for p in phones if p.serial == serial]
        if not matches:
            seen = ", ".join(p.serial for p in phones) or "none"
            raise PhoneError(f"no phone with serial {serial} is connected (connected: {seen}); "
                             f"check the cable and `{named(Program.PHONE, 'list')}`")
        phone = matches[0]
    elif not phones:
        raise PhoneError("no phone found: connect the Galaxy by USB, turn on USB debugging "
                         "(Settings > Developer options) and unlock it")
    elif len(phones) > 1:
        listed = ", ".join(f"{p.serial} ({p.model or p.state})" for p in phones)
        raise PhoneError(f"several phones are connected ({listed}): choose one with --serial")
    else:
        phone = phones[0]
    _check_ready(phone)
    return Device(client, phone.serial), phone


def _check_ready(phone: PhoneInfo) -> None:
    if phone.state == "device":
        return
    if phone.state == "unauthorized":
        raise PhoneError(f"phone {phone.serial} has not authorised this computer: unlock it and "
                         "accept the 'Allow USB debugging?' prompt, then sync again")
    if phone.state == "offline":
        raise PhoneError(f"phone {phone.serial} is offline: unlock it, unplug and replug the "
                         "cable (or run `adb reconnect`), then sync again")
    if phone.state.startswith("no permissions"):
        raise PhoneError(f"no permission to open phone {phone.serial}'s USB device: add a udev "
                         "rule for it (Debian/Ubuntu: `sudo apt-get install android-sdk-platform-"
                         "tools-common`) and replug it")
    raise PhoneError(f"phone {phone.serial} is in '{phone.state}' mode, not started normally: "
                     "restart it into Android, then sync again")


def send_host_request(sock: socket.socket, service: str, what: str) -> None:
    """Send a request to the adb server and read its OKAY; a FAIL becomes a PhoneError."""
    encoded = service.encode()
    try:
        sock.sendall(b"%04x" % len(encoded) + encoded)
        status = recv_exact(sock, 4)
        if status == b"OKAY":
            return
        length = int(recv_exact(sock, 4), 16)
        message = recv_exact(sock, length).decode(errors="replace").strip()
    except (OSError, ValueError) as error:
        raise PhoneConnectionLost(f"no answer from the adb server about {what}: {error}") from error
    first_line = message.splitlines()[0] if message else "no reason given"
    raise PhoneError(f"adb server refused {what}: {first_line}")


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        got = sock.recv(size - len(data))
        if not got:
            raise ConnectionError("the adb server closed the connection")
        data += got
    return bytes(data)


def _open(client: Client):
    try:
        return client.create_connection(timeout=QUERY_TIMEOUT_S)
    except RuntimeError as error:       # pure-python-adb's "is adb running?" error
        raise PhoneError(f"cannot reach the adb server on port {client.port}: "
                         "run `adb start-server` and try again") from error


def _server_answers(port: int) -> bool:
    try:
        with socket.create_connection((SERVER_HOST, port), timeout=QUERY_TIMEOUT_S) as sock:
            sock.settimeout(QUERY_TIMEOUT_S)
            send_host_request(sock, "host:version", "its version")
            return True
    except (OSError, PhoneError):
        return False
