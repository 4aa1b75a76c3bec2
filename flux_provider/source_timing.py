"""How long the source took to answer one export try: the latency signal of the adaptive pool.

:class:`FirstRow` times a try from the moment its engine starts (bcp/freebcp is
launched, or the DB-API query is sent: Airflow's queueing and the task's start-up
are not in it) to the first byte of the result: the first byte in the export file,
or on the named pipe in streaming mode (the pipe's reader tells it). The try's
:class:`SourceTiming` is stored as its XCom :data:`TIMING_XCOM`, success or
failure, where the throttle controller reads it beside the try's outcome.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flux_provider.records import Record

TIMING_XCOM = "flux_source"


@dataclass(frozen=True)
class SourceTiming(Record):
    """One export try as the source served it: seconds to the first row, in all, rows and rows/s."""

    KIND = "flux.source"

    first_row: float | None = None  # None: no row arrived (an empty result, or a failure before one)
    seconds: float | None = None
    rows: int | None = None
    rows_per_s: float | None = None
    extra: dict = field(default_factory=dict)


class FirstRow:
    """Started when the engine starts; :meth:`seen` at the first byte (polled for a file, told for a pipe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, poll: float = 0.02):
        self.clock, self.poll = clock, poll
        self.started: float | None = None
        self.first: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._path: str | None = None

    def start(self, path: str | None = None) -> FirstRow:
        """Start timing; with ``path`` a regular file (or one still to be made), watch it grow."""
        self.started, self.first = self.clock(), None
        self._stop.clear()
        self._path = path
        if path is not None and not _is_fifo(path):
            self._thread = threading.Thread(target=self._watch, args=(path,), name="flux-first-row", daemon=True)
            self._thread.start()
        return self

    def seen(self) -> None:
        if self.first is None and self.started is not None:
            self.first = self.clock()

    def stop(self, rows: int | None) -> SourceTiming:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            if self.first is None and _size(self._path) > 0:  # the tool wrote everything as it ended
                self.seen()
        elif self.first is None and rows:  # all of it fit in the pipe before its reader woke: it came at the end
            self.seen()
        now = self.clock()
        seconds = now - self.started if self.started is not None else None
        if rows == 0:  # the pipe also turns readable at its end: an empty result has no first row
            self.first = None
        return SourceTiming(
            first_row=round(self.first - self.started, 3) if self.first is not None else None,
            seconds=round(seconds, 3) if seconds is not None else None,
            rows=rows,
            rows_per_s=round(rows / seconds, 1) if rows is not None and seconds else None,
        )

    def _watch(self, path: str) -> None:
        while not self._stop.wait(self.poll):
            if _size(path) > 0:
                self.seen()
                return


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except FileNotFoundError:
        return 0


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


__all__ = ["TIMING_XCOM", "FirstRow", "SourceTiming"]
