"""A small client for Airflow 3's REST API (``/api/v2``), as a user of the UI would act.

Used by ``devstack trigger`` and by the tests to run DAGs through the real
scheduler: log in for a JWT, wait for the DAG to be parsed, unpause it,
trigger a run and wait for its final state.

It waits like a user on a busy night: a request that times out, cannot connect or
gets a 502/503/504 is sent again, with a growing pause, until ``patience`` seconds
have passed since the first send (then it fails and says what it waited for). A
trigger carries its run id, so a trigger sent again after a lost answer finds its
run (409) instead of starting a second one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

FINAL_STATES = {"success", "failed"}
#: Answers a busy API server gives that a later try can change.
BUSY = {502, 503, 504}

log = logging.getLogger(__name__)


class AirflowApiError(RuntimeError):
    pass


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    duration: float
    task_states: dict[str, str]


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        patience: float = 300.0,
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        self.patience = patience
        self._username, self._password = username, password
        self._clock, self._sleep = clock, sleep
        self._token: str | None = None

    def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One request, sent again while the server is busy (see the module), at most ``patience`` seconds."""
        started, pause, attempt = self._clock(), 1.0, 1
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
                if response.status_code not in BUSY:
                    return response
                problem = f"HTTP {response.status_code}"
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            waited = self._clock() - started
            if waited + pause > self.patience:
                raise AirflowApiError(
                    f"{method} {url}: the API server at {self.base_url} did not answer in {waited:.0f}s "
                    f"({attempt} tries, last: {problem}); is it overloaded or down? (`make status`)"
                )
            log.warning(
                "%s %s: %s; trying again in %.0fs (waited %.0fs of %.0fs)",
                method,
                url,
                problem,
                pause,
                waited,
                self.patience,
            )
            self._sleep(pause)
            pause, attempt = min(pause * 2, 15.0), attempt + 1

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = self._send("POST", "/auth/token", json={"username": self._username, "password": self._password})
            if response.status_code not in (200, 201):
                raise AirflowApiError(
                    f"login to {self.base_url} as {self._username!r} failed: "
                    f"HTTP {response.status_code} {response.text[:200]}"
                )
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, *, headers: dict | None = None, **kwargs) -> httpx.Response:
        response = self._send(method, "/api/v2" + path, headers={**self._headers(), **(headers or {})}, **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def plugin(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request to a plugin's app mounted in the API server (``/flux/api/...``), logged in."""
        response = self._send(method, path, headers=self._headers(), **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; raise with its import error if any."""
        deadline = self._clock() + timeout
        while True:
            response = self._send("GET", f"/api/v2/dags/{dag_id}", headers=self._headers())
            if response.status_code == 200:
                return response.json()
            if self._clock() > deadline:
                errors = self.request("GET", "/importErrors").json().get("import_errors", [])
                detail = "; ".join(f"{e['filename']}: {e['stack_trace'][-300:]}" for e in errors) or "none"
                raise AirflowApiError(f"DAG {dag_id!r} was not parsed within {timeout:.0f}s (import errors: {detail})")
            self._sleep(2)

    def trigger(
        self,
        dag_id: str,
        conf: dict | None = None,
        run_id: str | None = None,
        logical_date: str | None = None,
        partition_key: str | None = None,
    ) -> str:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run_id = run_id or f"manual__flux_{uuid.uuid4().hex[:12]}"
        body: dict = {"logical_date": logical_date, "conf": conf or {}, "dag_run_id": run_id}
        if partition_key:
            body["partition_key"] = partition_key
        response = self._send("POST", f"/api/v2/dags/{dag_id}/dagRuns", headers=self._headers(), json=body)
        if response.status_code == 409 and self._run_exists(dag_id, run_id):  # an earlier send got through
            return run_id
        if response.status_code >= 400:
            raise AirflowApiError(f"POST /dags/{dag_id}/dagRuns: HTTP {response.status_code} {response.text[:300]}")
        return response.json()["dag_run_id"]

    def clear(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear a task of a run and its downstream tasks, as the UI's Clear does: the run starts again."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        }
        self.request("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)

    def _run_exists(self, dag_id: str, run_id: str) -> bool:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=self._headers()).status_code == 200

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        items = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in items}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        """A task's XCom value, or None if it pushed none."""
        response = self._send(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            headers=self._headers(),
        )
        return response.json().get("value") if response.status_code == 200 else None

    def asset_events(self, dag_id: str, run_id: str, timeout: float = 120.0) -> list[dict]:
        """The asset events run ``run_id`` of ``dag_id`` wrote. Airflow up to 3.3 answers 500 for events of
        which a run they created has not started yet (apache/airflow#71360, a queued or cleared run has no
        start date): asked again until that run starts, at most ``timeout`` seconds."""
        params = {"source_dag_id": dag_id, "source_run_id": run_id}
        deadline = self._clock() + timeout
        while True:
            response = self._send("GET", "/api/v2/assets/events", headers=self._headers(), params=params)
            if response.status_code != 500 or self._clock() > deadline:
                break
            log.info("asset events of %s %s: HTTP 500 (a run they created has not started); again", dag_id, run_id)
            self._sleep(2)
        if response.status_code >= 400:
            raise AirflowApiError(f"GET /assets/events of {dag_id} {run_id}: HTTP {response.status_code}")
        return response.json()["asset_events"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> DagRunResult:
        start = self._clock()
        while True:
            run = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in FINAL_STATES:
                return DagRunResult(
                    dag_id, run_id, run["state"], self._clock() - start, self.task_states(dag_id, run_id)
                )
            if self._clock() - start > timeout:
                raise AirflowApiError(
                    f"DAG run {dag_id}/{run_id} still {run['state']} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            self._sleep(2)

    def run_dag(
        self,
        dag_id: str,
        conf: dict | None = None,
        timeout: float = 600.0,
        logical_date: str | None = None,
        partition_key: str | None = None,
    ) -> DagRunResult:
        """Trigger ``dag_id`` (``logical_date`` None: a run without one, as the UI's default; ``partition_key``:
        a partitioned data set's partition) and wait."""
        self.wait_for_dag(dag_id)
        run_id = self.trigger(dag_id, conf, logical_date=logical_date, partition_key=partition_key)
        return self.wait_for_run(dag_id, run_id, timeout)
