"""The SQL Server stand-in: a TDS test server executing SQL batches on SQLite (see server.py)."""
