"""``python -m flux_devstack.tds --port P --db FILE --database NAME --users FILE [--seed SQL]``

Serves TDS on 127.0.0.1. The users file is JSON ``{"login": "password"}`` (the
password never appears on a command line). ``--seed`` runs a SQL file on the
database first (T-SQL DECIMAL/NUMERIC columns are stored exactly, as TEXT).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flux_devstack.tds.seed import load_seed
from flux_devstack.tds.server import TdsServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flux_devstack.tds")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True, help="SQLite database file")
    parser.add_argument("--database", default="flux", help="the database name clients log in to")
    parser.add_argument("--users", type=Path, required=True, help='JSON file {"login": "password"}')
    parser.add_argument("--seed", type=Path, action="append", default=[], help="SQL file(s) to load first")
    parser.add_argument("--debug", action="store_true", help="log every batch")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for seed in args.seed:
        load_seed(args.db, seed.read_bytes().decode("utf-8"), name=str(seed))  # not read_text(): keeps CR, CRLF
    server = TdsServer((args.host, args.port), db_path=args.db, database=args.database, users_file=args.users)
    logging.getLogger("flux_devstack.tds").info(
        "serving TDS on %s:%s (database %s, SQLite %s)", args.host, args.port, args.database, args.db
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
