"""Adaptive vs static pools on a simulated source database (deterministic, no services, seconds to run).

The model: a source that runs ``capacity`` queries at full speed; above that,
every query slows down (latency x (inflight / capacity) ** 1.5), some become
deadlock victims (probability (inflight - capacity) / (3 x capacity)), and a
query slower than 3x its normal time times out. A failed query counts as an
error and goes back to the backlog. A backlog of ``queries`` queries
of ``base`` seconds each, a pool of ``limit`` slots, a controller every
``period`` seconds (default 120: longer than a task's longest run, so a failure
is seen in the period its task started) feeding the limit the tasks that finished in that period.

    .venv/bin/python benchmarks/throttle_sim.py [--capacity 8] [--trouble 3] [--queries 1500]

The source has trouble in the middle of the run (its capacity drops from 8 to 3
from minute 40 to 80), as a real one does. Prints one row per policy (static
too small / best / too large, adaptive), the periods the adaptive limit needs
to settle after each change, and writes ``benchmarks/results/throttle_sim.json``
and a plot of the limit over time (``throttle_sim.png``, with the bench extra).
Goals (issue 7): adaptive >= 0.9x the best static throughput, <= 1/5 of the
too-large setting's errors, settled within 3 controller periods.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux_provider.throttle.limits import AIMD, Sample  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def simulate(
    limit_of,
    *,
    capacity,
    queries: int,
    base: float = 30.0,
    period: float = 60.0,
    seed: int = 1,
    horizon: float = 12 * 3600,
) -> dict:
    """``limit_of`` is an int (static) or a limit object (adaptive); ``capacity`` an int or a function of
    time. One-second steps."""
    timeout = 3 * base
    capacity_at = capacity if callable(capacity) else (lambda _t: capacity)
    rng = random.Random(seed)
    adaptive = not isinstance(limit_of, int)
    limit = limit_of.value if adaptive else limit_of
    backlog, running, done, errors = queries, [], 0, 0
    samples, timeline, t = [], [(0.0, limit)], 0.0
    while (backlog or running) and t < horizon:
        cap = capacity_at(t)
        while backlog and len(running) < limit:
            n = len(running) + 1
            latency = base * max(1.0, n / cap) ** 1.5 * rng.uniform(0.9, 1.1)
            if latency > timeout:
                running.append((t + timeout, t, "timeout"))
            elif rng.random() < min(0.5, max(0.0, (n - cap) / (3 * cap))):
                running.append((t + latency * rng.uniform(0.2, 1.0), t, "deadlock"))
            else:
                running.append((t + latency, t, None))
            backlog -= 1
        t += 1.0
        finished = [r for r in running if r[0] <= t]
        running = [r for r in running if r[0] > t]
        for end, start, error in finished:
            fails = error is not None
            samples.append(
                Sample(time=t, latency=end - start, inflight=len(running) + 1, failed=fails, error_class=error)
            )
            if fails:
                errors += 1
                backlog += 1  # retried
            else:
                done += 1
        if adaptive and t % period == 0:
            limit = limit_of.update(samples, t).value
            samples = []
            timeline.append((t, limit))
    hours = t / 3600
    return {
        "throughput_per_hour": done / hours if hours else 0.0,
        "errors": errors,
        "seconds": t,
        "completed": done,
        "timeline": timeline,
    }


def settling(
    timeline: list[tuple[float, int]], capacity_at, since: float, until: float, tolerance: float = 0.25
) -> tuple[int | None, float]:
    """(controller periods after ``since`` until the limit first is within +-tolerance, at least one slot,
    of the capacity; the share of the later periods it stays within that band)."""
    window = [(t, v) for t, v in timeline if since < t <= until]
    inside = [abs(v - capacity_at(t)) <= max(1.0, tolerance * capacity_at(t)) for t, v in window]
    if True not in inside:
        return None, 0.0
    first = inside.index(True)
    return first + 1, sum(inside[first:]) / len(inside[first:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--trouble", type=int, default=3, help="the capacity while the source has trouble")
    parser.add_argument("--queries", type=int, default=1500)
    parser.add_argument("--initial", type=int, default=8, help="the adaptive limit's start (the spec's initial)")
    parser.add_argument("--max", type=int, default=32)
    parser.add_argument("--period", type=float, default=120.0, help="controller period, seconds")
    args = parser.parse_args(argv)
    cap, low = args.capacity, args.trouble
    changes = [(0.0, cap), (40 * 60.0, low), (80 * 60.0, cap)]  # trouble from minute 40 to minute 80

    def capacity_at(t: float) -> int:
        return [c for start, c in changes if start <= t][-1]

    def run(policy):
        return simulate(policy, capacity=capacity_at, queries=args.queries, period=args.period)

    sweep = {n: run(n) for n in range(1, args.max + 1)}
    best = max(sweep, key=lambda n: sweep[n]["throughput_per_hour"])
    small = max(1, low - 1)
    rows = {
        f"static {small} (too small)": sweep[small],
        f"static {best} (best)": sweep[best],
        f"static {args.max} (too large)": sweep[args.max],
    }
    limit = AIMD(low=1, high=args.max, value=args.initial, cooldown=args.period)
    rows["adaptive (AIMD)"] = adaptive = run(limit)
    best_tp, large_errors = sweep[best]["throughput_per_hour"], sweep[args.max]["errors"]
    print(
        f"source capacity {cap}, {low} from minute 40 to 80; {args.queries} queries of ~30 s (timeout 90 s); "
        f"controller period {args.period:.0f} s; adaptive starts at {args.initial} (bounds 1-{args.max})\n"
    )
    print(f"{'policy':<24}{'queries/h':>10}{'vs best':>9}{'errors':>8}{'vs too large':>14}")
    summary = {}
    for name, r in rows.items():
        ratio = r["errors"] / large_errors if large_errors else 0.0
        print(
            f"{name:<24}{r['throughput_per_hour']:>10.0f}{r['throughput_per_hour'] / best_tp:>8.2f}x"
            f"{r['errors']:>8}{ratio:>13.3f}x"
        )
        summary[name] = r
    ends = [start for start, _ in changes[1:]] + [adaptive["seconds"]]
    convergence = {
        f"capacity {c} from minute {start / 60:.0f}": settling(adaptive["timeline"], capacity_at, start, end)
        for (start, c), end in zip(changes, ends)
    }
    print(
        "\nadaptive limit after each change: periods until within +-25% (at least 1 slot) of the capacity, "
        "and the share of later periods inside that band"
    )
    for what, (periods, share) in convergence.items():
        print(f"  {what:<28} {periods if periods is not None else 'never':>5} periods, then {share:.0%} inside")
    summary["convergence_periods"] = convergence
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throttle_sim.json").write_text(json.dumps(summary, indent=1))
    if plot(adaptive["timeline"], capacity_at):
        print(f"\nwrote {RESULTS / 'throttle_sim.json'} and {RESULTS / 'throttle_sim.png'}")
    return 0


def plot(timeline: list[tuple[float, int]], capacity_at) -> bool:
    """The adaptive limit against the source's capacity over time (False: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot; install the bench extra)")
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    xs, ys = zip(*timeline)
    ax.step([x / 60 for x in xs], ys, where="post", label="adaptive (AIMD) limit")
    ax.step(
        [x / 60 for x in xs],
        [capacity_at(x) for x in xs],
        where="post",
        color="grey",
        linestyle="--",
        label="source capacity",
    )
    ax.set_xlabel("minutes")
    ax.set_ylabel("pool slots")
    ax.set_title("adaptive limit on a simulated source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "throttle_sim.png", dpi=100)
    return True


if __name__ == "__main__":
    raise SystemExit(main())
