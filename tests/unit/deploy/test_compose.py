"""docker-compose.yaml (the full deployment): a valid Compose file by a Compose Specification parser (the Rust
``compose_spec`` crate, then the spec's JSON-schema model), a start order that can complete, and the same
connections, bundle and settings as the local stack. No Docker engine runs here: this is what can be checked
without one (the README says what was not)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from compose_spec import PyCompose

from tests.support import REPO

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def load(text: str) -> dict:
    """YAML as Compose reads it (anchors and ``<<`` merge keys resolved), validated by the Compose parser."""
    doc = yaml.safe_load(text)
    PyCompose.from_json(json.dumps(doc)).to_spec()
    return doc


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE.read_text())


def default(value: str) -> str:
    """``${VAR:-default}`` as Compose interpolates it with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_the_compose_file_is_valid_and_the_validator_bites(compose):
    assert AIRFLOW_SERVICES | {"airflow-worker", "postgres", "redis", "sqlserver", "hiveserver2"} <= set(
        compose["services"]
    )
    text = COMPOSE.read_text()
    for broken in (
        text.replace(
            '    healthcheck:\n      test: ["CMD", "redis-cli"', '    healtcheck:\n      test: ["CMD", "redis-cli"', 1
        ),
        text.replace("interval: 5s", "interval: 5q", 1),
    ):
        assert broken != text
        with pytest.raises(ValueError):
            load(broken)


def test_every_service_can_start_once_what_it_waits_for_is_healthy_or_done(compose):
    services = compose["services"]
    waits = defaultdict(set)
    for name, service in services.items():
        for other, rule in (service.get("depends_on") or {}).items():
            assert other in services, f"{name} waits for a service that does not exist: {other}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other} to be healthy: it has no check"
            elif rule["condition"] == "service_completed_successfully":
                assert services[other].get("restart") == "no", f"{other} is a one-shot job: restart must be 'no'"
            waits[name].add(other)
    started, pending = set(), set(services)
    while pending:  # a start order exists: no service waits (directly or not) for itself
        ready = {s for s in pending if waits[s] <= started}
        assert ready, f"these services wait for each other: {sorted(pending)}"
        started |= ready
        pending -= ready
    for name in AIRFLOW_SERVICES | {"airflow-worker"}:
        assert "healthcheck" in services[name] and services[name].get("restart") == "unless-stopped"
    assert services["airflow-scheduler"]["deploy"]["replicas"] == 2  # the lease decides which one acts
    assert services["airflow-worker"]["deploy"]["replicas"] == 2


def stack_connections() -> dict[str, dict]:
    from flux_devstack.service import Context
    from flux_devstack.stack import SERVICES

    ctx = Context(
        run_dir=Path("/nonexistent"), ports=defaultdict(lambda: 1), secrets=defaultdict(str), dags_folder=REPO
    )
    out = {}
    for service in SERVICES:
        out.update(service.connections(ctx))
    return out


def test_the_deployment_has_the_local_stacks_connections_bundle_and_settings(compose):
    services = compose["services"]
    env = compose["x-airflow-common"]["environment"]
    ours = stack_connections()
    conns = {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(default(value))
        for key, value in env.items()
        if key.startswith("AIRFLOW_CONN_")
    }
    assert set(conns) == set(ours)
    for conn_id, conn in conns.items():
        assert conn["conn_type"] == ours[conn_id]["conn_type"]
        assert conn.get("host") in (None, *services), f"{conn_id} points at no service of the file"
        assert set(conn.get("extra", {})) == set(ours[conn_id].get("extra", {}))
    assert urlish_host(conns["aws_default"]["extra"]["endpoint_url"]) in services
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["airflow-scheduler"]["command"] == "scheduler --skip-serve-logs"  # as the cluster stack's
    assert "AIRFLOW__FLUX__THROTTLE_PERIOD" in env
    assert "./dags:/opt/airflow/dags" in compose["x-airflow-common"]["volumes"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert "flux_provider.specs pools sync /opt/airflow/dags" in " ".join(services["airflow-init"]["command"])
    # the S3 keys agree wherever they are written
    s3 = json.loads((REPO / "deploy" / "seaweedfs" / "s3.json").read_text())["identities"][0]["credentials"][0]
    core_site = (REPO / "deploy" / "hive" / "core-site.xml").read_text()
    assert (conns["aws_default"]["login"], conns["aws_default"]["password"]) == (s3["accessKey"], s3["secretKey"])
    assert f"<value>{s3['accessKey']}</value>" in core_site and f"<value>{s3['secretKey']}</value>" in core_site


def urlish_host(url: str) -> str:
    return re.match(r"^\w+://([^:/]+)", url).group(1)


def test_the_image_is_the_airflow_the_provider_is_tested_with_and_no_password_is_in_a_command_line(compose):
    pinned = re.search(r"^apache-airflow==([\d.]+)$", (REPO / "constraints" / "constraints-3.11.txt").read_text(), re.M)
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"apache/airflow:{pinned.group(1)}-python3.11" in dockerfile
    assert f'"apache-airflow=={pinned.group(1)}"' in dockerfile and "freetds-bin" in dockerfile
    for name, service in compose["services"].items():
        argv = []
        for key in ("entrypoint", "command"):
            value = service.get(key) or []
            argv += value if isinstance(value, list) else [value]
        argv += (service.get("healthcheck") or {}).get("test", [])
        assert not [a for a in argv if re.search(r"(^|\s)-P(\s|$)|PASSWORD|--password", str(a))], name
    assert "$(FLUX_MSSQL_PASSWORD)" in (REPO / "deploy" / "sqlserver" / "init.sql").read_text()


def test_every_module_a_service_runs_is_in_the_image(compose):
    """A ``python -m <module>`` of a service is either installed (the wheel: flux_provider, Airflow) or copied
    into the image's working directory (the dev stack's sample data generator, which the wheel lacks)."""
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY .* /opt/flux/(\w+)$", dockerfile, re.M))
    for name, service in compose["services"].items():
        argv = service.get("entrypoint") or []
        if argv[:2] == ["python", "-m"] and argv[2].split(".")[0] not in ("airflow", "flux_provider"):
            assert argv[2].split(".")[0] in copied and service.get("working_dir") == "/opt/flux", name
