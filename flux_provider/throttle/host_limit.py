"""The Airflow host's limit: how many tasks the scheduler hands to its workers at once, adapted to the host's
health (pure, Airflow-free, time passed in).

The data-set pools protect each source; nothing in them protects the host that
runs the tasks. On a starved host (2 cores, hundreds of runs due at once) the
scheduler's heartbeat falls behind, task processes take tens of seconds to
start, and the Execution API loses tries (404/410): each of those costs a
retry. This limit is fed one :class:`HostSample` per controller period:

* **cut** (x ``decrease``, at least one) when the host is unhealthy: a try was
  lost to the orchestrator, the scheduler's heartbeat is late, or tasks take too
  long from queued to running (and, when a threshold is set for it, the load
  per core is too high); each cut says which signal fired;
* **grow** by one when every signal is below half its threshold and tasks were
  waiting for a slot while the limit was (nearly) full, or nothing waits (an
  idle host goes back toward ``high``, so a night does not start where the
  last one's strain left the limit);
* **hold** otherwise, and for ``cooldown`` seconds after a cut (the signals lag
  what caused them), unless tries are still being lost.

Bounds: ``low`` and ``high`` (the deployment's ``[core] parallelism``). A pin
lives above it, in :mod:`flux_provider.throttle.host`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostSample:
    """One period of the host, as the scheduler sees it."""

    time: float
    heartbeat_lag: float | None = None  # seconds since the scheduler's last heartbeat
    start_latency: float | None = None  # median seconds from queued to running of the tasks started
    load_per_core: float | None = None  # the 1-minute load average over the CPUs
    lost: int = 0  # tries lost to the orchestrator in the period
    running: int = 0  # tasks running or queued at the executor
    waiting: int = 0  # tasks scheduled, waiting for a slot


@dataclass(frozen=True)
class Thresholds:
    """Above any of these the host is unhealthy (None: that signal is not used).

    The load per core is recorded but not used by default: a steady load that is not Airflow's (another
    service, a batch job) raises it without harming the scheduler, and on the burst benchmark it held the
    limit below what the host ran well; the scheduler's heartbeat and the tasks' queued-to-running time
    are what fell behind when tries were at risk."""

    heartbeat_lag: float | None = 20.0
    start_latency: float | None = 30.0
    load_per_core: float | None = None


@dataclass
class HostDecision:
    value: int
    reason: str


@dataclass
class HostLimit:
    low: int = 2
    high: int = 8
    value: int = 8
    decrease: float = 0.7
    cooldown: float = 30.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    _last_cut: float = field(default=-math.inf, repr=False)

    def __post_init__(self):
        if not 1 <= self.low <= self.value <= self.high:
            raise ValueError(f"host limit bounds do not hold: 1 <= {self.low} <= {self.value} <= {self.high}")

    def strained(self, s: HostSample, share: float = 1.0) -> list[str]:
        """The signals above ``share`` of their thresholds, in words."""
        t, out = self.thresholds, []
        if s.lost:
            out.append(f"{s.lost} tries lost")
        for name, value, unit in (
            ("heartbeat_lag", s.heartbeat_lag, "scheduler heartbeat {:.0f}s late"),
            ("start_latency", s.start_latency, "tasks {:.0f}s from queued to running"),
            ("load_per_core", s.load_per_core, "load {:.1f} per core"),
        ):
            limit = getattr(t, name)
            if limit is not None and value is not None and value > limit * share:
                out.append(unit.format(value))
        return out

    def update(self, s: HostSample) -> HostDecision:
        strained = self.strained(s)
        if strained:
            if s.time - self._last_cut < self.cooldown and not s.lost:
                return HostDecision(self.value, f"{', '.join(strained)}: cooling down after the last cut")
            new = max(self.low, min(self.value - 1, math.floor(self.value * self.decrease)))
            if new == self.value:
                return HostDecision(self.value, f"{', '.join(strained)}: at the floor {self.low}")
            old, self.value, self._last_cut = self.value, new, s.time
            return HostDecision(new, f"host strained ({', '.join(strained)}): {old} -> {new}")
        if self.strained(s, 0.5):
            return HostDecision(self.value, "host busy: holding")
        if s.time - self._last_cut < self.cooldown:
            return HostDecision(self.value, "host healthy again: holding while cooling down after the last cut")
        if s.waiting and s.running >= self.value - 1 and self.value < self.high:
            old, self.value = self.value, self.value + 1
            return HostDecision(self.value, f"host healthy with tasks waiting: {old} -> {self.value}")
        if not s.waiting and self.value < self.high:  # idle: back toward [core] parallelism for the next burst
            old, self.value = self.value, self.value + 1
            return HostDecision(self.value, f"host healthy and idle: {old} -> {self.value}")
        return HostDecision(self.value, "host healthy: holding")

    def reset_to(self, value: int) -> None:
        self.value = max(self.low, min(self.high, value))


__all__ = ["HostDecision", "HostLimit", "HostSample", "Thresholds"]
