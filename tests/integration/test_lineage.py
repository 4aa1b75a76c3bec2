"""OpenLineage on the stack: one run of the sample bundle (shared with test_specs), reported by Airflow's
OpenLineage provider to the stack's file transport (``<run dir>/openlineage/events.jsonl``), makes a connected
graph per data set:
the SQL Server source -> its S3 location (read by the Hive staging table, a symlink) -> the target table, with
row counts, schemas and 1:1 column lineage; and the dimensions' latest views feed the fact that joins them."""

from __future__ import annotations

from collections import defaultdict

import pytest

from flux_provider.specs.factory import load_specs
from tests.support import REPO

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def events(sample_run):
    return sample_run.events


def node(dataset: dict) -> tuple[str, str]:
    return dataset["namespace"], dataset["name"]


def graph(events: list[dict]) -> dict:
    edges = defaultdict(set)
    for e in events:
        if e.get("eventType") == "COMPLETE":
            for i in e.get("inputs") or []:
                for o in e.get("outputs") or []:
                    edges[node(i)].add(node(o))
    return edges


def reachable(edges: dict, start: tuple[str, str]) -> set:
    seen, todo = set(), [start]
    while todo:
        here = todo.pop()
        for there in edges.get(here, ()):
            if there not in seen:
                seen.add(there)
                todo.append(there)
    return seen


def outputs(events: list[dict], namespace_prefix: str, name: str) -> list[dict]:
    return [
        o
        for e in events
        if e.get("eventType") == "COMPLETE"
        for o in e.get("outputs") or []
        if o["namespace"].startswith(namespace_prefix) and o["name"] == name
    ]


def test_every_sample_data_set_is_a_connected_graph_from_source_to_target(stack, events):
    specs, errors = load_specs(REPO / "dags" / "specs")
    assert not errors and len(specs) == 4
    edges = graph(events)
    nodes = set(edges) | {o for targets in edges.values() for o in targets}
    for spec in specs:
        source = next(n for n in nodes if n[0].startswith("mssql://") and n[1].endswith(f".dbo.{spec.source.table}"))
        bucket, _, prefix = spec.s3_location.removeprefix("s3://").partition("/")
        s3 = (f"s3://{bucket}", prefix)
        target = next(
            n for n in nodes if n[0].startswith("hive://") and n[1] == f"{spec.hive.database}.{spec.hive.target_table}"
        )
        assert s3 in reachable(edges, source), spec.name
        assert target in reachable(edges, s3), spec.name
        written = outputs(events, "s3://", prefix)
        assert any(o.get("outputFacets", {}).get("outputStatistics", {}).get("rowCount") for o in written), spec.name
        exported = [
            o
            for e in events
            if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"{spec.dag_id}.export_upload"
            for o in e.get("outputs") or []
        ]
        assert exported and all("schema" in o["facets"] for o in exported), spec.name  # the columns exported


def test_the_staging_table_reads_the_s3_location_and_counts_are_reported(stack, events):
    specs, _ = load_specs(REPO / "dags" / "specs")
    for spec in specs:
        bucket, _, prefix = spec.s3_location.removeprefix("s3://").partition("/")
        read = [
            i
            for e in events
            if e.get("eventType") == "COMPLETE" and e["job"]["name"].endswith(".transform")
            for i in e.get("inputs") or []
            if i["namespace"] == f"s3://{bucket}" and i["name"] == prefix
        ]
        assert read, spec.name
        staging = read[-1]["facets"]["symlinks"]["identifiers"][0]
        assert staging["name"] == f"{spec.hive.database}.{spec.hive.staging_table}"
        target = outputs(events, "hive://", f"{spec.hive.database}.{spec.hive.target_table}")[-1]
        assert target["outputFacets"]["outputStatistics"]["rowCount"] > 0


def test_a_one_to_one_copy_has_column_lineage_from_the_source(stack, events):
    titles = [o for o in outputs(events, "s3://", "media/titles") if "columnLineage" in o["facets"]][-1]
    fields = titles["facets"]["columnLineage"]["fields"]
    assert set(fields) == {f["name"] for f in titles["facets"]["schema"]["fields"]} and "title_id" in fields
    (source,) = fields["title_id"]["inputFields"]
    assert source["name"].endswith(".dbo.catalog_titles") and source["field"] == "title_id"
    target = outputs(events, "hive://", "media.titles")[-1]
    assert "title_id" in target["facets"]["columnLineage"]["fields"]  # the transform copies columns unchanged


def test_the_dimensions_feed_the_fact_that_joins_them(stack, events):
    edges = graph(events)
    nodes = set(edges) | {o for targets in edges.values() for o in targets}
    fact = next(n for n in nodes if n[0].startswith("hive://") and n[1] == "media.viewing_daily")
    for dimension in ("media.titles", "media.subscribers"):
        start = next(n for n in nodes if n[0].startswith("hive://") and n[1] == dimension)
        assert fact in reachable(edges, start), dimension
