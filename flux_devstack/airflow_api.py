"""A small client for Airflow 3's REST API (``/api/v2``), as a user of the UI would act.

Used by ``devstack trigger`` and by the tests to run DAGs through the real
scheduler: log in for a JWT, wait for the DAG to be parsed, unpause it,
trigger a run and wait for its final state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

FINAL_STATES = {"success", "failed"}


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
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        self._username, self._password = username, password
        self._clock, self._sleep = clock, sleep
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
            if response.status_code not in (200, 201):
                raise AirflowApiError(
                    f"login to {self.base_url} as {self._username!r} failed: "
                    f"HTTP {response.status_code} {response.text[:200]}"
                )
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, *, headers: dict | None = None, **kwargs) -> httpx.Response:
        response = self._http.request(
            method, "/api/v2" + path, headers={**self._headers(), **(headers or {})}, **kwargs
        )
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def plugin(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request to a plugin's app mounted in the API server (``/flux/api/...``), logged in."""
        response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; raise with its import error if any."""
        deadline = self._clock() + timeout
        while True:
            response = self._http.get(f"/api/v2/dags/{dag_id}", headers=self._headers())
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
        body: dict = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        if partition_key:
            body["partition_key"] = partition_key
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        items = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in items}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        """A task's XCom value, or None if it pushed none."""
        response = self._http.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            headers=self._headers(),
        )
        return response.json().get("value") if response.status_code == 200 else None

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
