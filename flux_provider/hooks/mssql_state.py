"""What a SQL Server source says of its own load: read from its dynamic management views.

SQL Server queues a query that needs a memory grant when its resource semaphore has none left (wait type
``RESOURCE_SEMAPHORE``), and a lock waiter shows in ``sys.dm_exec_requests``. Three reads, one batch
each, with the login of the data sets' connection (it needs ``VIEW SERVER STATE``):

* ``sys.dm_exec_query_resource_semaphores``: the memory the server grants queries from (its capacity),
  what is granted and how many wait;
* ``sys.dm_exec_query_memory_grants`` with ``sys.dm_exec_sessions``: each query holding or waiting for a
  grant, and whose it is (our login's or another's);
* ``sys.dm_exec_requests`` with ``sys.dm_exec_sessions``: what runs and waits, how long, and with how
  many open transactions.

:class:`ServerState` is what the throttle controller uses: the capacity in queries (memory / one query's
grant), and ours and others' queries holding and waiting. Our own in-flight queries are counted apart,
so that more of our load never reads as a healthier server (:meth:`ServerState.room`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

SEMAPHORES = (
    "SELECT pool_id, target_memory_kb, available_memory_kb, granted_memory_kb, grantee_count, waiter_count "
    "FROM sys.dm_exec_query_resource_semaphores WHERE resource_semaphore_id = 0"
)
GRANTS = (
    "SELECT g.session_id, s.login_name, g.requested_memory_kb, g.granted_memory_kb, g.pool_id "
    "FROM sys.dm_exec_query_memory_grants AS g JOIN sys.dm_exec_sessions AS s ON s.session_id = g.session_id"
)
REQUESTS = (
    "SELECT r.session_id, s.login_name, r.status, r.wait_type, r.total_elapsed_time, r.open_transaction_count "
    "FROM sys.dm_exec_requests AS r JOIN sys.dm_exec_sessions AS s ON s.session_id = r.session_id "
    "WHERE r.session_id <> @@SPID"
)
#: SQL Server's errors for a login without VIEW SERVER STATE.
DENIED = frozenset({297, 300})
DEFAULT_POOL = 2  # SQL Server's "default" resource pool


class StateDenied(Exception):
    """The login may not read the server's state (it lacks VIEW SERVER STATE)."""


@dataclass(frozen=True)
class ServerState:
    """One look at the server: its capacity in queries (None when no query holds a grant to size it by),
    ours and others' queries holding a grant and waiting for one, and the longest query and open
    transaction of ours and of others (seconds)."""

    capacity: int | None
    memory_kb: int | None = None  # what the semaphore grants queries from (None: the server shows no semaphore)
    grant_kb: float | None = None  # one query's grant (None: no query holds or asks for one)
    ours_granted: int = 0
    ours_waiting: int = 0
    others_granted: int = 0
    others_waiting: int = 0
    longest_query: float = 0.0
    longest_transaction: float = 0.0
    others_longest_query: float = 0.0

    @property
    def waiting(self) -> int:
        return self.ours_waiting + self.others_waiting

    @property
    def ours(self) -> int:
        return self.ours_granted + self.ours_waiting

    def room(self, grant_kb: float | None = None) -> int | None:
        """The queries the server has for us: its capacity less what its other users hold and wait for.
        Ours are not subtracted: our own load never makes the server look healthier or busier. An idle
        server (no grant to size it by) is sized by ``grant_kb``, a query's grant seen earlier."""
        capacity = self.capacity
        if capacity is None and self.memory_kb is not None and grant_kb:
            capacity = int(self.memory_kb // grant_kb)
        if capacity is None:
            return None
        return max(capacity - self.others_granted - self.others_waiting, 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> ServerState | None:
        if not data:
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def state_from_rows(
    login: str, semaphores: Sequence[Sequence], grants: Iterable[Sequence], requests: Iterable[Sequence]
) -> ServerState:
    """The rows of :data:`SEMAPHORES`, :data:`GRANTS` and :data:`REQUESTS` as one :class:`ServerState`.
    The capacity is the semaphore's memory over one query's grant (ours when we hold one, else any)."""
    login = login.lower()
    grants = [tuple(g) for g in grants]
    ours = [g for g in grants if (g[1] or "").lower() == login]
    others = [g for g in grants if (g[1] or "").lower() != login]
    pools = {g[4] for g in ours} or {DEFAULT_POOL}
    semaphore = next((s for s in semaphores if s[0] in pools), semaphores[0] if semaphores else None)
    sizes = [g[3] for g in ours if g[3]] or [g[3] for g in grants if g[3]] or [g[2] for g in grants if g[2]]
    grant = float(statistics.median(sizes)) if sizes else None
    memory = int(semaphore[1]) if semaphore else None
    capacity = int(memory // grant) if memory is not None and grant else None
    requests = [tuple(r) for r in requests]
    mine = [r for r in requests if (r[1] or "").lower() == login]
    theirs = [r for r in requests if (r[1] or "").lower() != login]
    return ServerState(
        capacity=capacity,
        memory_kb=memory,
        grant_kb=grant,
        ours_granted=sum(1 for g in ours if g[3] is not None),
        ours_waiting=sum(1 for g in ours if g[3] is None),
        others_granted=sum(1 for g in others if g[3] is not None),
        others_waiting=sum(1 for g in others if g[3] is None),
        longest_query=max((r[4] or 0 for r in mine), default=0) / 1000.0,
        longest_transaction=max(((r[4] or 0) for r in mine if (r[5] or 0) > 0), default=0) / 1000.0,
        others_longest_query=max((r[4] or 0 for r in theirs), default=0) / 1000.0,
    )


def read_server_state(conn_id: str, *, timeout: int = 5) -> ServerState:
    """One look at the source of the Airflow connection ``conn_id`` (pymssql; ``timeout`` seconds to log in
    and per query, so that a hung server never stalls its caller). Raises :class:`StateDenied` when the
    login lacks the permission, ``pymssql.Error`` when the server does not answer."""
    import pymssql
    from airflow.models.connection import Connection  # the scheduler's own look-up (secrets, then the database)

    conn = Connection.get_connection_from_secrets(conn_id)
    try:
        db = pymssql.connect(
            server=conn.host,
            port=str(conn.port or 1433),
            user=conn.login,
            password=conn.password,
            database=conn.schema or None,
            login_timeout=timeout,
            timeout=timeout,
            appname="flux-throttle",
        )
    except pymssql.Error as exc:
        raise _denied(exc) or exc from None
    try:
        cursor = db.cursor()
        rows = []
        for query in (SEMAPHORES, GRANTS, REQUESTS):
            try:
                cursor.execute(query)
            except pymssql.Error as exc:
                raise _denied(exc) or exc from None
            rows.append(cursor.fetchall())
    finally:
        db.close()
    return state_from_rows(conn.login or "", *rows)


def _denied(exc: Exception) -> StateDenied | None:
    number = exc.args[0][0] if exc.args and isinstance(exc.args[0], tuple) else exc.args[0] if exc.args else None
    if number in DENIED:
        return StateDenied(f"the login may not read the server's state (SQL Server error {number}): {exc}")
    return None
