"""The adaptive limit: pure, time passed in, no sleeping."""

from __future__ import annotations

import pytest

from flux_provider.throttle.limits import AIMD, Gradient, Sample


def ok(t: float, inflight: int, latency: float = 30.0) -> Sample:
    return Sample(time=t, latency=latency, inflight=inflight)


def failed(t: float, error_class: str, inflight: int = 1, latency: float = 10.0) -> Sample:
    return Sample(time=t, latency=latency, inflight=inflight, failed=True, error_class=error_class)


@pytest.mark.parametrize(
    "start, samples, expected, reason",
    [
        (4, [ok(60, 4)], 6, "saturated without load failures (slow start)"),
        (4, [ok(60, 1)], 4, "not saturated"),
        (4, [], 4, "not saturated"),
        (4, [failed(60, "deadlock", 4)] + [ok(60, 4)] * 2, 2, "1 load failure(s) (deadlock x1): x0.5"),
        (4, [failed(60, "timeout", 4)] + [ok(60, 4)] * 9, 3, "1 load failure(s) (timeout x1): -1"),
        (4, [failed(60, "syntax", 4), failed(60, "login", 4)], 6, "saturated without load failures"),
        (8, [failed(60, "throttled", 8)] * 3, 4, "3 load failure(s) (throttled x3): x0.5"),
        (1, [failed(60, "connection")], 1, "x0.5"),
        (8, [ok(60, 8)], 8, "already at the maximum 8"),
    ],
)
def test_one_period(start, samples, expected, reason):
    limit = AIMD(low=1, high=8, value=start)
    decision = limit.update(samples, now=60)
    assert (decision.value, limit.value) == (expected, expected)
    assert reason in decision.reason


def test_only_load_classes_count_and_they_can_be_overridden():
    assert AIMD(value=4).update([failed(60, "data", 4)] * 5, 60).value == 6
    strict = AIMD(value=4, load_classes=frozenset({"data"}))
    assert strict.update([failed(60, "data", 4)] * 5, 60).value == 2


def test_bounds_hold_and_bad_bounds_are_refused():
    limit = AIMD(low=2, high=3, value=2)
    for t in range(60, 600, 60):
        limit.update([ok(t, 3)], t)
        assert 2 <= limit.value <= 3
        limit.update([failed(t + 30, "timeout", 3)] * 4, t + 30)
        assert 2 <= limit.value <= 3
    with pytest.raises(ValueError):
        AIMD(low=3, high=2, value=2)


def test_failures_of_tasks_started_before_a_decrease_are_not_counted_again():
    limit = AIMD(value=8, cooldown=60)
    limit.update([failed(60, "timeout", 8)] * 5, 60)
    assert limit.value == 4
    # these started at t=30, under the old limit of 8
    decision = limit.update([failed(130, "timeout", 4, latency=100)] * 5 + [ok(130, 4)], 130)
    assert (limit.value, decision.reason) == (5, "saturated without load failures")
    # the same failures from tasks started after the decrease do count
    assert "load failure" in limit.update([failed(200, "timeout", 5, latency=20)] * 5, 200).reason


def test_a_failed_probe_goes_back_to_the_last_good_limit():
    limit = AIMD(value=6, slow_start=False, cooldown=0)
    limit.update([ok(60, 6)], 60)  # 6 ran clean: good
    assert limit.value == 7
    limit.update([failed(120, "deadlock", 7)] + [ok(120, 7)] * 10, 120)
    assert (limit.value, limit.good, limit.ceiling) == (6, 6, 7)
    for t in (180, 240):  # holds below the ceiling for probe_after periods
        assert "holding below 7" in limit.update([ok(t, 6)], t).reason
    assert "probing 7 again" in limit.update([ok(300, 6)], 300).reason and limit.value == 7
    limit.update([ok(360, 7)], 360)  # the probe ran clean: the ceiling is lifted
    assert limit.ceiling is None and limit.value == 8


def test_a_limit_set_from_outside_is_not_a_probe():
    """Memory of the last good limit only undoes the limit's own probes, not a person's change."""
    limit = AIMD(value=6, slow_start=False, cooldown=0)
    limit.update([ok(60, 6)], 60)  # good = 6, probes 7
    limit.update([failed(120, "deadlock", 7)] * 5, 120)  # severe, at a probe: back to 6
    assert limit.value == 6
    limit.update([ok(180, 6)], 180)
    limit.reset_to(8)  # someone sets 8 slots
    decision = limit.update([failed(240, "deadlock", 8)] * 5, 240)
    assert (limit.value, decision.reason.endswith("x0.5")) == (4, True)


