"""The REST client waits like a user on a busy night: timeouts and 502-504 are sent again within a bounded
wait that it names, and a trigger whose answer was lost finds its own run instead of starting a second.

The API server is a function here (httpx's MockTransport): a busy Airflow that drops answers on cue cannot
be made on demand; the stack tests use the real one through the same client."""

from __future__ import annotations

import httpx
import pytest

from flux_devstack.airflow_api import AirflowApiError, AirflowClient


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def client_for(handler, clock: Clock, patience: float = 60.0) -> AirflowClient:
    client = AirflowClient("http://airflow", "admin", "pw", clock=clock, sleep=clock.sleep, patience=patience)
    client._http = httpx.Client(base_url="http://airflow", transport=httpx.MockTransport(handler))
    return client


def login_or(handler):
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        return handler(request)

    return route


def test_a_read_that_times_out_is_sent_again_until_it_is_answered():
    clock, calls = Clock(), []

    def handler(request):
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"state": "success"})

    client = client_for(login_or(handler), clock)
    assert client.request("GET", "/dags/d/dagRuns/r").json() == {"state": "success"}
    assert len(calls) == 3 and clock.now == 3.0  # paused 1 s, then 2 s


def test_the_wait_is_bounded_and_says_what_it_waited_for():
    clock = Clock()
    client = client_for(login_or(lambda request: httpx.Response(503, text="busy")), clock, patience=20)
    with pytest.raises(AirflowApiError) as caught:
        client.request("GET", "/dags")
    assert "did not answer in 15s" in str(caught.value) and "last: HTTP 503" in str(caught.value)
    assert clock.now <= 20


def test_a_trigger_whose_answer_was_lost_finds_its_run_instead_of_starting_another():
    clock, runs = Clock(), []

    def handler(request):
        if request.method == "PATCH":
            return httpx.Response(200, json={})
        if request.method == "POST":
            run_id = httpx.Response(200, content=request.content).json()["dag_run_id"]
            if run_id in runs:
                return httpx.Response(409, json={"detail": "exists"})
            runs.append(run_id)
            raise httpx.ReadTimeout("answer lost", request=request)  # the run was made; the answer is lost
        return httpx.Response(200 if request.url.path.rsplit("/", 1)[-1] in runs else 404, json={})

    run_id = client_for(login_or(handler), clock).trigger("flux_titles")
    assert runs == [run_id]


def test_asset_events_are_asked_again_while_airflow_fails_on_a_run_they_created_that_has_not_started():
    """apache/airflow#71360: Airflow answers 500 for an event whose created run has no start date yet."""
    clock, calls = Clock(), []

    def handler(request):
        calls.append(dict(request.url.params))
        if len(calls) < 3:
            return httpx.Response(500, text="Internal Server Error")
        return httpx.Response(200, json={"asset_events": [{"partition_key": "2026-12-07"}]})

    client = client_for(login_or(handler), clock)
    assert client.asset_events("flux_a", "r1") == [{"partition_key": "2026-12-07"}]
    assert calls[-1] == {"source_dag_id": "flux_a", "source_run_id": "r1"} and clock.now == 4.0

    broken = client_for(login_or(lambda request: httpx.Response(500, text="Internal Server Error")), Clock())
    with pytest.raises(AirflowApiError, match="assets/events of flux_a r1: HTTP 500"):
        broken.asset_events("flux_a", "r1", timeout=10)
