"""The provider's own tables in Airflow's metadata database, created and upgraded by numbered migrations.

``flux_schema`` holds the version the database is at; :func:`upgrade` applies
the migrations above it, in order, each in a transaction of its own (DDL is
transactional on PostgreSQL and SQLite), and records the new version. A
database whose tables an older flux made with ``create_all`` (no ``flux_schema``)
is taken to be at version 1. Works on any SQLAlchemy backend Airflow supports;
tested on SQLite and PostgreSQL.

To change a table: add a migration at the end of :data:`MIGRATIONS` (never edit
one that shipped) and the matching definition in :mod:`flux_provider.throttle.store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text

from flux_provider.throttle.store import events, host, lease, lost, outcomes, source, source_samples, throttle

log = logging.getLogger(__name__)

schema_version = Table(
    "flux_schema", MetaData(), Column("name", String(50), primary_key=True), Column("version", Integer, nullable=False)
)


def _v1_create_tables(conn) -> None:
    """Version 1: the throttle's tables as flux 0.1 created them."""
    legacy = MetaData()
    Table(
        "flux_task_outcomes",
        legacy,
        *_columns(keep_indexes=True, without={"map_index", *V4_COLUMNS, *V5_OUTCOMES, *V7_OUTCOMES}),
    )
    Table(  # as flux 0.1 made it: the calendar column came with version 3
        "flux_throttle",
        legacy,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in throttle.columns
            if c.name not in ("calendar", *V5_THROTTLE, *V7_THROTTLE)
        ),
    )
    events.create(conn, checkfirst=True)
    Table(
        "flux_lease",
        legacy,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in lease.columns
            if c.name not in V6_LEASE
        ),
    )
    legacy.create_all(conn, checkfirst=True)


def _v2_outcomes_by_map_index(conn) -> None:
    """Version 2: ``flux_task_outcomes`` keyed by map index too (the parts of a split export are mapped task
    instances of one task). Rebuilt and copied: a primary key cannot be altered on SQLite."""
    later = V4_COLUMNS | set(V5_OUTCOMES) | set(V7_OUTCOMES)
    staging = Table("flux_task_outcomes_v2", MetaData(), *_columns(keep_indexes=False, without=later))
    staging.create(conn)
    names = [c.name for c in outcomes.columns if c.name not in ("map_index", *later)]
    listed = ", ".join(names)
    conn.execute(
        text(f"INSERT INTO flux_task_outcomes_v2 ({listed}, map_index) SELECT {listed}, -1 FROM flux_task_outcomes")
    )
    conn.execute(text("DROP TABLE flux_task_outcomes"))
    conn.execute(text("ALTER TABLE flux_task_outcomes_v2 RENAME TO flux_task_outcomes"))
    for index in outcomes.indexes:
        index.create(conn)


def _v3_calendar(conn) -> None:
    """Version 3: ``flux_throttle.calendar``, the data set's holidays and maintenance windows."""
    from sqlalchemy import inspect

    if "calendar" not in {c["name"] for c in inspect(conn).get_columns("flux_throttle")}:
        conn.execute(text("ALTER TABLE flux_throttle ADD COLUMN calendar TEXT"))


#: The columns version 4 added to ``flux_task_outcomes``.
V4_COLUMNS = frozenset({"rule", "action"})


def _v4_outcome_decisions(conn) -> None:
    """Version 4: ``flux_task_outcomes.rule`` and ``.action``, the recovery rule's decision beside the message
    (it was part of the message's text)."""
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(conn).get_columns("flux_task_outcomes")}
    for name in sorted(V4_COLUMNS - have):
        conn.execute(text(f"ALTER TABLE flux_task_outcomes ADD COLUMN {name} TEXT"))


#: The columns version 5 added: the source's timing on each outcome, a limit and rules per pool.
V5_OUTCOMES = {"first_row": "FLOAT", "rows_per_s": "FLOAT"}
V5_THROTTLE = {"algorithm": "VARCHAR(20)", "rules": "TEXT"}


def _v5_latency_and_adopted_pools(conn) -> None:
    """Version 5: ``flux_task_outcomes.first_row`` and ``.rows_per_s`` (the latency signal),
    ``flux_throttle.algorithm`` (the limit) and ``.rules`` (an adopted pool's error rules)."""
    for table, columns in (("flux_task_outcomes", V5_OUTCOMES), ("flux_throttle", V5_THROTTLE)):
        have = {c["name"] for c in inspect(conn).get_columns(table)}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


#: The columns version 6 added to ``flux_lease``: the controller's period times.
V6_LEASE = {"period_seconds": "FLOAT", "period_p95": "FLOAT"}


