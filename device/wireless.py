"""Phones over Wi-Fi (Android 11+ wireless debugging): pair once with a code, then connect.

Both go through the adb server's host services: `host:connect:HOST:PORT` (any adb) and
`host:pair:CODE:HOST:PORT` (adb 30 or later; Debian's adb 29 does not know it). The pairing
port and the connect port differ, and both change when wireless debugging is turned on again.
"""
from __future__ import annotations

import re

from device.adb_server import DEFAULT_ADB_PORT, connect_server, host_answer
from device.phone_errors import PhoneError
from sketch_search.common.errors import SketchSearchError
from sketch_search.common.names import display_name

WIRELESS_TIMEOUT_S = 30.0      # adb waits ~10 s for an address that does not answer
PLATFORM_TOOLS = "https://developer.android.com/tools/releases/platform-tools"
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
                      r":(?P<port>\d{1,5})")
_CODE = re.compile(r"\d{6}")


class WirelessInputError(SketchSearchError):
    """An address or pairing code that cannot be right."""


def phone_address(text: str) -> str:
    """'192.168.1.20:37891' as given, checked: a host (name, IPv4, [IPv6]) and a port."""
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise WirelessInputError(f"{display_name(text)!r} is not HOST:PORT: give the address the "
                                 "phone shows under Wireless debugging, e.g. 192.168.1.20:37891")
    return f"{match['host']}:{int(match['port'])}"


def connect_phone(address: str, adb_port: int = DEFAULT_ADB_PORT) -> str:
    """Connect the adb server to a phone's wireless debugging port; the server's answer."""
    address = phone_address(address)
    ok, answer = host_answer(connect_server(adb_port), f"host:connect:{address}",
                             WIRELESS_TIMEOUT_S)
    answer = display_name(answer.splitlines()[0] if answer else "no answer")
    if not ok or not answer.startswith(("connected to", "already connected to")):
        raise PhoneError(f"could not connect to {address}: {answer}; check that the phone is on "
                         "the same network, Wireless debugging is on and the port is the one it "
                         "shows now (pair first if it was never paired)")
    return answer


def pair_phone(address: str, code: str, adb_port: int = DEFAULT_ADB_PORT) -> str:
    """Pair with a phone showing 'Pair device with pairing code'; the server's answer."""
    address = phone_address(address)
    if _CODE.fullmatch(code.strip()) is None:
        raise WirelessInputError(f"{display_name(code)!r} is not a pairing code: give the six "
                                 "digits the phone shows under 'Pair device with pairing code'")
    ok, answer = host_answer(connect_server(adb_port), f"host:pair:{code.strip()}:{address}",
                             WIRELESS_TIMEOUT_S)
    answer = display_name(answer.splitlines()[0] if answer else "no answer")
    if not ok and "unknown host service" in answer:
        raise PhoneError(f"this adb server (port {adb_port}) cannot pair: it is older than adb "
                         f"30 (Debian's adb is 29); install Google's platform-tools ({PLATFORM_TOOLS}"
                         "), stop the old server with `adb kill-server` and pair again")
    if not ok or not answer.startswith("Successfully paired"):
        raise PhoneError(f"pairing with {address} failed: {answer}; check the code and the "
                         "pairing port (both change each time the phone's dialog opens)")
    return answer
