"""The flux API and dashboard, mounted in Airflow's API server at ``/flux`` (plugin ``fastapi_apps``).

Every route sits behind Airflow's own auth (the UI's session cookie or a
``Bearer`` token from ``/auth/token``): reading needs a logged-in user, changing
a limit needs permission to edit pools (``requires_access_pool("PUT")``). The
OpenAPI description is at ``/flux/openapi.json``.

* ``GET  /flux/``                                  the dashboard page (its files under ``/flux/static/``)
* ``GET  /flux/api/datasets``                      the overview: one row per data set, filtered, sorted, paged
* ``GET  /flux/api/datasets/{dataset}``            one data set: runs stage by stage, last errors
* ``GET  /flux/api/datasets/{dataset}/timeline``   slots, running, queued, limit changes, errors over time
* ``GET  /flux/api/datasets/{dataset}/events``     its limit changes, paged
* ``POST /flux/api/datasets/{dataset}/limit``      ``{"slots": 3, "pin": true, "reason": "..."}``
                                                  (``slots: null`` unpins; ``pin: false`` sets once)
* ``GET  /flux/api/sources``                       every source: budget, shares, the server's state, harm figures
* ``GET  /flux/api/sources/{name}``                one source with its recent periods
* ``POST /flux/api/sources/{name}/budget``         ``{"slots": 4, "pin": true}`` (``slots: null`` unpins)
* ``PUT  /flux/api/pools/{pool}/adaptive``         adopt any Airflow pool: ``{"min": 1, "max": 8, "rules": [...]}``
* ``DELETE /flux/api/pools/{pool}/adaptive``       stop adapting it (its slots stay)"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from flux_provider.dashboard import fleet, overview
from flux_provider.throttle import adopted, host, migrations, source_figures, sources, store
from flux_provider.throttle.controller import set_limit

app = FastAPI(
    title="flux",
    description="flux data sets: health, runs, errors and throttle limits (behind Airflow's auth)",
    docs_url=None,
    redoc_url=None,
)


def _auth_read():
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return requires_authenticated()


def _auth_edit():
    from airflow.api_fastapi.core_api.security import requires_access_pool

    return requires_access_pool(method="PUT")


def _session():
    from airflow.api_fastapi.common.db.common import _get_session

    yield from _get_session()


def _user_name():
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


Session = Annotated[object, Depends(_session)]


class LimitChange(BaseModel):
    slots: int | None = Field(None, ge=0, le=10_000, description="new slots; null unpins")
    pin: bool = True
    reason: str | None = Field(None, max_length=500)


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(_auth_read())], include_in_schema=False)
def dashboard() -> str:
    return resources.files("flux_provider.dashboard").joinpath("dashboard.html").read_text()


#: Files the page loads, bundled in the package (deployments are often offline: no CDN).
STATIC = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css", "dashboard.js": "text/javascript"}


@app.get("/static/{name}", dependencies=[Depends(_auth_read())], include_in_schema=False)
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, f"no file {name!r}")
    body = resources.files("flux_provider.dashboard").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "private, max-age=300"})


class Run(BaseModel):
    run_id: str
    state: str
    start: str | None
    end: str | None
    url: str = Field(description="the run in the Airflow UI")
    rows: dict[str, int | None] = Field(description="rows exported, uploaded, staged and written (target)")
    reconciled: bool | None = Field(description="exported = uploaded = staged (null before the transform ran)")
    parts: list[dict] = Field(description="rows per part of a split run")


class Change(BaseModel):
    at: str | None
    old: int | None
    new: int | None
    reason: str
    actor: str


class DatasetRow(BaseModel):
    dataset: str
    dag_id: str
    owner: str | None
    health: str = Field(description="failing, throttled, pinned, paused, running, ok (or orphaned: no DAG)")
    pool: str
    slots: int | None
    bounds: list[int] = Field(description="[min, max] the controller moves the slots in")
    initial: int
    pinned: int | None = Field(description="the slots a person pinned (null: the controller decides)")
    running: int
    queued: int
    paused: bool | None
    next_run: str | None = Field(description="when the scheduler creates the next run (null: none scheduled)")
    last_run: Run | None
    rows: int | None = Field(description="rows the last run exported")
    reconciled: bool | None
    errors: dict[str, int] = Field(description="failed tries in the window by error class")
    last_change: Change | None = Field(description="the last limit change in the window")
    url: str


class ControllerState(BaseModel):
    holder: str = Field(description="the scheduler process that runs the throttle controller")
    expires_at: str | None = Field(description="its lease ends then unless it renews it")
    period_seconds: float | None = Field(description="how long its last period took")
    period_p95: float | None = Field(description="the 95th percentile of its recent periods")


class Overview(BaseModel):
    controller: ControllerState | None = Field(None, description="the throttle controller (null: it never ran)")
    host: dict | None = Field(None, description="the Airflow host's limit (see /api/host)")
    total: int = Field(description="data sets that match the filters")
    counts: dict[str, int] = Field(description="data sets per health state (all of them, before filtering)")
    offset: int
    limit: int
    sort: str
    order: str
    hours: float
    now: str
    items: list[DatasetRow]


@app.get("/api/datasets", dependencies=[Depends(_auth_read())], response_model=Overview)
def datasets(
    session: Session,
    q: Annotated[str | None, Query(description="part of the data set's name")] = None,
    owner: Annotated[str | None, Query(description="part of the owner's name")] = None,
    health: Annotated[list[str] | None, Query(description="only these health states (repeat the parameter)")] = None,
    sort: Annotated[str, Query(description=f"one of {', '.join(overview.SORT_KEYS)}")] = "health",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    hours: Annotated[float, Query(gt=0, le=24 * 31, description="the window of errors and changes")] = 24.0,
) -> dict:
    """Every data set, one row each: health, last and next run, rows, slots, errors by class, owner.

    Sorted by ``sort`` (health: failing first), then by name; paged by ``offset`` and ``limit``."""
    migrations.ensure_tables(session.get_bind())
    states = [s for value in health or [] for s in value.split(",") if s]
    unknown = set(states) - {*overview.HEALTH, overview.ORPHANED}
    if unknown:
        raise HTTPException(
            422, f"unknown health state(s) {sorted(unknown)}: one of {overview.HEALTH + (overview.ORPHANED,)}"
        )
    try:
        return overview.overview(
            session,
            q=q,
            owner=owner,
            health=states,
            sort=sort,
            descending=order == "desc",
            offset=offset,
            limit=limit,
            hours=hours,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@app.get("/api/datasets/{dataset}", dependencies=[Depends(_auth_read())])
def dataset_detail(
    dataset: str,
    session: Session,
    runs: Annotated[int, Query(ge=1, le=100, description="how many of the last runs")] = 10,
    errors: Annotated[int, Query(ge=1, le=200, description="how many of the last errors")] = 20,
) -> dict:
    """One data set: its overview row, its last runs stage by stage (rows, parts, durations, hosts, links to
    each task's log) and its last errors (class, message, the rule that fired and its action, the try's log)."""
    migrations.ensure_tables(session.get_bind())
    found = overview.detail(session, dataset, runs=runs, errors=errors)
    if found is None:
        raise HTTPException(404, f"no data set {dataset!r} (run `python -m flux_provider.specs pools sync`)")
    return found


@app.get("/api/datasets/{dataset}/timeline", dependencies=[Depends(_auth_read())])
def dataset_timeline(
    dataset: str,
    session: Session,
    hours: Annotated[float, Query(gt=0, le=24 * 31, description="the window: 24 for a day, 168 for a week")] = 24.0,
) -> dict:
    """Slots, running and queued tries of the data set's pool over the window, as step series on one time
    axis (``series.t`` in epoch seconds; each value holds until the next moment), every limit change with
    its reason and actor, and failed tries by error class per bucket (``errors``)."""
    migrations.ensure_tables(session.get_bind())
    found = overview.timeline(session, dataset, hours=hours)
    if found is None:
        raise HTTPException(404, f"no data set {dataset!r} (run `python -m flux_provider.specs pools sync`)")
    return found


@app.get("/api/datasets/{dataset}/events", dependencies=[Depends(_auth_read())])
def dataset_events(
    dataset: str,
    session: Session,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict:
    """The data set's limit changes, newest first (time, old and new slots, reason, actor)."""
    migrations.ensure_tables(session.get_bind())
    where = store.events.c.dataset == dataset
    total = session.execute(select(func.count()).select_from(store.events).where(where)).scalar()
    rows = (
        session.execute(
            select(store.events).where(where).order_by(store.events.c.id.desc()).offset(offset).limit(limit)
        )
        .mappings()
        .all()
    )
    return {
        "dataset": dataset,
        "total": total,
        "offset": offset,
        "limit": limit,
        "events": [{**dict(r), "at": overview.iso(r["at"])} for r in rows],
    }


