"""Create the pools the specs name, before any task needs one (a task in a missing pool never runs),
and register each data set's throttle bounds (``flux_throttle``) for the controller.

Needs Airflow's metadata database (run it where ``airflow pools`` would run: the
scheduler's host, a deploy job, the local stack's start-up). An existing pool
keeps its slots (the throttle controller or a person may have changed them)
unless ``reset=True``; its description is refreshed.
"""

from __future__ import annotations

from collections.abc import Iterable

from flux_provider.specs.model import DatasetSpec
from flux_provider.throttle import migrations, sources, store


def pool_description(spec: DatasetSpec) -> str:
    t = spec.throttle
    return f"flux data set {spec.name}: initial {t.initial}, adaptive {t.min}-{t.max} ({spec.path.name})"


class DatabaseNotReady(RuntimeError):
    """Airflow's metadata database cannot take pools: unreachable, or not migrated. The message says which,
    where (the URL, without its password) and what to run."""


def require_airflow_tables(engine) -> None:
    """Raise :class:`DatabaseNotReady` unless ``engine`` reaches a database that Airflow has migrated."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    url = engine.url.render_as_string(hide_password=True)
    try:
        migrated = inspect(engine).has_table("slot_pool")
    except SQLAlchemyError as exc:
        first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise DatabaseNotReady(
            f"cannot reach Airflow's metadata database {url}: {first}. Fix: run this where `airflow pools list` "
            "works, with the same AIRFLOW_HOME or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        ) from None
    if not migrated:
        raise DatabaseNotReady(
            f"Airflow's metadata database {url} has no Airflow tables (no slot_pool): it has not been migrated. "
            "Fix: run `airflow db migrate` first (or point AIRFLOW__DATABASE__SQL_ALCHEMY_CONN at your Airflow's "
            "database)"
        )


def sync_pools(specs: Iterable[DatasetSpec], *, reset: bool = False) -> list[tuple[str, int, str]]:
    """Create missing pools with their initial slots and register each data set's throttle bounds.
    Returns (pool, slots, 'created'|'kept'|'reset'); raises :class:`DatabaseNotReady` before writing
    anything when Airflow's database is not there to take them."""
    from airflow.models.pool import Pool
    from airflow.settings import engine
    from airflow.utils.session import create_session

    require_airflow_tables(engine)
    migrations.ensure_tables(engine)
    done = []
    with create_session() as session:
        for spec in specs:
            t = spec.throttle
            store.upsert_dataset(
                session,
                spec.name,
                t.pool,
                t.min,
                t.max,
                t.initial,
                ",".join(t.load_classes) if t.load_classes else None,
                spec.calendar.to_json() if spec.calendar else None,
                t.algorithm,
                source=t.source,
                weight=t.weight,
                floor=t.floor,
            )
            if t.source:
                sources.register(session, t.source, t.connection)
            name = spec.throttle.pool
            existing = session.query(Pool).filter(Pool.pool == name).one_or_none()
            if existing is None or reset:
                slots = spec.throttle.initial
                Pool.create_or_update_pool(name, slots, pool_description(spec), False, session=session)
                done.append((name, slots, "created" if existing is None else "reset"))
            else:
                existing.description = pool_description(spec)
                done.append((name, existing.slots, "kept"))
    return done
