"""``<schedule><after>`` between data sets: a graph that must have no cycle.

Two data sets that wait for each other (directly or through others) would, once
one of them runs, trigger each other forever. A cycle is refused at
``specs check`` and when a DAG file loads, naming every data set and file in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from flux_provider.specs.parser import SpecError, element_line


def cycle_through(start: str, after_of: Callable[[str], Iterable[str]]) -> list[str] | None:
    """The data sets of a cycle that runs through ``start`` (``[start, ..., start]``), or None.

    ``after_of(name)`` gives the data sets ``name`` waits for (empty for an unknown name); only the
    data sets reachable from ``start`` are looked at."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for upstream in after_of(name):
            if upstream == start:
                return [*path, start]
            if upstream not in seen:
                seen.add(upstream)
                stack.append((upstream, [*path, upstream]))
    return None


def cycles(after: dict[str, Iterable[str]]) -> list[list[str]]:
    """Every distinct cycle among ``{name: names it waits for}`` (each reported once)."""
    found, covered = [], set()
    for name in sorted(after):
        if name in covered:
            continue
        cycle = cycle_through(name, lambda n: after.get(n, ()))
        if cycle:
            found.append(cycle)
            covered.update(cycle)
    return found


def cycle_errors(cycle: list[str], path_of: Callable[[str], Path | str]) -> list[SpecError]:
    """One error per data set of a cycle, each at the line of its own ``<after>`` that leads on in the cycle
    (``a -> b -> c -> a``: a's ``<after>b``, b's ``<after>c``, c's ``<after>a``)."""
    files = ", ".join(f"{name}: {path_of(name)}" for name in cycle[:-1])
    if len(cycle) == 2:
        message = f"the data set {cycle[0]!r} waits for itself (<after>{cycle[0]}</after>) ({files})"
    else:
        message = (
            f"<after> makes a cycle: {' -> '.join(cycle)} (each waits for the next; {files}); once one runs "
            "they would trigger each other forever"
        )
    return [
        SpecError(
            path_of(name),
            message,
            line=element_line(path_of(name), "after", upstream),
            element="after",
            dataset=name,
            fix=f"remove one <after> of the cycle (here: <after>{upstream}</after>, or one in another of its files)",
        )
        for name, upstream in zip(cycle, cycle[1:])
    ]
