"""The SQL Server stand-in: a TDS test server executing SQL batches on SQLite (see server.py)."""

from pathlib import Path

SEED_DEMO = Path(__file__).with_name("seed_demo.sql")
