"""What happened in a session, as JSON lines (--events): previews, saves, results, commands."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class EventLog:
    """One JSON line per event ({"t": seconds since `start`, "event": name, ...}); thread-safe.

    With no path it only keeps the events in memory (`events`), for tests and benchmarks.
    """

    def __init__(self, path: Path | None = None, start: float | None = None):
        self.path = path
        self.start = time.monotonic() if start is None else start
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, event: str, at: float | None = None, **fields) -> dict:
        record = {"t": round((time.monotonic() if at is None else at) - self.start, 4), "event": event, **fields}
        with self._lock:
            self.events.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
        return record

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
