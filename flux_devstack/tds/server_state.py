"""SQL Server's dynamic management views, as the stand-in's capacity model makes them.

SQL Server queues a query that needs a memory grant when its resource semaphore has none left
(wait type ``RESOURCE_SEMAPHORE``): what a DBA reads in ``sys.dm_exec_query_resource_semaphores`` and
``sys.dm_exec_query_memory_grants``. The stand-in's server-wide capacity is the ``flux_capacity`` row
whose pattern is ``*`` (:mod:`flux_devstack.tds.capacity`): every data batch takes one grant of
:data:`GRANT_KB`; the first ``capacity`` batches by arrival hold one, the rest wait, and the row's
``others`` are the server's other users (sessions of the login ``reporting``), which hold their grants
first. Per-table rows keep their own victims and slowdowns and are not in these views.

Views (one snapshot per batch that reads them, as temporary tables of the session):

* ``sys.dm_exec_sessions``: ``session_id, login_name, program_name, status``;
* ``sys.dm_exec_requests``: ``session_id, status (running|suspended), wait_type, wait_time,
  total_elapsed_time, open_transaction_count`` (milliseconds, as SQL Server counts them);
* ``sys.dm_exec_query_memory_grants``: ``session_id, requested_memory_kb, granted_memory_kb`` (NULL
  while waiting), ``wait_time_ms, resource_semaphore_id, pool_id``;
* ``sys.dm_exec_query_resource_semaphores``: ``resource_semaphore_id, pool_id, target_memory_kb,
  total_memory_kb, available_memory_kb, granted_memory_kb, grantee_count, waiter_count``.

A login listed in ``flux_denied`` (permission ``VIEW SERVER STATE``) gets SQL Server's error 300, as a
login without that permission does.
"""

from __future__ import annotations

import re
import sqlite3
import time

from flux_devstack.tds.capacity import SERVER

#: Each batch's memory grant, and the server's memory: ``capacity`` grants.
GRANT_KB = 1024
OTHERS_LOGIN = "reporting"
DENIED_DDL = "CREATE TABLE IF NOT EXISTS flux_denied (login TEXT NOT NULL, permission TEXT NOT NULL)"
VIEWS = re.compile(
    r"\bsys\.(dm_exec_sessions|dm_exec_requests|dm_exec_query_memory_grants|dm_exec_query_resource_semaphores)\b",
    re.I,
)
TABLES = {
    "dm_exec_sessions": "session_id INTEGER, login_name TEXT, program_name TEXT, status TEXT",
    "dm_exec_requests": "session_id INTEGER, request_id INTEGER, status TEXT, command TEXT, wait_type TEXT, "
    "wait_time INTEGER, total_elapsed_time INTEGER, open_transaction_count INTEGER",
    "dm_exec_query_memory_grants": "session_id INTEGER, requested_memory_kb INTEGER, granted_memory_kb INTEGER, "
    "wait_time_ms INTEGER, resource_semaphore_id INTEGER, pool_id INTEGER",
    "dm_exec_query_resource_semaphores": "resource_semaphore_id INTEGER, pool_id INTEGER, target_memory_kb INTEGER, "
    "total_memory_kb INTEGER, available_memory_kb INTEGER, granted_memory_kb INTEGER, grantee_count INTEGER, "
    "waiter_count INTEGER",
}
DEFAULT_POOL = 2  # SQL Server's "default" resource pool


class Denied(Exception):
    """The login lacks VIEW SERVER STATE."""


def reads_views(batch: str) -> bool:
    return VIEWS.search(batch) is not None


def translate(sql: str) -> str:
    """``sys.dm_x`` -> the session's snapshot table ``temp.dm_x``."""
    return VIEWS.sub(lambda m: f"temp.{m.group(1).lower()}", sql)


def snapshot(db: sqlite3.Connection, login: str, now: float | None = None) -> None:
    """Fill the session's temporary tables from the model (``flux_running``, the ``*`` row of
    ``flux_capacity``); raise :class:`Denied` for a login in ``flux_denied``."""
    db.execute(DENIED_DDL)
    denied = db.execute(
        "SELECT 1 FROM flux_denied WHERE lower(login) = lower(?) AND upper(permission) = 'VIEW SERVER STATE'",
        (login,),
    ).fetchone()
    if denied:
        raise Denied(login)
    now = time.time() if now is None else now
    for name, columns in TABLES.items():
        db.execute(f"DROP TABLE IF EXISTS temp.{name}")
        db.execute(f"CREATE TEMP TABLE {name} ({columns})")
    row = db.execute("SELECT capacity, others FROM flux_capacity WHERE pattern = ?", (SERVER,)).fetchone()
    if row is None:
        return
    capacity, others = int(row[0]), int(row[1] or 0)
    batches = db.execute(
        "SELECT spid, login, started FROM flux_running WHERE pattern = ? ORDER BY started, pid", (SERVER,)
    ).fetchall()
    # the other users hold their grants first (a steady load), then the batches in arrival order
    holders = [(10_000 + n, OTHERS_LOGIN, now - 60.0) for n in range(others)] + [tuple(b) for b in batches]
    granted = 0
    for index, (spid, who, started) in enumerate(holders):
        holds = index < capacity
        granted += holds
        elapsed = int(max(now - started, 0) * 1000)
        db.execute("INSERT INTO temp.dm_exec_sessions VALUES (?, ?, ?, 'running')", (spid, who, who or "flux"))
        db.execute(
            "INSERT INTO temp.dm_exec_requests VALUES (?, 0, ?, 'SELECT', ?, ?, ?, 1)",
            (
                spid,
                "running" if holds else "suspended",
                None if holds else "RESOURCE_SEMAPHORE",
                0 if holds else elapsed,
                elapsed,
            ),
        )
        db.execute(
            "INSERT INTO temp.dm_exec_query_memory_grants VALUES (?, ?, ?, ?, 0, ?)",
            (spid, GRANT_KB, GRANT_KB if holds else None, 0 if holds else elapsed, DEFAULT_POOL),
        )
    db.execute(
        "INSERT INTO temp.dm_exec_query_resource_semaphores VALUES (0, ?, ?, ?, ?, ?, ?, ?)",
        (
            DEFAULT_POOL,
            capacity * GRANT_KB,
            capacity * GRANT_KB,
            max(capacity - granted, 0) * GRANT_KB,
            granted * GRANT_KB,
            granted,
            len(holders) - granted,
        ),
    )
