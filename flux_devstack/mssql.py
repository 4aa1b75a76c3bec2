"""The SQL Server stand-in of the local stack: the project's TDS test server on SQLite.

Real ``freebcp`` and ``pymssql`` talk to it as to SQL Server. It is seeded at
start-up from ``tds/seed_demo.sql`` plus ``$FLUX_MSSQL_SEED`` (a SQL file) if set,
and offers the connection ``mssql_default`` (database ``flux``, login ``flux``).
"""

from __future__ import annotations

import json
import os

from flux_devstack.service import Context, Service
from flux_devstack.tds import SEED_DEMO

LOGIN, DATABASE = "flux", "flux"


class TdsStandIn(Service):
    name = "mssql"
    port = "mssql"
    ready_timeout = 60.0

    def prepare(self, ctx: Context) -> None:
        home = ctx.home(self.name)
        users = home / "users.json"
        users.write_text(json.dumps({LOGIN: ctx.secrets["mssql_password"]}))
        users.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        home = ctx.home(self.name)
        seeds = [str(SEED_DEMO)] + ([os.environ["FLUX_MSSQL_SEED"]] if os.environ.get("FLUX_MSSQL_SEED") else [])
        return [
            ctx.python,
            "-m",
            "flux_devstack.tds",
            "--port",
            str(ctx.ports["mssql"]),
            "--db",
            str(home / "flux.sqlite"),
            "--database",
            DATABASE,
            "--users",
            str(home / "users.json"),
            *[arg for seed in seeds for arg in ("--seed", seed)],
        ]

    def check(self, ctx: Context) -> str:
        import pymssql

        conn = pymssql.connect(
            server="127.0.0.1",
            port=ctx.ports["mssql"],
            user=LOGIN,
            password=ctx.secrets["mssql_password"],
            database=DATABASE,
            login_timeout=5,
        )
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
            tables = cursor.fetchone()[0]
        finally:
            conn.close()
        return f"{tables} tables (TDS stand-in on SQLite)"

    def connections(self, ctx: Context) -> dict[str, dict]:
        return {
            "mssql_default": {
                "conn_type": "mssql",
                "description": "flux devstack: TDS test server standing in for SQL Server (SQLite behind it)",
                "host": "127.0.0.1",
                "port": ctx.ports["mssql"],
                "schema": DATABASE,
                "login": LOGIN,
                "password": ctx.secrets["mssql_password"],
            }
        }

    def env(self, ctx: Context) -> dict[str, str]:
        return {"FLUX_MSSQL_PORT": str(ctx.ports["mssql"]), "FLUX_MSSQL_DB": str(ctx.home(self.name) / "flux.sqlite")}
