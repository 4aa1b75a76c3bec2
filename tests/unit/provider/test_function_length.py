"""No function in the repository is longer than 60 lines, counted by ``ast`` from ``def`` to its last line: the
product, the dev stack, the benchmarks and the tests alike. There is no allow-list: a function over the limit
fails the test at once, and the message names it with its length."""

from __future__ import annotations

import ast
from pathlib import Path

import flux_provider

LIMIT = 60
ROOT = Path(flux_provider.__file__).parent.parent
CODE = ("flux_provider", "flux_devstack", "benchmarks", "tests", "dags", "docs")


def long_functions(root: Path, limit: int = LIMIT) -> dict[str, int]:
    """``path:function`` (relative to ``root``'s parent) -> lines, of every function under ``root`` over ``limit``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out[f"{path.relative_to(root.parent).as_posix()}:{node.name}"] = lines
    return out


def test_no_function_in_the_repository_is_longer_than_the_limit():
    found = {name: lines for folder in CODE for name, lines in long_functions(ROOT / folder).items()}
    assert found == {}, f"over {LIMIT} lines: {found}"


def test_the_gate_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert {name.rsplit(":", 1)[1]: n for name, n in long_functions(tmp_path).items()} == {"long": LIMIT + 1}