def _change(session, user, setter, change: LimitChange, missing: str) -> dict:
    """Apply a person's change (a data set's slots, the host limit, a source's budget) with its actor and
    reason; 404 with ``missing`` when there is nothing to change, 422 on a bad value."""
    migrations.ensure_tables(session.get_bind())
    actor = getattr(user, "get_name", lambda: "someone")()
    try:
        result = setter(
            session,
            change.slots,
            pin=change.pin and change.slots is not None,
            actor=f"user {actor}",
            reason=change.reason,
        )
    except KeyError:
        raise HTTPException(404, missing) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return result


@app.post("/api/datasets/{dataset}/limit", dependencies=[Depends(_auth_edit())])
def change_limit(
    dataset: str, change: LimitChange, session: Session, user: Annotated[object, Depends(_user_name())]
) -> dict:
    return _change(
        session,
        user,
        lambda session, slots, **kw: set_limit(session, dataset, slots, **kw),
        change,
        f"no data set {dataset!r} (run `python -m flux_provider.specs pools sync`)",
    )


@app.get("/api/fleet", dependencies=[Depends(_auth_read())])
def fleet_progress(
    session: Session,
    hours: Annotated[float, Query(gt=0, le=24 * 7, description="runs created in this window")] = 12.0,
    bucket: Annotated[int, Query(ge=1, le=60, description="minutes per point of landed_over_time")] = 1,
) -> dict:
    """The night's progress: the data sets' runs landed, running, queued and failed, runs landed over time,
    and what each unfinished run waits for (its pool, the host limit, a worker, a retry, upstream)."""
    migrations.ensure_tables(session.get_bind())
    return fleet.progress(session, hours=hours, bucket_minutes=bucket)


