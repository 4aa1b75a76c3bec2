"""The DAG's documentation page (``doc_md``): what a person sees of a data set in the Airflow UI."""

from __future__ import annotations

from flux_provider.specs.model import DatasetSpec


def _asset_partitions(plan) -> str:
    """What the schedule's partitions are, as the plan decided (``plan``: its SchedulePlan, or None)."""
    if plan is None or not plan.grain:
        return "none (each run loads what its schedule gives)"
    text = f"one run per {plan.grain}, key `{plan.key_format}`"
    if plan.waits_for:
        text += "; starts when written by " + ", ".join(f"`{name}`" for name, _ in plan.waits_for)
    if plan.reads_latest:
        text += "; reads as they are " + ", ".join(f"`{name}`" for name in plan.reads_latest)
    return text


def doc_md(spec: DatasetSpec, schedule_plan=None) -> str:
    src = spec.source
    source = f"`{src.schema}.{src.table}`" if src.table else "a query"
    parts = (
        ", ".join(f"{p.name} {p.type}" + (f" = `{p.value}`" if p.value else " (dynamic)") for p in spec.hive.partitions)
        or "none"
    )
    schedule = (
        f"after {', '.join(spec.schedule.after)}"
        if spec.schedule.after
        else f"`{spec.schedule.cron}`"
        if spec.schedule.cron
        else "manual"
    )
    rules = "\n".join(
        f"{i}. match {_match_text(r.match)} -> {', '.join(a.kind for a in r.actions)}"
        for i, r in enumerate(spec.rules, 1)
    )
    rules += ("\n\n" if rules else "") + (
        "then the defaults: terminal error classes fail at once, others retry 5 "
        "times a minute apart; then fail and alert"
    )
    return f"""### Data set `{spec.name}`

{spec.description}

| | |
| --- | --- |
| owner | {spec.owner} |
| alerts | {", ".join(spec.emails + spec.webhooks) or "none"} |
| source | {source} on connection `{src.connection}` |
| export | {spec.export.engine} engine, {spec.export.mode} mode |
| S3 | `{spec.s3_location}` ({spec.chunking.compression or "plain"} chunks) |
| Hive | `{spec.hive.database}.{spec.hive.staging_table}` -> `{spec.hive.database}.{spec.hive.target_table}` |
| partitions | {parts} |
| split | {_split_text(spec)} |
| schedule | {schedule} (at most {spec.schedule.max_active_runs} run(s) at once) |
| Airflow partitions | {_asset_partitions(schedule_plan)} |
| pool | `{spec.throttle.pool}`: {spec.throttle.initial} slots (adaptive {spec.throttle.min}-{spec.throttle.max}) |
| spec | `{spec.path.name}` |

**Recovery rules**

{rules}

**Transform**

```sql
{spec.hive.transform_sql}
```
"""


def _split_text(spec: DatasetSpec) -> str:
    split, queries = spec.source.split, spec.source.queries
    if queries:
        return f"{len(queries)} named queries: {', '.join(name for name, _ in queries)}"
    if split is None:
        return "none: one query"
    if split.every:
        return f"one part per {split.every} of the data interval, by `{split.column}`"
    return f"{split.parts} key ranges of `{split.column}` (and its NULLs)"


def _match_text(match) -> str:
    fields = {
        "class": match.error_class,
        "number": match.number,
        "exit code": match.exit_code,
        "message": match.message,
        "step": match.step,
    }
    return ", ".join(f"{k} {v!r}" for k, v in fields.items() if v is not None) or "any error"
