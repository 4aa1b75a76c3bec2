"""Concurrency limits that adapt to a source's load: pure, Airflow-free, time passed in (tests never sleep).

A limit is fed, once per controller period, the samples of that period (tasks
that finished: latency, whether they failed and with which error class, and how
many were in flight) and answers the new limit, always within ``[low, high]``.

* :class:`AIMD`: slow start (doubling while the limit is saturated and nothing
  failed) until the first overload, then additive increase / multiplicative
  decrease. Only *load* failures (timeouts, deadlocks, throttling, connection
  resets: ``ErrorClass.load_related``, overridable per data set) decrease it;
  a syntax error or a bad password says nothing about load.
  It remembers the last limit that ran clean (``good``) and the lowest that
  overloaded (``ceiling``): a probe above ``good`` that fails goes straight back
  to it, growth stops just below ``ceiling`` and probes it again only after
  ``probe_after`` quiet periods. A few failures step down by one; a severe
  period (``severe_fraction`` of the tasks failing) halves the limit.

* :class:`Gradient`: the same safety net on load failures, and before them the
  source's latency: each try's time to its first row (the query's own, without
  Airflow's queueing; the try's duration when an operator does not report it)
  against the baseline, the lowest latency of the recent periods. At
  ``tolerance`` times the baseline the source is queueing: the limit steps
  down (by one, or by ``tolerance / ratio`` when far above) and remembers the
  level as a ceiling; near the baseline it grows by half (two at most), in
  between by one.
  Only tries that started under the current limit are judged, so a change is
  never judged on tries that ran before it (the idea of Netflix's
  concurrency-limits Gradient2 and Vegas, at the pace of a controller period).

Failures of tasks that started before the last decrease ran under the old limit
and are not counted again; after a decrease the limit holds for ``cooldown``
seconds. Both bound oscillation. A pin (a person's value) lives in the
controller, above the algorithm; :data:`ALGORITHMS` names the limits a data set
or pool can choose.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flux_provider.errors import ErrorClass

DEFAULT_LOAD_CLASSES = frozenset(c.value for c in ErrorClass if c.load_related)
#: Tries lost to the orchestrator ("crash": what flux 1.0 recorded them as): the host, not the source.
LOST_CLASSES = frozenset({ErrorClass.LOST.value, "crash"})


@dataclass(frozen=True)
class Sample:
    """One finished task of a data set: when, how long, how many ran beside it, and how it ended."""

    time: float
    latency: float
    inflight: int
    failed: bool = False
    error_class: str | None = None
    throttle_down: float | None = None  # a rule's <throttleDown factor=>: load whatever its class, cut by it
    first_row: float | None = None  # seconds from sending the query to its first row, when the operator said
    query_seconds: float | None = None  # seconds the export's query ran at the source (an empty result has no row)

    @property
    def timed_at_source(self) -> bool:
        """The operator timed the source itself (not the whole try, which is mostly the orchestrator's)."""
        return self.first_row is not None or self.query_seconds is not None

    @property
    def source_latency(self) -> float:
        """What the source took to answer: the time to the first row, else the query's own time (an empty
        result), else the whole try."""
        if self.first_row is not None:
            return self.first_row
        return self.query_seconds if self.query_seconds is not None else self.latency

    @property
    def started(self) -> float:
        return self.time - self.latency


@dataclass
class Decision:
    value: int
    reason: str


@dataclass
class AIMD:
    low: int = 1
    high: int = 8
    value: int = 2
    increase: int = 1
    decrease: float = 0.5
    cooldown: float = 60.0
    probe_after: int = 3
    growth: float = 1.5  # slow start: x growth per saturated clean period
    severe_fraction: float = 0.2  # at least this share of a period's tasks failing cuts multiplicatively
    load_classes: frozenset[str] = DEFAULT_LOAD_CLASSES
    slow_start: bool = True
    good: int | None = None  # the highest limit that ran a saturated period without load failures
    ceiling: int | None = None  # the lowest limit that overloaded the source since
    _quiet: int = field(default=0, repr=False)
    _probing: bool = field(default=False, repr=False)  # the limit itself grew above ``good``
    _last_decrease: float = field(default=-math.inf, repr=False)

    def __post_init__(self):
        if not 0 <= self.low <= self.value <= self.high or self.high < 1:
            raise ValueError(f"limit bounds do not hold: {self.low} <= {self.value} <= {self.high}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease factor {self.decrease} is not between 0 and 1")

    def _clamp(self, value: float) -> int:
        return max(self.low, min(self.high, int(value)))

    def overloaded(self, samples: Sequence[Sample]) -> list[Sample]:
        """Load failures of tasks started since the last decrease (older ones ran under the old limit)."""
        return [
            s
            for s in samples
            if s.failed
            and ((s.error_class or "unknown") in self.load_classes or s.throttle_down)
            and s.started >= self._last_decrease
        ]

    def saturated(self, samples: Sequence[Sample]) -> bool:
        """The limit was the constraint: some task finished while the pool was (nearly) full."""
        return any(s.inflight >= self.value - (1 if self.value > 2 else 0) for s in samples)

    def update(self, samples: Iterable[Sample], now: float) -> Decision:
        samples = list(samples)
        cooling = now - self._last_decrease < self.cooldown
        overloaded = self.overloaded(samples)
        if overloaded:
            if cooling:
                return Decision(self.value, f"{len(overloaded)} load failures, cooling down after the last decrease")
            factors = [s.throttle_down for s in overloaded if s.throttle_down]
            return self._overload(
                now,
                f"{len(overloaded)} load failure(s) ({_classes(overloaded)})",
                severe=len(overloaded) >= self.severe_fraction * len(samples),
                factor=min(factors) if factors else None,
            )
        if cooling:
            return Decision(self.value, "cooling down after a decrease")
        crashed = [s for s in samples if s.failed and s.error_class in LOST_CLASSES]
        if crashed:  # no verdict on the source: never a reason to grow
            return Decision(
                self.value,
                f"{len(crashed)} tries lost to the orchestrator (killed, not started, heartbeat lost): holding",
            )
        if not samples or not self.saturated(samples):
            return Decision(self.value, "not saturated: no reason to change")
        self.good = max(self.good or 0, self.value)
        self._probing = False
        if self.ceiling is not None and self.value >= self.ceiling:
            # a probe at the old ceiling ran clean: the source recovered, grow (additively) again
            self.ceiling = None
        if self.ceiling is not None and self.value + 1 >= self.ceiling:
            self._quiet += 1
            if self._quiet < self.probe_after:
                return Decision(self.value, f"holding below {self.ceiling}, which overloaded the source")
            self._quiet = 0
            return self._increase(
                self.value + 1, f"probing {self.ceiling} again after {self.probe_after} quiet periods"
            )
        target = math.ceil(self.value * self.growth) if self.slow_start else self.value + self.increase
        if self.ceiling is not None:
            target = min(target, self.ceiling - 1)
        return self._increase(target, "saturated without load failures" + (" (slow start)" if self.slow_start else ""))

    def _increase(self, target: float, reason: str) -> Decision:
        new = self._clamp(max(target, self.value))
        if new == self.value:
            return Decision(self.value, f"{reason}, already at the maximum {self.high}")
        self.value = new
        self._probing = self.good is not None and new > self.good
        return Decision(new, reason)

    def reset_to(self, value: int) -> None:
        """The slots were set from outside (a person, a pool edit): adapt from there; it is not a probe."""
        self.value = max(self.low, min(self.high, value))
        self._probing = False

    def _overload(self, now: float, reason: str, *, severe: bool = True, factor: float | None = None) -> Decision:
        """A recovery rule's ``<throttleDown factor=>`` cuts by its factor; otherwise a probe above the last
        good limit goes back to it; a few failures at a limit that was fine step down by one; many (the
        source got slower) cut multiplicatively and forget what was good."""
        self.slow_start = False
        self._last_decrease = now
        self._quiet = 0
        probing, self._probing = self._probing, False
        self.ceiling = self.value if self.ceiling is None else min(self.ceiling, self.value)
        if factor is not None:
            new, why = math.floor(self.value * factor), f"{reason}: throttleDown x{factor:g}"
            self.good, self.ceiling = None, self.value
        elif probing and self.good is not None and self.value > self.good:
            new, why = self.good, f"{reason}: back to {self.good}, the last limit without load failures"
        elif not severe:
            new, why = self.value - 1, f"{reason}: -1"
            self.good = None
        else:
            new, why = math.floor(self.value * self.decrease), f"{reason}: x{self.decrease}"
            self.good, self.ceiling = None, self.value
        self.value = self._clamp(min(new, self.value - 1))
        return Decision(self.value, why)


def _classes(samples: Sequence[Sample]) -> str:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.error_class or "unknown"] = counts.get(s.error_class or "unknown", 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


@dataclass
class Gradient(AIMD):
    """AIMD's response to load failures, and before them the source's latency against its baseline."""

    tolerance: float = 1.5  # latency at this multiple of the baseline: the source queues, step down
    grow_below: float = 1.1  # latency within this multiple of the baseline: the source is idle, grow by half
    floor: float = 1.0  # seconds: latencies under it say nothing (a query that answers in milliseconds is not queueing)
    window: int = 30  # periods after which a baseline may be re-learned at the same or a lower load
    baseline: float | None = None
    baseline_inflight: int = 0  # the load the baseline was measured at
    by_first_row: bool = False  # the baseline is a time to first row (not a try's duration)
    _age: int = field(default=0, repr=False)  # periods since the baseline was measured
    _last_change: float = field(default=-math.inf, repr=False)
    _reset: bool = field(default=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        if not 1 < self.grow_below < self.tolerance:
            raise ValueError(f"need 1 < grow_below ({self.grow_below}) < tolerance ({self.tolerance})")

    def reset_to(self, value: int) -> None:
        super().reset_to(value)
        self._reset = True  # tries so far ran under the old value

    def comparable(self, samples: list[Sample]) -> list[Sample]:
        """The samples measured as the baseline is: the source's own time (to the first row, or the query's
        when it returned none) once any try reported one (a whole try's duration, an adopted pool's or a
        transform's, is mostly the orchestrator's and never compared with it), else the tries' durations."""
        at_source = [s for s in samples if s.timed_at_source]
        if at_source or self.by_first_row:
            self.by_first_row = True
            return at_source
        return samples

    def learn(self, samples: Sequence[Sample]) -> None:
        """The baseline is the lowest clean latency seen. After ``window`` periods a new one replaces it
        only when measured at the same or a lower load: under steady load latency is what the load makes
        it, not what the source does alone (a query that got slower is re-learned once the limit is low)."""
        self._age += 1
        clean = self.comparable([s for s in samples if not s.failed])
        if not clean:
            return
        low = min(clean, key=lambda s: (s.source_latency, s.inflight))
        if (
            self.baseline is None
            or low.source_latency < self.baseline
            or (self._age >= self.window and low.inflight <= self.baseline_inflight)
        ):
            self.baseline, self.baseline_inflight, self._age = low.source_latency, low.inflight, 0

    def update(self, samples: Iterable[Sample], now: float) -> Decision:
        samples = list(samples)
        if self._reset:
            self._reset, self._last_change = False, now
        before = self.value
        self.learn(samples)
        decision = self._judge(samples, now)
        if decision.value != before:
            self._last_change = now
        return decision

    def _judge(self, samples: list[Sample], now: float) -> Decision:
        if self.overloaded(samples) or now - self._last_decrease < self.cooldown:
            return super().update(samples, now)  # errors first: the safety net
        crashed = [s for s in samples if s.failed and s.error_class in LOST_CLASSES]
        if crashed:
            return Decision(
                self.value,
                f"{len(crashed)} tries lost to the orchestrator (killed, not started, heartbeat lost): holding",
            )
        fresh = self.comparable([s for s in samples if not s.failed and s.started >= self._last_change])
        if not fresh or not self.baseline:
            return Decision(self.value, f"no try started under {self.value} slots has ended yet: holding")
        recent = statistics.median(s.source_latency for s in fresh)
        ratio = max(recent, self.floor) / max(self.baseline, self.floor)
        seen = f"latency {ratio:.1f}x the baseline ({recent:.1f} s vs {self.baseline:.1f} s)"
        if ratio >= self.tolerance:
            self.slow_start, self._quiet, self._probing = False, 0, False
            self.ceiling = self.value if self.ceiling is None else min(self.ceiling, self.value)
            step = self.tolerance / ratio if ratio >= 2 * self.tolerance else None
            new = self._clamp(min(self.value - 1, math.floor(self.value * step)) if step else self.value - 1)
            if new == self.value:
                return Decision(self.value, f"{seen}, already at the minimum {self.low}")
            old, self.value = self.value, new
            return Decision(new, f"{seen}: {old} -> {new}")
        if not self.saturated(fresh):
            return Decision(self.value, f"{seen}, not saturated: no reason to change")
        self.good = max(self.good or 0, self.value)
        if ratio < self.grow_below and self.ceiling is not None:
            self.ceiling = None  # the source answers as fast as at low load: what queued before has room now
        if self.ceiling is not None and self.value + 1 >= self.ceiling:
            self._quiet += 1
            if self._quiet < self.probe_after:
                return Decision(self.value, f"{seen}: holding below {self.ceiling}, where latency rose")
            self._quiet = 0
            return self._grow(self.value + 1, f"{seen}: probing {self.ceiling} again")
        if ratio < self.grow_below:  # by half, two at most: half of a large pool overshoots the capacity near it
            target = min(math.ceil(self.value * self.growth), self.value + 2)
            if self.ceiling is not None:
                target = min(target, self.ceiling - 1)
            return self._grow(target, seen)
        return self._grow(self.value + 1, seen)

    def _grow(self, target: int, reason: str) -> Decision:
        old = self.value
        decision = self._increase(target, reason)
        return Decision(decision.value, f"{reason}: {old} -> {decision.value}") if decision.value != old else decision


#: The limits a data set (``<throttle algorithm=>``) or an adopted pool can choose.
ALGORITHMS = {"gradient": Gradient, "aimd": AIMD}
