"""A data set's health on the dashboard: the one word that sorts the fleet, most urgent first."""

from __future__ import annotations

#: Health states, most urgent first (the default sort order).
HEALTH = ("failing", "throttled", "pinned", "paused", "running", "ok")
#: A data set whose DAG is gone (a deleted spec, a test's leftover): listed only when asked for.
ORPHANED = "orphaned"


def by_person(event: dict) -> bool:
    """A limit change made by a person (the API's and the CLI's actors), not by the controller."""
    return str(event["actor"]).startswith(("user ", "cli "))


def health_of(row: dict, dag) -> str:
    """The state of an overview ``row`` whose DAG is ``dag`` (None: Airflow does not know it)."""
    if dag is None or dag.is_stale:
        return ORPHANED
    change = row["last_change"]
    if row["paused"]:
        return "paused"
    if row["last_run"] and row["last_run"]["state"] == "failed":
        return "failing"
    if row["pinned"] is not None:
        return "pinned"
    below = row["slots"] is not None and row["slots"] < row["initial"]
    if below and not (change and by_person(change)):  # the controller holds it under its usual size
        return "throttled"
    if row["last_run"] and row["last_run"]["state"] in ("running", "queued"):
        return "running"
    return "ok"
