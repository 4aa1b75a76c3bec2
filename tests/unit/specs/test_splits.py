"""Split exports (pure): every row in exactly one part, the spec's <split> and named queries, the mapped DAG."""

from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3

import pytest

from flux_provider import splits
from flux_provider.specs import SpecError, load_spec
from tests.support.specs import MINIMAL, write

TABLE = '<source schema="dbo" table="events"/>'


def edit(old: str, new: str) -> str:
    text = MINIMAL.format(name="events")
    assert old in text
    return text.replace(old, new)


def spec_error(tmp_path, text: str) -> str:
    with pytest.raises(SpecError) as failure:
        load_spec(write(tmp_path, text))
    assert failure.value.error_class.value == "config"
    return str(failure.value)


def rows_per_part(values: list, parts: list[splits.Part]) -> list[int]:
    """Run each part's predicate on SQLite (CONVERT(type, 'x', style) is the literal there) over ``values``."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k)")
    db.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    counts = []
    for part in parts:
        predicate = re.sub(r"CONVERT\(\w+, ('[^']*'), \d+\)", r"\1", part.predicate).replace("[k]", "k")
        counts.append(db.execute(f"SELECT COUNT(*) FROM t WHERE {predicate}").fetchone()[0])
    return counts


@pytest.mark.parametrize("seed", range(20))
def test_integer_ranges_put_every_row_in_exactly_one_part(seed):
    rng = random.Random(seed)
    low = rng.randint(-(2**40), 2**40)
    values = [rng.randint(low, low + rng.randint(0, 5000)) for _ in range(rng.randint(1, 400))]
    values += [None] * rng.randint(0, 5)
    wanted = rng.randint(1, 40)
    keys = [v for v in values if v is not None]
    bounds = splits.integer_bounds(min(keys), max(keys), wanted)
    parts = splits.range_parts("dbo.t", "[k]", bounds, "bigint", nullable=True, count=False)
    counts = rows_per_part(values, parts)
    assert sum(counts) == len(values)  # none twice, none missed
    assert len(parts) == min(wanted, max(keys) - min(keys) + 1) + 1  # fewer parts when there are fewer keys
    assert parts[-1].name == splits.NULL_PART and counts[-1] == values.count(None)


def test_even_integer_ranges_have_even_sizes():
    parts = splits.range_parts("t", "[k]", splits.integer_bounds(1, 16_000, 16), "int", nullable=False, count=True)
    assert rows_per_part(list(range(1, 16_001)), parts) == [1000] * 16
    assert [p.name for p in parts] == [f"p{i:02d}" for i in range(16)]
    assert parts[0].predicate == "[k] < 1001" and parts[-1].predicate == "[k] >= 15001"  # open at both ends
    assert parts[3].count_sql == "SELECT COUNT(*) FROM t WHERE [k] >= 3001 AND [k] < 4001"


def test_a_single_key_or_an_empty_table_is_one_part():
    assert [p.predicate for p in splits.range_parts("t", "[k]", [], "int", nullable=False, count=False)] == [
        "[k] IS NOT NULL"
    ]
    assert splits.integer_bounds(7, 7, 16) == []


def test_time_ranges_cut_on_whole_seconds_and_cover_everything():
    low, high = dt.datetime(2026, 3, 1, 0, 0, 0, 123000), dt.datetime(2026, 3, 4, 23, 59, 59, 999000)
    bounds = splits.time_bounds(low, high, 8, whole_days=False)
    assert len(bounds) == 7 and all(b.microsecond == 0 for b in bounds)
    parts = splits.range_parts("t", "[k]", bounds, "datetime2", nullable=False, count=False)
    assert parts[1].predicate.startswith("[k] >= CONVERT(datetime2, '2026-03-01 12:00:00', 120) AND")
    rng = random.Random(3)
    values = [(low + (high - low) * rng.random()).isoformat(" ", "milliseconds") for _ in range(500)]
    assert sum(rows_per_part(values, parts)) == 500


def test_dates_cut_on_whole_days():
    bounds = splits.time_bounds(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 3), 16, whole_days=True)
    assert bounds == [dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 3)]  # one part per day when days are few
    assert len(splits.time_bounds(dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 31), 4, whole_days=True)) == 3
    assert splits.literal(bounds[0], "date") == "CONVERT(date, '2026-01-02', 23)"


def test_windows_cover_the_interval_by_day_or_hour():
    start = dt.datetime(2026, 3, 1, 3)
    assert splits.windows(start, start + dt.timedelta(days=2), "day") == [
        (start, start + dt.timedelta(days=1)),
        (start + dt.timedelta(days=1), start + dt.timedelta(days=2)),
    ]
    hours = splits.windows(start, start + dt.timedelta(hours=5, minutes=30), "hour")
    assert len(hours) == 6 and hours[-1][1] == start + dt.timedelta(hours=5, minutes=30)
    parts = splits.window_parts("t", "[k]", hours, "datetime2", count=False)
    assert parts[0].predicate == (
        "[k] >= CONVERT(datetime2, '2026-03-01 03:00:00', 120) AND [k] < CONVERT(datetime2, '2026-03-01 04:00:00', 120)"
    )


# ------------------------------------------------------------------ the spec
def test_a_spec_declares_a_key_range_split(tmp_path):
    text = edit(TABLE, '<source schema="dbo" table="events"><split column="id" parts="16"/></source>')
    spec = load_spec(write(tmp_path, text))
    assert spec.source.split == splits_model(column="id", parts=16) and spec.source.is_split


def splits_model(**kwargs):
    from flux_provider.specs.model import Split

    return Split(**kwargs)


def test_a_spec_declares_named_queries(tmp_path):
    source = """<source>
    <query name="eu">SELECT id, at FROM dbo.events WHERE region = 'eu'</query>
    <query name="us">SELECT id, at FROM dbo.events WHERE region = 'us'</query>
    <countQuery>SELECT COUNT(*) FROM dbo.events</countQuery>
  </source>"""
    spec = load_spec(write(tmp_path, edit(TABLE, source)))
    assert [name for name, _ in spec.source.queries] == ["eu", "us"] and spec.source.query is None


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            '<split column="id" parts="0"/>',
            r"<split parts=>: '0' is not valid for <split parts=>, which takes a whole number of 1 or more",
        ),
        ('<split column="id" parts="100000"/>', r"<split parts=>: parts=100000: at most 256 parts per run"),
        ('<split column="id"/>', r"<split>: give exactly one of parts= .* or every="),
        ('<split column="id" parts="4" every="day"/>', r"<split>: give exactly one of parts="),
        ('<split column="id; DROP TABLE x" parts="4"/>', r"<split column=>: split column .* is not a valid SQL Server"),
        (
            '<split column="id" every="week"/>',
            r"<split every=>: 'week' is not one of the values <split every=> takes. Fix: write one of: day, hour",
        ),
    ],
)
def test_bad_splits_are_located_and_explained(tmp_path, source, expected):
    text = edit(TABLE, f'<source schema="dbo" table="events">{source}</source>')
    assert re.search(expected, spec_error(tmp_path, text))


def test_a_time_split_needs_a_schedule_with_intervals(tmp_path):
    text = edit(TABLE, '<source schema="dbo" table="events"><split column="at" every="day"/></source>')
    load_spec(write(tmp_path, text))  # cron: fine
    after = text.replace("<cron>0 3 * * *</cron>", "<after>other</after>")
    assert "<split every=>: a split every day exports each run's data interval" in spec_error(tmp_path, after)


def test_a_split_is_streamed(tmp_path):
    split = '<source schema="dbo" table="events"><split column="id" parts="4"/></source>'
    text = edit(TABLE, split + '<export mode="file"/>')
    assert "<export mode=>: a split export runs each part as one streaming task" in spec_error(tmp_path, text)


@pytest.mark.parametrize(
    "queries, expected",
    [
        ("<query>SELECT 1 AS a</query><query>SELECT 2 AS a</query>", r"each is a part of the export and needs a name"),
        ('<query name="a">SELECT 1 AS a</query><query name="A">SELECT 2 AS a</query>', r"'A' is already used on line"),
        ('<query name="a">SELECT 1 AS a</query><query name="b">DELETE FROM dbo.t</query>', r"<query>: .*"),
        (
            '<query name="a">SELECT 1 AS a</query><query name="b">SELECT 2 AS a</query><split column="a" parts="2"/>',
            r"the named <query> elements are parts already",
        ),
    ],
)
def test_bad_named_queries_are_refused(tmp_path, queries, expected):
    assert re.search(expected, spec_error(tmp_path, edit(TABLE, f"<source>{queries}</source>")))


def test_a_split_data_set_maps_one_export_per_part_in_its_pool(tmp_path):
    from flux_provider.specs.factory import build_dag

    text = edit(
        TABLE,
        '<source schema="dbo" table="events"><split column="id" parts="8"/><countQuery>SELECT COUNT(*) FROM dbo.events'
        "</countQuery></source>",
    )
    dag = build_dag(load_spec(write(tmp_path, text)))
    assert {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} == {
        "plan": ["export_upload"],
        "export_upload": ["publish"],
        "publish": ["transform"],
        "transform": ["refresh"],
        "refresh": [],
    }
    mapped = dag.get_task("export_upload")
    assert mapped.is_mapped and mapped.partial_kwargs["pool"] == "flux_events"
    assert mapped.partial_kwargs["retries"] >= 5  # the scheduler reads a mapped task's retries before it exists
    assert dag.get_task("plan").reconcile and dag.get_task("publish").count_sql is None
    assert dag.get_task("transform").upload_task_id == "publish"