def _v6_fleet(conn) -> None:
    """Version 6: ``flux_lost_tries`` (the tries lost to the orchestrator and the budget they spent),
    ``flux_host`` (the host's limit) and ``flux_lease.period_seconds`` / ``.period_p95`` (how long the
    controller's periods take)."""
    lost.create(conn, checkfirst=True)
    host.create(conn, checkfirst=True)
    have = {c["name"] for c in inspect(conn).get_columns("flux_lease")}
    for name, kind in V6_LEASE.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE flux_lease ADD COLUMN {name} {kind}"))


#: The columns version 7 added: a data set's source and share, an export's query time.
V7_THROTTLE = {"source": "VARCHAR(250)", "weight": "FLOAT", "floor": "INTEGER"}
V7_OUTCOMES = {"query_seconds": "FLOAT"}


def _v7_sources(conn) -> None:
    """Version 7: ``flux_source`` and ``flux_source_samples`` (a source's budget, shared by its data sets,
    and the server's state each period), ``flux_throttle.source`` / ``.weight`` / ``.floor`` and
    ``flux_task_outcomes.query_seconds``."""
    source.create(conn, checkfirst=True)
    source_samples.create(conn, checkfirst=True)
    for table, columns in (("flux_throttle", V7_THROTTLE), ("flux_task_outcomes", V7_OUTCOMES)):
        have = {c["name"] for c in inspect(conn).get_columns(table)}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def _columns(*, keep_indexes: bool, without: frozenset | set = frozenset()) -> list[Column]:
    """Fresh copies of ``flux_task_outcomes``' columns (indexes by name follow the table they are made on)."""
    return [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=bool(c.index and keep_indexes))
        for c in outcomes.columns
        if c.name not in without
    ]


#: (version, what it does, how): applied in order, each once.
MIGRATIONS: list[tuple[int, str, Callable]] = [
    (1, "the throttle's tables", _v1_create_tables),
    (2, "flux_task_outcomes keyed by map index", _v2_outcomes_by_map_index),
    (3, "flux_throttle.calendar", _v3_calendar),
    (4, "flux_task_outcomes.rule and .action", _v4_outcome_decisions),
    (5, "the source's timing per outcome, a limit and rules per pool", _v5_latency_and_adopted_pools),
    (6, "lost tries, the host limit and the controller's period times", _v6_fleet),
    (7, "sources: a budget shared by data sets, the server's state", _v7_sources),
]
LATEST = MIGRATIONS[-1][0]


_ensured: set[str] = set()


def ensure_tables(engine) -> None:
    """Create or upgrade the tables, once per database and process (the API calls it on every request)."""
    key = str(engine.url)
    if key not in _ensured:
        upgrade(engine)
        _ensured.add(key)


def current_version(conn) -> int:
    """The version the database is at: 0 when empty, 1 for tables an older flux made without versions."""
    names = set(inspect(conn).get_table_names())
    if "flux_schema" in names:
        version = conn.execute(select(schema_version.c.version).where(schema_version.c.name == "flux")).scalar()
        if version is not None:
            return int(version)
    return 1 if "flux_throttle" in names else 0


def upgrade(engine, target: int = LATEST) -> int:
    """Apply the migrations up to ``target``; returns the version the database is at afterwards.

    Several processes may upgrade at once (schedulers, API workers): each migration runs in a
    transaction that first writes the version row, which serialises them (a row lock on PostgreSQL,
    the write lock on SQLite); the one that comes second finds the work done."""
    from sqlalchemy.exc import IntegrityError

    with engine.begin() as conn:
        schema_version.create(conn, checkfirst=True)
    try:
        with engine.begin() as conn:
            if conn.execute(select(schema_version.c.version).where(schema_version.c.name == "flux")).first() is None:
                conn.execute(schema_version.insert().values(name="flux", version=current_version(conn)))
    except IntegrityError:  # another process wrote the row first
        pass
    version = 0
    for number, what, step in MIGRATIONS:
        with engine.begin() as conn:
            conn.execute(  # the lock: nobody else migrates until this transaction ends
                schema_version.update().where(schema_version.c.name == "flux").values(version=schema_version.c.version)
            )
            version = current_version(conn)
            if version >= number or number > target:
                continue
            step(conn)
            _set_version(conn, number)
            version = number
        log.info("flux tables: migrated to version %d (%s)", number, what)
    return version


def _set_version(conn, number: int) -> None:
    updated = conn.execute(schema_version.update().where(schema_version.c.name == "flux").values(version=number))
    if updated.rowcount == 0:
        conn.execute(schema_version.insert().values(name="flux", version=number))
