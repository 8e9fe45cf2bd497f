"""Errors about the phone and the adb server, each one line the user can act on."""
from __future__ import annotations

from sketch_search.common.errors import SketchSearchError


class PhoneError(SketchSearchError):
    """No usable phone: adb missing, none connected, not authorised, several, and so on."""


class PhoneConnectionLost(PhoneError):
    """The link to the phone went away mid-request (cable pulled, phone locked, timeout)."""


class PhoneProtocolError(PhoneError):
    """The phone broke the sync protocol (an oversized frame, more data than listed...): the
    session is out of step and must be closed; the request is refused."""
