"""One source's budget, shared by its data sets: pure, Airflow-free, time passed in.

Data sets that read through the same connection (or name the same ``<throttle source=>``) share the
source's budget: the total of their tasks at once. Each keeps its own pool and its own adaptive limit inside
it; :func:`shares` cuts the budget into the pools' slots, so that their sum never exceeds it.

:class:`SourceBudget` sizes the budget once per controller period:

* **From the server's own state** when the login may read it (:class:`~flux_provider.hooks.mssql_state.
  ServerState`): the budget is the room the server has for us, its capacity less what its other users
  hold and wait for. Our own in-flight queries are not in that figure, so more of our load never reads as
  a healthier server. It follows a capacity change within one period, both ways, and never grows while a
  query waits for a grant.
* **From the data sets' tries** otherwise (the login lacks VIEW SERVER STATE, the server did not answer):
  one limit (gradient or AIMD, :mod:`flux_provider.throttle.limits`) fed the tries of all its data sets.

A pin (a person's value) wins over both; it lives in the controller.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flux_provider.hooks.mssql_state import ServerState
from flux_provider.throttle.limits import AIMD, Decision, Gradient, Sample

#: A data set whose run's deadline is this close gets its weight multiplied up to :data:`MAX_BOOST`.
BOOST_WINDOW = 3600.0
MAX_BOOST = 4.0


@dataclass(frozen=True)
class Member:
    """A data set of the source this period: its own limit, its demand (tasks running, queued or waiting for
    a slot), its weight and floor (``<throttle weight= floor=>``) and its deadline boost."""

    dataset: str
    own: int
    demand: int
    weight: float = 1.0
    floor: int = 0
    boost: float = 1.0
    holding: int = 0  # of its demand, the tasks already holding a slot (running or handed out): never stopped

    @property
    def priority(self) -> float:
        return self.weight * self.boost


def boost_for(slack: float | None, window: float = BOOST_WINDOW) -> float:
    """1 without a deadline or far from it, rising to :data:`MAX_BOOST` as the deadline comes (and past it)."""
    if slack is None or slack >= window:
        return 1.0
    return 1.0 + (MAX_BOOST - 1.0) * min(1.0, 1.0 - max(slack, 0.0) / window)


def steady(budget: int, members: Sequence[Member], previous: dict[str, int] | None) -> bool:
    """The last period's shares still hold: within the budget and each own limit, every data set that asks
    has a slot, and no slot sits idle while another data set waits for one. Keeping them then spares the
    pools a change each period as demand moves (each change is an event, and a moment when the scheduler
    may admit by the old slots)."""
    if not previous or any(m.dataset not in previous for m in members):
        return False
    if sum(previous.values()) > budget or any(previous[m.dataset] > m.own for m in members):
        return False
    held = sum(m.holding for m in members)
    if any(previous[m.dataset] > refill_bound(budget, m, held) for m in members):
        return False
    if any(m.demand and not previous[m.dataset] for m in members):
        return False
    idle = any(previous[m.dataset] > max(m.demand, m.floor) for m in members)
    waiting = any(m.demand > previous[m.dataset] < m.own for m in members)
    return not (idle and waiting)


def shares(budget: int, members: Sequence[Member], previous: dict[str, int] | None = None) -> dict[str, int]:
    """The budget cut into slots per data set. When it covers every data set's own limit, each gets its own.
    Otherwise: floors first (by priority), then a weighted fair share of what they ask for now (each gets
    slots in turn, the one furthest below its share first), then what is left up to their own limits, so
    that a data set with no task yet can start one before the next period. Tasks a data set holds above its
    share (a cut stops none) are taken from the free slots of the others, lowest priority first, so that
    the tasks held and admitted together stay within the budget. The ``previous`` shares are kept while
    they still hold (:func:`steady`)."""
    if sum(m.own for m in members) <= budget:
        return {m.dataset: m.own for m in members}
    if steady(budget, members, previous):
        return dict(previous)
    given = {m.dataset: 0 for m in members}
    left = budget
    for m in sorted(members, key=lambda m: (-m.priority, m.dataset)):
        take = min(m.floor, m.own, left)
        given[m.dataset] += take
        left -= take
    for cap in (lambda m: min(m.own, m.demand), lambda m: m.own):
        left = _fill(given, members, cap, left)
    # a cut stops no task: what a data set holds above its share still runs, so the others' free slots wait
    over = sum(max(0, m.holding - given[m.dataset]) for m in members)
    for m in sorted(members, key=lambda m: (m.priority, m.dataset), reverse=False):
        take = min(over, max(0, given[m.dataset] - m.holding))
        given[m.dataset] -= take
        over -= take
    # and no data set refills a slot as its own tasks end while the others' held tasks still fill the budget
    held = sum(m.holding for m in members)
    return {m.dataset: min(given[m.dataset], refill_bound(budget, m, held)) for m in members}


def refill_bound(budget: int, member: Member, held: int) -> int:
    """The most slots ``member`` may have so that, whenever its own tasks end, what it then admits and what
    the others hold now (``held`` by all, less its own) stay within the budget (a cut stops no task: the
    others' tasks run on)."""
    return max(0, budget - (held - member.holding))


def _fill(given: dict[str, int], members: Sequence[Member], cap, left: int) -> int:
    """Give one slot at a time to the member with the fewest slots per unit of priority, up to ``cap``."""
    heap = [(given[m.dataset] / m.priority, m.dataset, m) for m in members if given[m.dataset] < cap(m)]
    heapq.heapify(heap)
    while left > 0 and heap:
        _, name, m = heapq.heappop(heap)
        given[name] += 1
        left -= 1
        if given[name] < cap(m):
            heapq.heappush(heap, (given[name] / m.priority, name, m))
    return left


@dataclass
class SourceBudget:
    """The budget of one source within ``[low, high]`` (``high``: the sum of its data sets' maximums)."""

    low: int
    high: int
    value: int
    algorithm: str = "gradient"
    cooldown: float = 60.0
    fallback: AIMD = field(init=False)
    signal: str = "none"  # what decided last: server | tries
    grant_kb: float | None = None  # one query's grant, the last seen: sizes the server when no query holds one

    def __post_init__(self):
        self.value = max(self.low, min(self.high, self.value))
        kind = Gradient if self.algorithm == "gradient" else AIMD
        self.fallback = kind(low=self.low, high=self.high, value=self.value, cooldown=self.cooldown)

    def _clamp(self, value: int) -> int:
        return max(self.low, min(self.high, value))

    def observe(self, state: ServerState | None) -> None:
        """Remember one query's grant whenever the server shows one (pinned too): it sizes an idle server, so
        the budget is right before the next burst's first query holds a grant."""
        if state is not None and state.grant_kb:
            self.grant_kb = state.grant_kb

    def update(self, state: ServerState | None, samples: Iterable[Sample], now: float) -> Decision:
        """The budget for the next period, from the server's state when there is one, else from the tries."""
        samples = list(samples)
        if state is None:
            self.signal = "tries"
            if self.fallback.value != self.value:
                self.fallback.reset_to(self.value)
            decision = self.fallback.update(samples, now)
            self.value = decision.value
            return Decision(self.value, f"from its data sets' tries: {decision.reason}")
        self.signal = "server"
        self.observe(state)
        if state.memory_kb is None:  # no resource semaphore: nothing on the server bounds its queries
            old, self.value = self.value, self.high
            return Decision(
                self.high,
                f"the server shows no memory semaphore: open at {self.high}"
                + (f" ({old} -> {self.high})" if old != self.high else ""),
            )
        room = state.room(self.grant_kb)
        if room is None:
            return Decision(self.value, "no query has held a grant on the server yet: nothing to size it by, holding")
        capacity = state.capacity if state.capacity is not None else int(state.memory_kb // self.grant_kb)
        seen = (
            f"capacity {capacity} queries, others hold {state.others_granted} and wait for "
            f"{state.others_waiting}, {state.waiting} waiting in all"
        )
        target = self._clamp(room)
        if target > self.value and state.waiting:
            return Decision(self.value, f"{seen}: no growth while queries wait for a grant")
        if target == self.value:
            return Decision(self.value, f"{seen}: room for {room} of ours, holding")
        old, self.value = self.value, target
        self.fallback.reset_to(target)
        return Decision(target, f"{seen}: room for {room} of ours: {old} -> {target}")
