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

Failures of tasks that started before the last decrease ran under the old limit
and are not counted again; after a decrease the limit holds for ``cooldown``
seconds. Both bound oscillation. A latency-aware (gradient) limit was tried in
``benchmarks/throttle_sim.py`` and did not beat this one there (it reacted at
the same moments or later), so it is not shipped. A pin (a person's value)
lives in the controller, above the algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flux_provider.errors import ErrorClass

DEFAULT_LOAD_CLASSES = frozenset(c.value for c in ErrorClass if c.load_related)


@dataclass(frozen=True)
class Sample:
    """One finished task of a data set: when, how long, how many ran beside it, and how it ended."""

    time: float
    latency: float
    inflight: int
    failed: bool = False
    error_class: str | None = None
    throttle_down: float | None = None  # a rule's <throttleDown factor=>: load whatever its class, cut by it


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
            and s.time - s.latency >= self._last_decrease
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
        crashed = [s for s in samples if s.failed and s.error_class == "crash"]
        if crashed:  # no verdict on the source: never a reason to grow
            return Decision(self.value, f"{len(crashed)} tries crashed (killed, out of memory, lost): holding")
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
