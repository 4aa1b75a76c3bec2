"""No function in flux_provider/ is longer than 60 lines, counted by ``ast`` from ``def`` to its last line.

The allow-list is empty and stays so: a function over the limit fails the test at once. (Were an entry ever
needed, a stale one fails too.)"""

from __future__ import annotations

import ast
from pathlib import Path

import flux_provider

LIMIT = 60
ALLOWED: set[str] = set()  # empty: every function is within the limit


def long_functions(root: Path, limit: int = LIMIT) -> dict[str, int]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out[f"{path.relative_to(root.parent).as_posix()}:{node.name}"] = lines
    return out


def test_no_function_is_longer_than_the_limit_except_the_allowed():
    found = long_functions(Path(flux_provider.__file__).parent)
    assert set(found) - ALLOWED == set(), f"over {LIMIT} lines: {found}"
    assert ALLOWED - set(found) == set(), "these are short now: take them off the allow-list"


def test_the_measure_counts_a_long_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (package / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(package) == {"pkg/m.py:long": LIMIT + 1}
