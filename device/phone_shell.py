"""Run one command in a phone's shell over the adb server, safely quoted and bounded.

`adb shell` hands the phone one command line that its `sh` parses again, so every word is
quoted for sh here: a file name can never become a command. The reply is bounded in size and
time (the phone is not trusted).
"""
from __future__ import annotations

import logging
import socket
import time
import unicodedata
from collections.abc import Sequence

from ppadb.client import Client

from device.adb_server import send_host_request
from device.phone_errors import PhoneConnectionLost, PhoneError

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 2 * 1024 * 1024   # `dumpsys window policy` is some KB; more is a broken phone
MAX_LINE_BYTES = 4000               # old adbd takes a service name of at most 4 KB
MAX_SERIALNO = 64                   # ro.serialno: a dozen characters on real phones


def sh_quote(word: str) -> str:
    """`word` as one sh word: in single quotes, a `'` written as `'\\''`."""
    return "'" + word.replace("'", "'\\''") + "'"


def shell_line(argv: Sequence[str]) -> str:
    """The command line sh on the phone turns back into exactly `argv`."""
    for word in argv:
        if "\0" in word:
            raise PhoneError("a word with a NUL character cannot reach the phone's shell")
    return " ".join(sh_quote(word) for word in argv)


def run_shell(client: Client, serial: str, argv: Sequence[str], timeout: float = 5.0) -> str:
    """What `argv` prints in the shell of phone `serial` (stdout and stderr, `\\r` dropped).

    Raises PhoneError (PhoneConnectionLost when the link goes) with a one-line message.
    """
    reply = _run(client, serial, "shell", argv, timeout, MAX_REPLY_BYTES)
    return reply.decode("utf-8", errors="replace").replace("\r", "")


def run_exec(client: Client, serial: str, argv: Sequence[str], timeout: float,
             max_bytes: int) -> bytes:
    """The raw standard output of `argv` on phone `serial`, over adbd's `exec:` service (byte
    for byte, no stderr mixed in, no terminal). At most `max_bytes` within `timeout` seconds,
    else PhoneError (PhoneConnectionLost for the time or the link)."""
    return _run(client, serial, "exec", argv, timeout, max_bytes)


def _run(client: Client, serial: str, service: str, argv: Sequence[str], timeout: float,
         max_bytes: int) -> bytes:
    line = shell_line(argv)
    if len(line.encode()) > MAX_LINE_BYTES:
        raise PhoneError(f"the command for the phone is longer than {MAX_LINE_BYTES} bytes")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((client.host, client.port), timeout=timeout)
    except OSError as error:
        raise PhoneError(f"cannot reach the adb server on port {client.port}: {error}") from None
    with sock:
        sock.settimeout(timeout)
        send_host_request(sock, f"host:transport:{serial}", f"phone {serial}")
        send_host_request(sock, f"{service}:{line}", f"the {service} service of phone {serial}")
        reply = _read_until_closed(sock, deadline, argv[0], max_bytes)
    log.debug("phone %s: %s:%s -> %r", serial, service, line, reply[:200])
    return reply


def own_serial(client: Client, transport: str, timeout: float = 5.0) -> str | None:
    """The phone's own serial number (ro.serialno), the same over USB and Wi-Fi; None when
    the phone gives none that can name a phone (empty, too long, control characters)."""
    answer = run_shell(client, transport, ["getprop", "ro.serialno"], timeout).strip()
    if not answer or len(answer) > MAX_SERIALNO or any(
            unicodedata.category(char)[0] in "CZ" for char in answer):
        log.info("phone %s gives no usable ro.serialno (%r)", transport, answer[:80])
        return None
    return answer


def _read_until_closed(sock: socket.socket, deadline: float, what: str,
                       max_bytes: int) -> bytes:
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PhoneConnectionLost(f"the phone did not finish `{what}` in time")
        sock.settimeout(left)
        try:
            got = sock.recv(65536)
        except TimeoutError:
            raise PhoneConnectionLost(f"the phone did not finish `{what}` in time") from None
        except OSError as error:
            raise PhoneConnectionLost(f"lost the connection to the phone: {error}") from None
        if not got:
            return bytes(data)
        data += got
        if len(data) > max_bytes:
            raise PhoneError(f"the phone's answer to `{what}` is over {max_bytes} bytes")

