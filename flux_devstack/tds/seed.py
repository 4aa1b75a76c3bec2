"""Load SQL into the TDS server's SQLite database with the same translation the server applies."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flux_devstack.tds.server import Session, _split_statements

log = logging.getLogger("flux_devstack.tds")


def load_seed(db_path: Path, sql: str, database: str = "flux", *, name: str = "seed", every: float = 2.0) -> int:
    """Run every statement of ``sql`` (T-SQL DDL types kept as declared types) in one transaction, logging
    progress every ``every`` seconds. Returns statements run."""
    session = Session(Path(db_path), database, spid=0)
    statements = _split_statements(sql)
    started = last = time.monotonic()
    try:
        session.db.execute("BEGIN")  # one commit: thousands of one-row INSERTs take a second, not minutes
        for number, statement in enumerate(statements, 1):
            session.db.execute(session.translate(statement))
            if time.monotonic() - last >= every:
                last = time.monotonic()
                log.info("%s: %d of %d statements (%.0f s)", name, number, len(statements), last - started)
        session.db.execute("COMMIT")
        log.info("%s: %d statements in %.1f s", name, len(statements), time.monotonic() - started)
        return len(statements)
    finally:
        if session.db.in_transaction:
            session.db.execute("ROLLBACK")
        session.close()
