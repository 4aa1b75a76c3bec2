"""A capacity per table for the SQL Server stand-in: above it, queries slow down, then fail, as a loaded
SQL Server does. Changeable while the server runs (a row in ``flux_capacity``, like ``flux_faults``).

The model, for a batch whose text contains ``pattern`` (usually a table name):

* the batch counts as running on ``pattern`` from the moment it arrives until its answer is sent
  (``flux_running``, shared by every connection process through the SQLite file);
* with ``n`` batches running there, ``excess = n - capacity``; at ``excess >= fail_excess`` it fails
  at once with SQL Server error ``error_number`` (1205: chosen as deadlock victim; -2: timeout), else
  it first waits ``slowdown_seconds * excess`` (latency grows with the load) and then runs.

So at or below ``capacity`` queries run at full speed, a little above they queue up, far above
they fail: what the throttle controller has to find. The count is taken on arrival; a query
already running is not slowed down further by later ones.
"""

from __future__ import annotations

import os
import sqlite3
import time

import psutil

CAPACITY_DDL = """CREATE TABLE IF NOT EXISTS flux_capacity (
    pattern TEXT PRIMARY KEY,       -- case-insensitive substring of the batch (a table name)
    capacity INTEGER NOT NULL,      -- batches that run at full speed at once
    slowdown_seconds REAL DEFAULT 1.0,  -- extra wait per batch above capacity, per batch above it
    fail_excess INTEGER DEFAULT 2,  -- from this many batches above capacity, a batch fails at once
    error_number INTEGER DEFAULT 1205   -- with this SQL Server error (1205 deadlock victim, -2 timeout)
)"""
RUNNING_DDL = """CREATE TABLE IF NOT EXISTS flux_running (
    pattern TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL
)"""


class Overloaded(Exception):
    def __init__(self, error_number: int, running: int, capacity: int):
        self.error_number, self.running, self.capacity = error_number, running, capacity
        super().__init__(f"{running} queries running on a table of capacity {capacity}")


class Admission:
    """The batch's place among the running ones; ``leave()`` when its answer is sent."""

    def __init__(self, db: sqlite3.Connection, patterns: list[str]):
        self.db, self.patterns = db, patterns

    def leave(self) -> None:
        for pattern in self.patterns:
            self.db.execute("DELETE FROM flux_running WHERE pattern = ? AND pid = ?", (pattern, os.getpid()))


def admit(db: sqlite3.Connection, batch: str, sleep=time.sleep) -> Admission | None:
    """Register ``batch`` on every capacity-limited pattern it touches; wait or raise :class:`Overloaded`
    as the model says. None when no pattern applies."""
    try:
        limits = db.execute(
            "SELECT pattern, capacity, slowdown_seconds, fail_excess, error_number FROM flux_capacity"
        ).fetchall()
    except sqlite3.OperationalError:  # no table: no capacity model
        return None
    text = batch.lower()
    applying = [row for row in limits if row[0].lower() in text]
    if not applying:
        return None
    admission = Admission(db, [row[0] for row in applying])
    wait = 0.0
    for pattern, capacity, slowdown, fail_excess, error_number in applying:
        db.execute("INSERT INTO flux_running VALUES (?, ?, ?)", (pattern, os.getpid(), time.time()))
        running = _running(db, pattern)
        excess = running - capacity
        if excess >= (fail_excess if fail_excess is not None else 2) and excess > 0:
            admission.leave()
            raise Overloaded(error_number if error_number is not None else 1205, running, capacity)
        if excess > 0:
            wait = max(wait, (slowdown if slowdown is not None else 1.0) * excess)
    if wait:
        sleep(wait)
    return admission


def _running(db: sqlite3.Connection, pattern: str) -> int:
    """Batches running on ``pattern``; rows of connection processes that died are removed first."""
    rows = db.execute("SELECT DISTINCT pid FROM flux_running WHERE pattern = ?", (pattern,)).fetchall()
    for (pid,) in rows:
        if not psutil.pid_exists(pid):
            db.execute("DELETE FROM flux_running WHERE pid = ?", (pid,))
    return db.execute("SELECT COUNT(*) FROM flux_running WHERE pattern = ?", (pattern,)).fetchone()[0]
