"""What a source's data sets cost it, as a DBA asks: per source and per data set, the longest query, the
longest open transaction, rows per second, the victims (tries failed on load: deadlocks, timeouts,
throttling, dropped connections) and the seconds of work they wasted, with the budget and the shares.

Per data set from the tries the controller recorded (``flux_task_outcomes``: an export's query time and
rows per second, as the export saw them; a bcp export's query is its one open transaction); per source
also from the server's own state each period (``flux_source_samples``: the longest query and open
transaction of ours it saw running).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics

from sqlalchemy import and_, func, select

from flux_provider.throttle import store
from flux_provider.throttle.limits import DEFAULT_LOAD_CLASSES
from flux_provider.throttle.sources import event_key


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def per_dataset(session, datasets: list[str], since: dt.datetime) -> dict[str, dict]:
    """``dataset -> figures`` from its tries since ``since``."""
    o = store.outcomes.c
    rows = session.execute(
        select(o.dataset, o.seconds, o.query_seconds, o.rows_per_s, o.error_class).where(
            and_(o.dataset.in_(datasets), o.end_date >= since)
        )
    ).all()
    out = {
        d: {"tries": 0, "longest_query": None, "rows_per_s": None, "victims": 0, "wasted_seconds": 0.0}
        for d in datasets
    }
    speeds: dict[str, list[float]] = {}
    for dataset, seconds, query, rate, error_class in rows:
        figures = out[dataset]
        figures["tries"] += 1
        if query is not None:
            figures["longest_query"] = max(figures["longest_query"] or 0.0, query)
        if rate:
            speeds.setdefault(dataset, []).append(rate)
        if error_class in DEFAULT_LOAD_CLASSES:
            figures["victims"] += 1
            figures["wasted_seconds"] += query if query is not None else seconds or 0.0
    for dataset, rates in speeds.items():
        out[dataset]["rows_per_s"] = round(statistics.median(rates), 1)
    for figures in out.values():
        figures["longest_transaction"] = figures["longest_query"]  # an export's one statement is its transaction
        figures["wasted_seconds"] = round(figures["wasted_seconds"], 1)
    return out


def sources(session, *, hours: float = 12.0, name: str | None = None, points: int = 120) -> list[dict]:
    """Every source (or ``name``): its budget, pin and signal, the server's last state, its data sets with
    their slots and shares and figures, its own figures, and its recent periods (budget, slots, capacity)."""
    from airflow.models.pool import Pool

    since = store.now() - dt.timedelta(hours=hours)
    query = select(store.source)
    if name is not None:
        query = query.where(store.source.c.name == name)
    found = session.execute(query.order_by(store.source.c.name)).mappings().all()
    t = store.throttle.c
    members = (
        session.execute(
            select(t.dataset, t.pool, t.source, t.weight, t.floor, t.low, t.high, t.pinned, Pool.slots)
            .join(Pool, Pool.pool == t.pool, isouter=True)
            .where(t.source.in_([r["name"] for r in found]))
        )
        .mappings()
        .all()
    )
    figures = per_dataset(session, [m["dataset"] for m in members], since)
    out = []
    for row in found:
        mine = [m for m in members if m["source"] == row["name"]]
        datasets = [
            {
                "dataset": m["dataset"],
                "pool": m["pool"],
                "slots": m["slots"],
                "weight": m["weight"] or 1.0,
                "floor": m["floor"] or 0,
                "low": m["low"],
                "high": m["high"],
                "pinned": m["pinned"],
                **figures[m["dataset"]],
            }
            for m in mine
        ]
        out.append(
            {
                "source": row["name"],
                "connection": row["connection"],
                "budget": row["value"],
                "pinned": row["pinned"],
                "low": row["low"],
                "high": row["high"],
                "signal": row["signal"],
                "state": json.loads(row["state"]) if row["state"] else None,
                "updated_at": _iso(row["updated_at"]),
                "datasets": datasets,
                **totals(session, row["name"], datasets, since),
                "periods": periods(session, row["name"], since, points),
                "events": f"/flux/api/datasets/{event_key(row['name'])}/events",
            }
        )
    return out


def totals(session, name: str, datasets: list[dict], since: dt.datetime) -> dict:
    """The source's figures: its data sets' together, and what the server showed of ours running."""
    s = store.source_samples.c
    seen = session.execute(
        select(func.max(s.longest_query), func.max(s.longest_transaction)).where(and_(s.source == name, s.at >= since))
    ).one()
    queries = [d["longest_query"] for d in datasets if d["longest_query"] is not None] + [seen[0] or 0.0]
    transactions = [d["longest_transaction"] or 0.0 for d in datasets] + [seen[1] or 0.0]
    return {
        "longest_query": max(queries),
        "longest_transaction": max(transactions),
        "victims": sum(d["victims"] for d in datasets),
        "wasted_seconds": round(sum(d["wasted_seconds"] for d in datasets), 1),
    }


def periods(session, name: str, since: dt.datetime, points: int) -> list[dict]:
    """The source's last ``points`` periods, oldest first: budget, slots given, and the server's state."""
    s = store.source_samples
    rows = (
        session.execute(
            select(s).where(and_(s.c.source == name, s.c.at >= since)).order_by(s.c.id.desc()).limit(points)
        )
        .mappings()
        .all()
    )
    return [{**{k: v for k, v in r.items() if k not in ("id", "source")}, "at": _iso(r["at"])} for r in reversed(rows)]
