"""File names made safe to show: one line of printable text, whatever bytes the name holds.

Linux allows any bytes but "/" and NUL in a name. Python reads bytes that are not UTF-8 as
"surrogate escapes" (b"caf\\xe9" -> "caf\\udce9"), which cannot be printed, encoded as UTF-8 or
stored as SQLite text; a newline or an escape sequence in a name breaks a table, a label or a
terminal. `display_name` shows every such character as a visible escape and leaves the rest,
accents, CJK and emoji included, as it is.
"""
from __future__ import annotations

import os
import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional embeddings, overrides and isolates: they reorder what follows them on screen
# ("photo<U+202E>gpj.exe" shows as "photoexe.jpg").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    # Cc: C0/C1 controls and DEL; Cs: lone surrogates; Zl/Zp: line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI


def display_name(name: str | bytes | os.PathLike) -> str:
    """`name` (a path, a str, or raw bytes from the file system) as one safe, readable line.

    Undecodable bytes show as \\xff, controls as \\n, \\t, \\x1b, \\u0085, separators and
    direction overrides as \\u2028, \\u202e. Backslashes are left as they are.
    """
    if isinstance(name, bytes):
        text = os.fsdecode(name)
    else:
        text = os.fspath(name)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
    if text.isprintable() and text.isascii():
        return text  # the common case, fast
    return "".join(_escape(c) if _unsafe(c) else c for c in text)
