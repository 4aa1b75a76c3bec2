"""A source's budget and its data sets' shares: pure functions of the server's state, the tries and time."""

from __future__ import annotations

import pytest

from flux_provider.hooks.mssql_state import ServerState, state_from_rows
from flux_provider.throttle.limits import Sample
from flux_provider.throttle.source_budget import MAX_BOOST, Member, SourceBudget, boost_for, shares


def test_a_budget_that_covers_every_own_limit_changes_nothing():
    members = [Member("a", own=3, demand=9), Member("b", own=2, demand=0)]
    assert shares(5, members) == {"a": 3, "b": 2}


def test_a_binding_budget_goes_to_what_is_asked_for_by_weight_and_never_above_it():
    members = [
        Member("a", own=8, demand=20, weight=1),
        Member("b", own=8, demand=20, weight=3),
        Member("idle", own=8, demand=0),
    ]
    given = shares(8, members)
    assert sum(given.values()) == 8
    assert given == {"a": 2, "b": 6, "idle": 0}


def test_floors_first_then_spare_slots_to_data_sets_with_nothing_running_yet():
    members = [Member("a", own=4, demand=2), Member("b", own=4, demand=0, floor=1), Member("c", own=4, demand=0)]
    assert shares(5, members) == {"a": 2, "b": 2, "c": 1}
    # a budget below the floors: the highest priority keeps its floor
    tight = [Member("a", own=4, demand=4, floor=2), Member("b", own=4, demand=4, floor=2, boost=2.0)]
    assert shares(2, tight) == {"a": 0, "b": 2}


def test_a_near_deadline_multiplies_the_share():
    assert boost_for(None) == boost_for(7200) == 1.0
    assert 1.0 < boost_for(1800) < MAX_BOOST == boost_for(0) == boost_for(-60)
    members = [Member("late", own=8, demand=8, boost=boost_for(0)), Member("calm", own=8, demand=8)]
    assert shares(5, members) == {"late": 4, "calm": 1}


def state(capacity, ours=0, waiting=0, others=0, others_waiting=0, memory=None) -> ServerState:
    """The server as its views show it: ``capacity`` grants of 1 MB (None: no query holds one to size it by)."""
    return ServerState(
        capacity=capacity,
        memory_kb=memory if memory is not None else (capacity or 0) * 1024,
        grant_kb=1024.0 if capacity is not None else None,
        ours_granted=ours,
        ours_waiting=waiting,
        others_granted=others,
        others_waiting=others_waiting,
    )


def test_the_server_state_sets_the_budget_to_its_room_within_one_period_both_ways():
    budget = SourceBudget(low=1, high=20, value=20)
    assert budget.update(state(5, ours=5, waiting=7), [], 0).value == 5  # the capacity, at once
    assert budget.update(state(1, ours=1, waiting=4), [], 10).value == 1  # a drop
    held = budget.update(state(8, ours=1, waiting=1), [], 20)
    assert held.value == 1 and "no growth while queries wait" in held.reason
    assert budget.update(state(8, ours=1), [], 30).value == 8  # a rise
    assert budget.update(state(8, ours=8, others=3), [], 40).value == 5  # others came: room for 5
    # idle (no query holds a grant): sized by the grant seen before
    assert budget.update(state(None, others=1, memory=6 * 1024), [], 50).value == 5


def test_an_idle_server_never_sized_holds_and_one_without_a_semaphore_opens():
    budget = SourceBudget(low=1, high=20, value=6)
    held = budget.update(state(None, memory=8 * 1024), [], 0)
    assert held.value == 6 and "nothing to size it by" in held.reason
    opened = ServerState(capacity=None)  # no resource semaphore at all: nothing bounds the server's queries
    assert budget.update(opened, [], 10).value == 20


def test_our_own_load_never_reads_as_room():
    budget = SourceBudget(low=1, high=20, value=4)
    for ours in (1, 4, 9):
        assert budget.update(state(6, ours=min(ours, 4), waiting=max(ours - 4, 0), others=2), [], ours).value == 4