@app.get("/api/host", dependencies=[Depends(_auth_read())])
def host_limit(session: Session) -> dict:
    """The Airflow host's limit: slots, pin, bounds, the host's signals in the last period, the last change
    (404 until a scheduler has run the controller). Its changes: ``/api/datasets/flux:host/events``."""
    migrations.ensure_tables(session.get_bind())
    found = host.state(session)
    if found is None:
        raise HTTPException(404, "no host limit yet: it appears after the scheduler's first controller period")
    return found


@app.post("/api/host/limit", dependencies=[Depends(_auth_edit())])
def change_host_limit(change: LimitChange, session: Session, user: Annotated[object, Depends(_user_name())]) -> dict:
    """Pin the host limit (``pin``), set it once, or give it back to the controller (``slots`` null)."""
    return _change(
        session,
        user,
        host.set_host_limit,
        change,
        "no host limit yet: it appears after the scheduler's first controller period",
    )


@app.get("/api/sources", dependencies=[Depends(_auth_read())])
def source_list(
    session: Session, hours: Annotated[float, Query(gt=0, le=24 * 7, description="figures of this window")] = 12.0
) -> dict:
    """Every source: its budget (data sets' tasks at once), pin and what sized it, the server's last state,
    its data sets' slots, weights and floors, and the harm figures per source and per data set: longest
    query and open transaction, rows per second, victims and the seconds of work they wasted."""
    migrations.ensure_tables(session.get_bind())
    return {"sources": source_figures.sources(session, hours=hours)}


@app.get("/api/sources/{name}", dependencies=[Depends(_auth_read())])
def source_detail(name: str, session: Session, hours: Annotated[float, Query(gt=0, le=24 * 7)] = 12.0) -> dict:
    """One source, with its recent periods (budget, slots given, the server's capacity and waiters)."""
    migrations.ensure_tables(session.get_bind())
    found = source_figures.sources(session, hours=hours, name=name)
    if not found:
        raise HTTPException(404, f"no source {name!r} (data sets register theirs at `pools sync`)")
    return found[0]


@app.post("/api/sources/{name}/budget", dependencies=[Depends(_auth_edit())])
def change_budget(
    name: str, change: LimitChange, session: Session, user: Annotated[object, Depends(_user_name())]
) -> dict:
    """Pin a source's budget (``{"slots": 4}``), set it once (``"pin": false``) or unpin (``slots`` null)."""
    return _change(
        session,
        user,
        lambda session, value, **kw: sources.set_budget(session, name, value, **kw),
        change,
        f"no source {name!r} (data sets register theirs at `pools sync`)",
    )


class PoolAdoption(BaseModel):
    min: int = Field(1, description="the fewest slots the controller cuts to")
    max: int = Field(description="the most slots the controller grows to")
    algorithm: str = Field("gradient", description="gradient (latency, then errors) or aimd (errors)")
    load_classes: list[str] | None = Field(None, description="error classes that count as load")
    rules: list[str] = Field(
        default_factory=list, description="CLASS: ATTRIBUTE=VALUE ... (exception=, message=, number=)"
    )
    source: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,250}$", description="the source whose budget it shares (none: its own)"
    )
    connection: str | None = Field(None, description="the Airflow connection the source's state is read through")


@app.put("/api/pools/{pool}/adaptive", dependencies=[Depends(_auth_edit())])
def adopt_pool(
    pool: str, adoption: PoolAdoption, session: Session, user: Annotated[object, Depends(_user_name())]
) -> dict:
    """Make any Airflow pool adaptive: the controller drives its slots from the tries of the tasks in it."""
    migrations.ensure_tables(session.get_bind())
    actor = f"user {getattr(user, 'get_name', lambda: 'someone')()}"
    try:
        result = adopted.adopt(
            session,
            pool,
            low=adoption.min,
            high=adoption.max,
            algorithm=adoption.algorithm,
            load_classes=adoption.load_classes,
            rules=adoption.rules,
            source=adoption.source,
            connection=adoption.connection,
            actor=actor,
        )
    except KeyError:
        raise HTTPException(404, f"no pool {pool!r}: create it first") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return result


@app.delete("/api/pools/{pool}/adaptive", dependencies=[Depends(_auth_edit())])
def release_pool(pool: str, session: Session, user: Annotated[object, Depends(_user_name())]) -> dict:
    """Stop adapting an adopted pool; its slots stay as they are."""
    migrations.ensure_tables(session.get_bind())
    try:
        adopted.release(session, pool, actor=f"user {getattr(user, 'get_name', lambda: 'someone')()}")
    except KeyError:
        raise HTTPException(404, f"pool {pool!r} is not adopted") from None
    session.commit()
    return {"pool": pool, "adaptive": False}
