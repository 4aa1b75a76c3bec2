"""Load SQL into the TDS server's SQLite database with the same translation the server applies."""

from __future__ import annotations

from pathlib import Path

from flux_devstack.tds.server import Session, _split_statements


def load_seed(db_path: Path, sql: str, database: str = "flux") -> int:
    """Run every statement of ``sql`` (T-SQL DDL types kept as declared types). Returns statements run."""
    session = Session(Path(db_path), database, spid=0)
    try:
        statements = _split_statements(sql)
        for statement in statements:
            session.db.execute(session.translate(statement))
        return len(statements)
    finally:
        session.close()