def test_without_the_server_state_the_budget_follows_its_data_sets_tries():
    budget = SourceBudget(low=1, high=10, value=6, algorithm="aimd", cooldown=0)
    failures = [Sample(time=100, latency=5, inflight=6, failed=True, error_class="deadlock") for _ in range(3)]
    decision = budget.update(None, failures, 100)
    assert decision.value == 3 and budget.signal == "tries" and "deadlock" in decision.reason


def test_the_views_rows_make_a_state_that_tells_ours_from_others():
    semaphores = [(2, 5 * 1024, 0, 5 * 1024, 5, 2)]
    grants = [(60, "flux", 1024, 1024, 2), (61, "FLUX", 1024, None, 2), (90, "reporting", 1024, 1024, 2)]
    grants += [(62, "flux", 1024, 1024, 2), (91, "etl", 1024, None, 2)]
    requests = [(60, "flux", "running", None, 12_000, 1), (61, "flux", "suspended", "RESOURCE_SEMAPHORE", 3000, 0)]
    requests += [(90, "reporting", "running", None, 90_000, 1)]
    got = state_from_rows("flux", semaphores, grants, requests)
    assert got == ServerState(
        capacity=5,
        memory_kb=5 * 1024,
        grant_kb=1024.0,
        ours_granted=2,
        ours_waiting=1,
        others_granted=1,
        others_waiting=1,
        longest_query=12.0,
        longest_transaction=12.0,
        others_longest_query=90.0,
    )
    assert got.room() == 3


@pytest.mark.parametrize("bad", [{"capacity": 3, "unknown": 1}, None])
def test_a_recorded_state_reads_back_or_is_none(bad):
    assert ServerState.from_dict(bad) == (ServerState(capacity=3) if bad else None)


def test_tasks_held_above_a_share_after_a_cut_keep_the_others_waiting():
    # a cut to 3 finds a holding 3 (a cut stops none): its fair share is 2, so b's free slot waits for it
    members = [Member("a", own=4, demand=3, holding=3), Member("b", own=4, demand=3)]
    given = shares(3, members)
    assert given == {"a": 2, "b": 0}
    assert sum(max(m.holding, given[m.dataset]) for m in members) == 3  # held and admissible: the budget


def test_after_a_cut_no_data_set_refills_while_the_others_held_tasks_fill_the_budget():
    """Seen on the stack: a cut 3 -> 1 found a holding 1 and b holding 2. a's fair share stayed 1, so when its
    task ended it started another while b's two still ran: 3 at once on a budget of 1."""
    members = [Member("a", own=4, demand=2, holding=1), Member("b", own=4, demand=3, holding=2)]
    for previous in (None, {"a": 1, "b": 0}):
        given = shares(1, members, previous)
        assert given == {"a": 0, "b": 0}, previous
    for budget in range(0, 8):  # whichever of its tasks end first, what each may admit fits with what the others hold
        given = shares(budget, members)
        for m in members:
            others = sum(o.holding for o in members if o is not m)
            assert given[m.dataset] == 0 or given[m.dataset] + others <= budget, (budget, given)


def test_a_grant_seen_while_pinned_sizes_the_idle_server_once_unpinned():
    budget = SourceBudget(low=1, high=24, value=24)
    budget.observe(state(6, ours=6, others=1))  # the budget was pinned: it only looked
    assert budget.update(state(None, others=1, memory=6 * 1024), [], 0).value == 5  # before any query of ours


def test_shares_stay_while_they_hold_and_move_when_a_slot_idles_beside_a_waiting_data_set():
    before = {"a": 2, "b": 1}
    busy = [Member("a", own=4, demand=3), Member("b", own=4, demand=2)]
    assert shares(3, busy, before) == before  # demand moved a little: no change, no event
    drained = [Member("a", own=4, demand=0), Member("b", own=4, demand=5)]
    assert shares(3, drained, before) == {"a": 0, "b": 3}  # a's slots idle while b waits: re-cut
    assert shares(2, busy, before) != before  # the budget shrank below them
