"""The media company's source data, generated deterministically into the SQL Server stand-in.

``python -m flux_devstack.sample_data --rows 20000`` (re)creates four
tables in the stand-in's database (``$FLUX_MSSQL_DB``, or ``--db``), or with
``--mssql-conn mssql_default`` in a real SQL Server (the init job of
``docker-compose.yaml``):

* ``dbo.catalog_titles``: 200 titles (genre, runtime, release date, original?);
* ``dbo.subscribers``: ``rows // 20`` subscribers (country, plan, monthly fee);
* ``dbo.viewing_sessions``: ``rows`` sessions over the last 3 days (subscriber,
  title, start time in milliseconds, seconds watched, device);
* ``dbo.ad_impressions``: about ``rows // 2`` impressions (revenue to 6 places,
  clicked?).

The same ``--rows`` and ``--seed`` always give the same rows; the text columns
include non-ASCII names, tabs and Hive's delimiter characters, so the pipeline's
exactness is exercised by the demo too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
from pathlib import Path

from flux_devstack.tds.seed import load_seed

DDL = """
DROP TABLE IF EXISTS dbo.catalog_titles;
CREATE TABLE dbo.catalog_titles (title_id INT NOT NULL, title NVARCHAR(200) NOT NULL, genre NVARCHAR(40),
    runtime_minutes INT, released DATE, is_original BIT NOT NULL);
DROP TABLE IF EXISTS dbo.subscribers;
CREATE TABLE dbo.subscribers (subscriber_id BIGINT NOT NULL, country CHAR(2) NOT NULL, plan NVARCHAR(20) NOT NULL,
    monthly_fee DECIMAL(9,2) NOT NULL, signup_date DATE NOT NULL);
DROP TABLE IF EXISTS dbo.viewing_sessions;
CREATE TABLE dbo.viewing_sessions (session_id BIGINT NOT NULL, subscriber_id BIGINT NOT NULL, title_id INT NOT NULL,
    started_at DATETIME2(3) NOT NULL, seconds_watched INT NOT NULL, device NVARCHAR(30));
DROP TABLE IF EXISTS dbo.ad_impressions;
CREATE TABLE dbo.ad_impressions (impression_id BIGINT NOT NULL, session_id BIGINT NOT NULL,
    subscriber_id BIGINT NOT NULL, ad_id INT NOT NULL, shown_at DATETIME2(3) NOT NULL,
    revenue DECIMAL(12,6) NOT NULL, clicked BIT NOT NULL);
"""

GENRES = ["drama", "comedy", "documentary", "kids", "thriller", "sci-fi", None]
WORDS = [
    "Night",
    "Café",
    "Ocean",
    "Über",
    "Señor",
    "Line\tBreak",
    "Quiet",
    "Neon",
    "北京",
    "Field\x01Day",
    "Back\\slash",
]
COUNTRIES = ["US", "GB", "DE", "FR", "BR", "JP", "IN", "ES"]
PLANS = [("basic", "7.99"), ("standard", "13.49"), ("premium", "19.99"), ("ads", "4.99")]
DEVICES = ["tv", "phone", "tablet", "web", "console", None]
DAYS = 3


def generate(db: Path, rows: int, *, seed: int = 7, end: dt.date = dt.date(2026, 3, 4)) -> dict[str, int]:
    """(Re)create and fill the four source tables in the stand-in's SQLite file; returns rows per table."""
    tables = sample_rows(rows, seed=seed, end=end)
    load_seed(db, DDL)
    with sqlite3.connect(db) as conn:
        for name, data in tables.items():
            conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(data[0]))})", data)
    return {name: len(data) for name, data in tables.items()}


def load_into_sql_server(conn_id: str, rows: int, *, seed: int = 7, batch: int = 500) -> dict[str, int]:
    """The same tables and rows into a real SQL Server (or the stand-in) through ``conn_id``: the init job
    of ``docker-compose.yaml``. Multi-row INSERTs of ``batch`` rows with bound values, one commit per table."""
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    tables = sample_rows(rows, seed=seed)
    conn = MsSqlHook(mssql_conn_id=conn_id).get_conn()
    try:
        cursor = conn.cursor()
        for statement in filter(None, (s.strip() for s in DDL.split(";"))):
            cursor.execute(statement)
        for name, data in tables.items():
            marks = "(" + ", ".join(["%s"] * len(data[0])) + ")"
            for start in range(0, len(data), batch):
                chunk = data[start : start + batch]
                values = [v for row in chunk for v in row]
                cursor.execute(f"INSERT INTO dbo.{name} VALUES " + ", ".join([marks] * len(chunk)), tuple(values))
            conn.commit()
    finally:
        conn.close()
    return {name: len(data) for name, data in tables.items()}


def sample_rows(rows: int, *, seed: int = 7, end: dt.date = dt.date(2026, 3, 4)) -> dict[str, list[tuple]]:
    """The four tables' rows (deterministic for ``rows`` and ``seed``)."""
    rng = random.Random(seed)
    titles = [
        (
            i,
            f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}",
            rng.choice(GENRES),
            rng.randint(20, 180),
            (dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 12000))).isoformat(),
            rng.random() < 0.3,
        )
        for i in range(1, 201)
    ]
    subscribers = []
    for i in range(1, max(rows // 20, 10) + 1):
        plan, fee = rng.choice(PLANS)
        subscribers.append(
            (i, rng.choice(COUNTRIES), plan, fee, (end - dt.timedelta(days=rng.randint(30, 3000))).isoformat())
        )
    first = dt.datetime.combine(end - dt.timedelta(days=DAYS), dt.time())
    sessions, impressions = [], []
    for i in range(1, rows + 1):
        subscriber = rng.randint(1, len(subscribers))
        started = first + dt.timedelta(milliseconds=rng.randint(0, DAYS * 86_400_000 - 1))
        sessions.append(
            (
                i,
                subscriber,
                rng.randint(1, len(titles)),
                started.isoformat(" ", "milliseconds"),
                rng.randint(5, 9000),
                rng.choice(DEVICES),
            )
        )
        if subscribers[subscriber - 1][2] == "ads" or rng.random() < 0.4:
            shown = started + dt.timedelta(seconds=rng.randint(0, 600))
            impressions.append(
                (
                    len(impressions) + 1,
                    i,
                    subscriber,
                    rng.randint(1, 500),
                    shown.isoformat(" ", "milliseconds"),
                    f"{rng.randint(0, 50_000) / 1e6:.6f}",
                    rng.random() < 0.03,
                )
            )
    return {
        "catalog_titles": titles,
        "subscribers": subscribers,
        "viewing_sessions": sessions,
        "ad_impressions": impressions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flux_devstack.sample_data", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="viewing sessions (other tables scale with it)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default=os.environ.get("FLUX_MSSQL_DB"), help="the stand-in's SQLite file")
    parser.add_argument(
        "--mssql-conn", metavar="CONN_ID", help="load a SQL Server through this Airflow connection instead"
    )
    args = parser.parse_args(argv)
    if args.mssql_conn:
        counts = load_into_sql_server(args.mssql_conn, args.rows, seed=args.seed)
    elif not args.db:
        parser.error("no --db and no $FLUX_MSSQL_DB: start the stack and run under `devstack env`")
    else:
        counts = generate(Path(args.db), args.rows, seed=args.seed)
    for name, count in counts.items():
        print(f"dbo.{name:<18} {count:>10} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
