"""The flux API and dashboard, mounted in Airflow's API server at ``/flux`` (plugin ``fastapi_apps``).

Every route sits behind Airflow's own auth (the UI's session cookie or a
``Bearer`` token from ``/auth/token``): reading needs a logged-in user, changing
a limit needs permission to edit pools (``requires_access_pool("PUT")``).

* ``GET  /flux/``                                     the dashboard page (self-contained HTML)
* ``GET  /flux/api/datasets``                         every data set: limit, pin, tasks, runs, errors
* ``GET  /flux/api/datasets/{dataset}/events``        its limit changes
* ``POST /flux/api/datasets/{dataset}/limit``         ``{"slots": 3, "pin": true, "reason": "..."}``
                                                     (``slots: null`` unpins; ``pin: false`` sets once)
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select

from flux_provider.run_report import stage_rows
from flux_provider.throttle import migrations, store
from flux_provider.throttle.controller import set_limit

app = FastAPI(title="flux", description="flux data sets: throttle limits and runs", docs_url=None, redoc_url=None)


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


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(_auth_read())])
def dashboard() -> str:
    return resources.files("flux_provider.throttle").joinpath("dashboard.html").read_text()


@app.get("/api/datasets", dependencies=[Depends(_auth_read())])
def datasets(session: Session, hours: float = 24.0) -> dict:
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance as TI

    migrations.ensure_tables(session.get_bind())
    since = store.now() - dt.timedelta(hours=hours)
    result = []
    for row in session.execute(select(store.throttle).order_by(store.throttle.c.dataset)).mappings().all():
        dataset, dag_id = row["dataset"], f"flux_{row['dataset']}"
        pool = session.execute(select(Pool).where(Pool.pool == row["pool"])).scalar_one_or_none()
        states = dict(
            session.execute(
                select(TI.state, func.count())
                .where(and_(TI.pool == row["pool"], TI.state.in_(("running", "queued", "scheduled"))))
                .group_by(TI.state)
            ).all()
        )
        outcomes = (
            session.execute(
                select(store.outcomes)
                .where(and_(store.outcomes.c.dataset == dataset, store.outcomes.c.end_date >= since))
                .order_by(store.outcomes.c.end_date)
            )
            .mappings()
            .all()
        )
        errors: dict[str, int] = {}
        for o in outcomes:
            if o["error_class"]:
                errors[o["error_class"]] = errors.get(o["error_class"], 0) + 1
        latencies = sorted(o["seconds"] for o in outcomes if o["state"] == "success" and o["seconds"] is not None)
        runs = (
            session.execute(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(5))
            .scalars()
            .all()
        )
        events = (
            session.execute(
                select(store.events)
                .where(and_(store.events.c.dataset == dataset, store.events.c.at >= since))
                .order_by(store.events.c.at)
            )
            .mappings()
            .all()
        )
        result.append(
            {
                "dataset": dataset,
                "dag_id": dag_id,
                "pool": row["pool"],
                "slots": pool.slots if pool else None,
                "pinned": row["pinned"],
                "bounds": [row["low"], row["high"]],
                "initial": row["initial"],
                "running": states.get("running", 0),
                "queued": states.get("queued", 0) + states.get("scheduled", 0),
                "errors": errors,
                "tries": len(outcomes),
                "last_errors": [
                    {
                        "at": _iso(o["end_date"]),
                        "task_id": o["task_id"],
                        "try_number": o["try_number"],
                        "class": o["error_class"],
                        "message": (o["message"] or "")[:300],
                    }
                    for o in outcomes
                    if o["error_class"]
                ][-3:],
                "latency_p50": latencies[len(latencies) // 2] if latencies else None,
                "runs": [_run(session, r) for r in runs],
                "timeline": {
                    "limit": [
                        {"at": _iso(e["at"]), "slots": e["new"], "reason": e["reason"], "actor": e["actor"]}
                        for e in events
                    ],
                    "errors": [
                        {"at": _iso(o["end_date"]), "class": o["error_class"]} for o in outcomes if o["error_class"]
                    ],
                },
            }
        )
    return {"datasets": result, "hours": hours, "now": _iso(store.now())}


def _run(session, run) -> dict:
    from airflow.models.xcom import XComModel

    values = {}
    for task_id, value in session.execute(
        select(XComModel.task_id, XComModel.value).where(
            and_(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value")
        )
    ):
        try:
            values[task_id] = store.xcom_value(value)
        except Exception:  # shown as missing
            continue
    rows = stage_rows(values.get)
    return {
        "run_id": run.run_id,
        "state": str(run.state),
        "start": _iso(run.start_date),
        "end": _iso(run.end_date),
        "rows": {k: rows[k] for k in ("exported", "uploaded", "staged", "target")},
        "reconciled": rows["reconciled"],
        "url": f"/dags/{run.dag_id}/runs/{run.run_id}",
    }


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


@app.get("/api/datasets/{dataset}/events", dependencies=[Depends(_auth_read())])
def dataset_events(dataset: str, session: Session, limit: int = 200) -> dict:
    migrations.ensure_tables(session.get_bind())
    rows = (
        session.execute(
            select(store.events)
            .where(store.events.c.dataset == dataset)
            .order_by(store.events.c.at.desc())
            .limit(min(limit, 1000))
        )
        .mappings()
        .all()
    )
    return {"dataset": dataset, "events": [{**dict(r), "at": _iso(r["at"])} for r in rows]}


@app.post("/api/datasets/{dataset}/limit", dependencies=[Depends(_auth_edit())])
def change_limit(
    dataset: str, change: LimitChange, session: Session, user: Annotated[object, Depends(_user_name())]
) -> dict:
    migrations.ensure_tables(session.get_bind())
    actor = getattr(user, "get_name", lambda: "someone")()
    try:
        result = set_limit(
            session,
            dataset,
            change.slots,
            pin=change.pin and change.slots is not None,
            actor=f"user {actor}",
            reason=change.reason,
        )
    except KeyError:
        raise HTTPException(404, f"no data set {dataset!r} (run `python -m flux_provider.specs pools sync`)") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return result
