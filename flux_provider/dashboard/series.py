"""The timeline's arithmetic: step series from tries, aligned on one time axis, and errors in buckets. Pure."""

from __future__ import annotations

import datetime as dt
from collections import Counter


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite hands back naive UTC
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment


def busy_steps(tries, t0: float, t1: float, end: dt.datetime) -> dict[str, list[tuple[float, int]]]:
    """``running`` and ``queued`` over [t0, t1] as step series ``[(moment, level), ...]`` from the tries'
    queued, start and end times (a try not ended yet counts until ``end``)."""
    deltas: dict[str, Counter] = {"running": Counter(), "queued": Counter()}
    for r in tries:
        queued, started, ended = utc(r.queued_dttm), utc(r.start_date), utc(r.end_date)
        if queued:
            deltas["queued"][max(queued.timestamp(), t0)] += 1
            deltas["queued"][min((started or ended or end).timestamp(), t1)] -= 1
        if started:
            deltas["running"][max(started.timestamp(), t0)] += 1
            deltas["running"][min((ended or end).timestamp(), t1)] -= 1
    steps = {}
    for name, delta in deltas.items():
        level, series = 0, [(t0, 0)]
        for moment in sorted(delta):
            level += delta[moment]
            if series[-1][0] == moment:
                series[-1] = (moment, level)
            else:
                series.append((moment, level))
        steps[name] = series
    return steps


def align(steps: dict[str, list[tuple[float, int]]], t0: float, t1: float) -> tuple[list[float], dict]:
    """Step series on one time axis: every series' value at every moment any of them changes, and at ``t1``."""
    moments = sorted({m for series in steps.values() for m, _ in series} | {t0, t1})
    out: dict[str, list] = {}
    for name, series in steps.items():
        values, i, level = [], 0, series[0][1]
        for moment in moments:
            while i < len(series) and series[i][0] <= moment:
                level = series[i][1]
                i += 1
            values.append(level)
        out[name] = values
    return moments, out


def bucket_seconds(hours: float) -> int:
    """Bucket of the errors chart: about 100 bars over the window, in round minutes."""
    for minutes in (1, 5, 10, 15, 30, 60, 120, 240, 720, 1440):
        if hours * 60 / minutes <= 120:
            return minutes * 60
    return 1440 * 60


def error_buckets(failures, t0: float, t1: float, bucket: int) -> tuple[list[float], dict[str, list[int]]]:
    """``(bucket starts, {error class: failures per bucket})`` of ``failures`` (``(end_date, class)``)."""
    edges = [t0 + i * bucket for i in range(int((t1 - t0) // bucket) + 1)]
    by_class: dict[str, list[int]] = {}
    for ended, error_class in failures:
        index = min(int((utc(ended).timestamp() - t0) // bucket), len(edges) - 1)
        by_class.setdefault(error_class, [0] * len(edges))[index] += 1
    return edges, by_class