def simulate(capacity_at, periods: int, start: int = 2) -> list[int]:
    """A toy source: every task beyond the capacity fails with a timeout; each period is one batch."""
    limit = AIMD(low=1, high=32, value=start, cooldown=60)
    values = []
    for i in range(1, periods + 1):
        t = i * 60.0
        cap = capacity_at(t)
        running = limit.value
        samples = [ok(t, running, 20)] * min(running, cap) + [failed(t, "timeout", running, 20)] * max(0, running - cap)
        limit.update(samples, t)
        values.append(limit.value)
    return values


@pytest.mark.parametrize("capacity", [3, 8, 20])
def test_converges_to_the_capacity_and_oscillation_stays_bounded(capacity):
    values = simulate(lambda t: capacity, 60)
    settled = values[15:]
    assert min(settled) >= capacity - max(1, capacity // 4)  # never far below: throughput kept
    assert max(settled) <= capacity + 1  # probes go one above, never more
    assert sum(v > capacity for v in settled) <= len(settled) / 3  # most periods at or below capacity


def test_shrinks_fast_when_the_source_gets_worse_and_grows_back():
    values = simulate(lambda t: 8 if t < 1800 or t >= 3600 else 2, 90)
    trouble = values[30:60]
    assert max(trouble[3:]) <= 3  # within 3 periods of the drop, at most one above the capacity
    recovered = values[75:]
    assert min(recovered) >= 6  # within 15 periods of the recovery, back near 8


def test_a_rules_throttle_down_factor_sets_the_cut():
    """<throttleDown factor="0.25"/>: the failure counts as load whatever its class and cuts by its factor
    (a single failure among many would otherwise only step down by one)."""
    cut = Sample(time=60, latency=10, inflight=8, failed=True, error_class="unknown", throttle_down=0.25)
    decision = AIMD(value=8).update([cut] + [ok(60, 8)] * 9, 60)
    assert decision.value == 2 and "throttleDown x0.25" in decision.reason
    gentle = Sample(time=60, latency=10, inflight=8, failed=True, error_class="deadlock", throttle_down=0.75)
    assert AIMD(value=8).update([gentle] * 5, 60).value == 6  # not the severe default x0.5


def test_a_try_lost_to_the_orchestrator_never_grows_the_pool():
    """A try killed by a signal or the OOM killer, or lost by a starved host, says nothing about the source:
    no growth, no cut (flux 1.0 recorded them as "crash")."""
    for kind in ("lost", "crash"):
        gone = Sample(time=60, latency=5, inflight=4, failed=True, error_class=kind)
        decision = AIMD(value=4).update([gone, ok(60, 4), ok(60, 4)], 60)
        assert decision.value == 4 and "lost to the orchestrator" in decision.reason


# ------------------------------------------------------------------ the gradient limit
def source(n: int, capacity: int, base: float = 4.0, load: float = 0.25, slowdown: float = 3.0) -> tuple[float, bool]:
    """A toy source like the stand-in's model: latency grows with the load, steeply above the capacity, and
    from two above it queries fail."""
    return base + load * (n - 1) + slowdown * max(0, n - capacity), n - capacity >= 2


def run_gradient(limit, capacity_at, periods: int, period: float = 60.0) -> tuple[list[int], int]:
    """Each period the pool runs ``limit.value`` tries that started in it; returns the limits and failures."""
    values, failures = [], 0
    for i in range(1, periods + 1):
        t = i * period
        n = limit.value
        latency, fails = source(n, capacity_at(t))
        samples = [
            Sample(time=t, latency=latency + 2, inflight=n, first_row=latency, failed=fails, error_class="deadlock")
            if fails
            else Sample(time=t, latency=latency + 2, inflight=n, first_row=latency)
            for _ in range(n)
        ]
        failures += sum(s.failed for s in samples)
        limit.update(samples, t)
        values.append(limit.value)
    return values, failures


def test_gradient_steps_down_on_latency_with_a_readable_reason():
    limit = Gradient(value=5, cooldown=60)
    limit.update([Sample(time=60, latency=6, inflight=1, first_row=4.0)], 60)  # the baseline: 4 s
    assert limit.baseline == 4.0
    decision = limit.update([Sample(time=120, latency=10, inflight=5, first_row=8.4)] * 5, 120)
    assert decision.value == 4
    assert decision.reason == "latency 2.1x the baseline (8.4 s vs 4.0 s): 5 -> 4"
    assert limit.ceiling == 5


def test_gradient_judges_only_tries_that_started_under_the_current_limit():
    limit = Gradient(value=4, cooldown=60)
    limit.update([Sample(time=60, latency=5, inflight=4, first_row=4.0)] * 4, 60)  # 4 -> 6 (idle source)
    assert limit.value == 6
    # ended at 115 after 60 s: it started at 55, under the old limit of 4
    stale = Sample(time=115, latency=60, inflight=4, first_row=12.0)
    assert "no try started under 6 slots" in limit.update([stale], 115).reason and limit.value == 6


def test_gradient_holds_in_between_and_grows_by_one():
    limit = Gradient(value=4, cooldown=60, baseline=None)
    limit.update([Sample(time=60, latency=5, inflight=1, first_row=4.0)], 60)
    decision = limit.update([Sample(time=120, latency=5, inflight=limit.value, first_row=5.2)] * 4, 120)
    assert decision.reason.endswith(f"{decision.value - 1} -> {decision.value}")  # 1.3x: +1


def test_gradient_errors_still_cut_as_aimd_does():
    limit = Gradient(value=8, cooldown=60)
    decision = limit.update([failed(60, "deadlock", 8)] * 4, 60)
    assert decision.value == 4 and "load failure" in decision.reason


@pytest.mark.parametrize("capacity", [2, 4, 6])
def test_gradient_finds_the_capacity_without_failing_the_source(capacity):
    values, failures = run_gradient(Gradient(low=1, high=16, value=1, cooldown=60), lambda t: capacity, 40)
    assert all(capacity - 1 <= v <= capacity + 1 for v in values[10:])
    assert failures == 0  # latency stops it one above the capacity, before queries fail


def test_gradient_follows_capacity_changes_within_three_periods_with_fewer_failures_than_aimd():
    def capacity_at(t):
        return 4 if t <= 20 * 60 else 2 if t <= 40 * 60 else 6

    gradient, gradient_failures = run_gradient(Gradient(low=1, high=16, value=4, cooldown=60), capacity_at, 60)
    aimd, aimd_failures = run_gradient(AIMD(low=1, high=16, value=4, cooldown=60), capacity_at, 60)
    for change, capacity in ((20, 2), (40, 6)):
        settled = gradient[change + 3 : change + 20]
        assert all(capacity - 1 <= v <= capacity + 1 for v in settled), (capacity, settled)
    assert gradient_failures < aimd_failures


def test_gradient_compares_times_to_first_row_with_each_other_not_with_try_durations():
    """A try without a first row (an empty part) reports only its duration: a different measure, left out
    while other tries of the period have a first row, so it never becomes the baseline."""
    limit = Gradient(value=4, cooldown=60)
    empty = Sample(time=60, latency=0.7, inflight=4)  # no first row
    limit.update([empty] + [Sample(time=60, latency=9, inflight=4, first_row=6.0)] * 3, 60)
    assert limit.baseline == 6.0


def test_gradient_never_judges_first_row_times_by_other_tasks_durations():
    """The pool's other tasks (a transform after the exports) report only durations: once the baseline is a
    time to first row, a period of them alone says nothing about the source."""
    limit = Gradient(value=6, cooldown=60)
    limit.update([Sample(time=60, latency=9, inflight=6, first_row=6.0)] * 6, 60)
    transform = Sample(time=200, latency=40, inflight=1)
    decision = limit.update([transform], 200)
    assert decision.value == limit.value and "no try started" in decision.reason


def test_gradient_ignores_jitter_of_queries_that_answer_in_milliseconds():
    """0.05 s then 0.2 s to the first row is 4x, but below a second it is noise, not a queue."""
    limit = Gradient(value=4, cooldown=60)
    limit.update([Sample(time=60, latency=5, inflight=4, first_row=0.05)] * 4, 60)
    decision = limit.update([Sample(time=120, latency=5, inflight=limit.value, first_row=0.2)] * 6, 120)
    assert decision.value >= 6 and "latency 1.0x" in decision.reason
