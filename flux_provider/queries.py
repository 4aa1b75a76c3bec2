"""A free query from a spec must be exactly one read-only statement, checked with a real T-SQL parser.

Accepted: one ``SELECT``, or ``WITH ... SELECT``, including joins, subqueries,
``UNION``/``INTERSECT``/``EXCEPT`` and window functions, with or without a final
``;``. Refused: several statements, anything that writes or changes the
database (``INSERT``/``UPDATE``/``DELETE``/``MERGE``, DDL, ``SELECT ... INTO``,
``EXEC``, ``SET``, ``USE``, transactions, ``GRANT``, ...), pass-through queries
to other servers (``OPENQUERY``, ``OPENROWSET``, ``OPENDATASOURCE``), and text sqlglot's
``tsql`` dialect cannot parse. The export runs the query as it is written; the
check only decides whether it may run.
"""

from __future__ import annotations


class QueryRefused(ValueError):
    """Why a query may not run, and what to write instead."""

    def __init__(self, reason: str, fix: str = "write one SELECT (or WITH ... SELECT) that only reads"):
        self.reason, self.fix = reason, fix
        super().__init__(f"{reason}. Fix: {fix}")


def check_read_only(sql: str, dialect: str | None = "tsql") -> None:
    """Raise :class:`QueryRefused` unless ``sql`` is exactly one read-only SELECT."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryRefused(f"the query is not T-SQL that can be checked: {first}") from None
    if not statements:
        raise QueryRefused("the query is empty")
    if len(statements) > 1:
        kinds = ", ".join(_kind(s) for s in statements)
        raise QueryRefused(
            f"the query holds {len(statements)} statements ({kinds}); only one may run",
            fix="keep the one SELECT; run anything else outside flux",
        )
    statement = statements[0]
    if not isinstance(statement, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise QueryRefused(f"the query is not a SELECT but {_kind(statement)}")
    writes = (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Command,
        exp.TruncateTable,
        exp.Into,
        exp.Grant,
        exp.Transaction,
        exp.Commit,
        exp.Rollback,
        exp.Use,
        exp.Set,
        exp.Copy,
        exp.LoadData,
    )
    for node in statement.walk():
        if isinstance(node, writes):
            what = "SELECT ... INTO (it creates a table)" if isinstance(node, exp.Into) else _kind(node)
            raise QueryRefused(f"the query contains {what}, which changes the database")
        if isinstance(node, exp.Func) and _function_name(node) in _PASS_THROUGH:
            raise QueryRefused(
                f"the query calls {_function_name(node)}, which runs text of its own on another server",
                fix="query the remote table through a view the source owns",
            )


_PASS_THROUGH = {"OPENQUERY", "OPENROWSET", "OPENDATASOURCE"}


def _function_name(node) -> str:
    return (node.name or type(node).__name__).upper()


def _kind(node) -> str:
    name = type(node).__name__
    if name == "Command":
        return str(node.this).upper()
    return {"Select": "SELECT", "Union": "UNION", "TruncateTable": "TRUNCATE"}.get(name, name.upper())
