"""A capacity per table for the SQL Server stand-in: under load its queries slow down, and above its
capacity some become deadlock victims after doing part of their work, as a loaded SQL Server's do.
Changeable while the server runs (a row in ``flux_capacity``, like ``flux_faults``).

The model, for a batch whose text contains ``pattern`` (usually a table name):

* the batch counts as running on ``pattern`` from the moment it arrives until its answer is sent
  (``flux_running``, shared by every connection process through the SQLite file);
* with ``n`` batches running there (itself included) it first waits
  ``load_seconds * (n - 1) / capacity + slowdown_seconds * max(0, n - capacity)``: latency grows with the
  table's use (``load_seconds`` more at full use), and steeply above the capacity;
* at ``n - capacity >= fail_excess`` it is a victim: it does ``victim_after`` of its work (a share of the
  fault's ``delay_seconds``, the query's hold), still loading the table, then fails with SQL Server
  error ``error_number`` (1205: chosen as deadlock victim; -2: timeout). SQL Server's deadlock monitor
  also picks victims that did work and rolls it back: each victim costs the source. Every victim is
  recorded in ``flux_victims`` with the seconds it held the table, and every batch in ``flux_served``
  (when it held the table, and whether it was a victim): the source's load over time.

The row whose pattern is ``*`` is the server's own capacity: it applies to every data batch, counts its
``others`` (the server's other users) as running, and is what SQL Server's views show
(:mod:`flux_devstack.tds.server_state`).

So at or below ``capacity`` queries run a little slower the more run, a little above they queue up,
far above they fail: what the throttle controller has to find. The count is taken on arrival; a query
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
    fail_excess INTEGER DEFAULT 2,  -- from this many batches above capacity, a batch is a victim
    error_number INTEGER DEFAULT 1205,  -- with this SQL Server error (1205 deadlock victim, -2 timeout)
    load_seconds REAL DEFAULT 0,    -- extra wait at full use: load_seconds * (batches - 1) / capacity
    victim_after REAL DEFAULT 0,    -- share of its work (the fault's delay) a victim does before it fails
    others INTEGER DEFAULT 0        -- the server's other users: batches always running there
)"""
#: Columns added to ``flux_capacity`` after it first shipped: (name, type and default).
ADDED_COLUMNS = (
    ("load_seconds", "REAL DEFAULT 0"),
    ("victim_after", "REAL DEFAULT 0"),
    ("others", "INTEGER DEFAULT 0"),
)
RUNNING_DDL = """CREATE TABLE IF NOT EXISTS flux_running (
    pattern TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, spid INTEGER, login TEXT
)"""
#: Columns added to ``flux_running`` after it first shipped.
ADDED_RUNNING = (("spid", "INTEGER"), ("login", "TEXT"))
#: The pattern of the server-wide row: it applies to every batch (:mod:`flux_devstack.tds.server_state`).
SERVER = "*"
VICTIMS_DDL = """CREATE TABLE IF NOT EXISTS flux_victims (
    pattern TEXT NOT NULL, started REAL NOT NULL, failed REAL NOT NULL, running INTEGER, capacity INTEGER
)"""
SERVED_DDL = """CREATE TABLE IF NOT EXISTS flux_served (
    pattern TEXT NOT NULL, started REAL NOT NULL, ended REAL NOT NULL, victim INTEGER NOT NULL
)"""


def create_tables(db: sqlite3.Connection) -> None:
    """The model's tables, and the columns an older stand-in's ``flux_capacity`` lacks."""
    for ddl in (CAPACITY_DDL, RUNNING_DDL, VICTIMS_DDL, SERVED_DDL):
        db.execute(ddl)
    for table, added in (("flux_capacity", ADDED_COLUMNS), ("flux_running", ADDED_RUNNING)):
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in added:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


class Overloaded(Exception):
    def __init__(self, error_number: int, running: int, capacity: int):
        self.error_number, self.running, self.capacity = error_number, running, capacity
        super().__init__(f"{running} queries running on a table of capacity {capacity}")


class Admission:
    """The batch's place among the running ones; ``leave()`` when its answer is sent. ``victim`` is set
    when the model chose it: it fails after ``victim_after`` of its work (:meth:`fail`)."""

    def __init__(self, db: sqlite3.Connection, patterns: list[str]):
        self.db, self.patterns = db, patterns
        self.started = time.time()
        self.victim: Overloaded | None = None
        self.victim_after = 0.0
        self.victim_pattern = ""

    def fail(self) -> Overloaded:
        """Record the victim (how long it held the table) and leave; the caller raises the error."""
        self.db.execute(
            "INSERT INTO flux_victims VALUES (?, ?, ?, ?, ?)",
            (self.victim_pattern, self.started, time.time(), self.victim.running, self.victim.capacity),
        )
        self.leave()
        return self.victim

    def leave(self) -> None:
        ended = time.time()
        for pattern in self.patterns:
            self.db.execute("DELETE FROM flux_running WHERE pattern = ? AND pid = ?", (pattern, os.getpid()))
            self.db.execute(
                "INSERT INTO flux_served VALUES (?, ?, ?, ?)", (pattern, self.started, ended, self.victim is not None)
            )


def admit(
    db: sqlite3.Connection, batch: str, sleep=time.sleep, *, spid: int | None = None, login: str | None = None
) -> Admission | None:
    """Register ``batch`` on every capacity-limited pattern it touches (``*``: every batch, counted with the
    server's ``others``) and wait as the model says; a victim comes back with ``victim`` set (it fails at once
    when ``victim_after`` is 0). None when no pattern applies."""
    try:
        limits = db.execute(
            "SELECT pattern, capacity, slowdown_seconds, fail_excess, error_number, load_seconds, victim_after, "
            "others FROM flux_capacity"
        ).fetchall()
    except sqlite3.OperationalError:  # no table: no capacity model
        return None
    text = batch.lower()
    applying = [row for row in limits if row[0] == SERVER or row[0].lower() in text]
    if not applying:
        return None
    admission = Admission(db, [row[0] for row in applying])
    wait = 0.0
    for pattern, capacity, slowdown, fail_excess, error_number, load, victim_after, others in applying:
        db.execute(
            "INSERT INTO flux_running (pattern, pid, started, spid, login) VALUES (?, ?, ?, ?, ?)",
            (pattern, os.getpid(), admission.started, spid, login),
        )
        running = _running(db, pattern) + int(others or 0)
        excess = running - capacity
        if excess >= (fail_excess if fail_excess is not None else 2) and excess > 0 and admission.victim is None:
            admission.victim = Overloaded(error_number if error_number is not None else 1205, running, capacity)
            admission.victim_after, admission.victim_pattern = float(victim_after or 0), pattern
        use = (load or 0.0) * (running - 1) / max(capacity, 1)
        wait = max(wait, use + (slowdown if slowdown is not None else 1.0) * max(excess, 0))
    if admission.victim is not None and not admission.victim_after:
        raise admission.fail()
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
