"""Virtual clock at scale: 100,000 cores, 1,000,000 tasks, 24 h of virtual time.

Targets (issue 4): wall time under 10 s on 2 cores; at least 10 times faster than a plain
per-task SimPy model of the same scenario (benchmarks/simpy_baseline.py).

The SimPy model runs at 1/10 scale by default (10,000 cores, 100,000 tasks, same 24 h), where
both models are timed side by side; its full-scale time is extrapolated linearly (its cost is per
task and per instance). ``--full-simpy`` runs SimPy at full scale too (about a minute or more).
Timings are noisy on a shared machine.

    python benchmarks/bench_simulate.py [--full-simpy] [--scale 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simpy_baseline import run_simpy  # noqa: E402

from hpclab import catalog  # noqa: E402
from hpclab.elastic.policies import make_policy  # noqa: E402
from hpclab.elastic.simulate import campaign_limits, make_workload, simulate  # noqa: E402

CORES, TASKS, HORIZON = 100_000, 1_000_000, 86_400.0
TARGET_WALL = 10.0
TARGET_SPEEDUP = 10.0


def scenario(cores, tasks, cat):
    wl = make_workload(tasks, duration="lognormal", mean=5400.0, sigma=0.5, arrival="uniform",
                       window=12 * 3600.0, seed=0)
    lim = campaign_limits(cores, catalog=cat)
    return wl, lim


def policy(cat):
    return make_policy("global-spot", hysteresis=True, target_duration=3600.0, catalog=cat)


def run_hpclab(cores, tasks, cat):
    wl, lim = scenario(cores, tasks, cat)
    t0 = time.perf_counter()
    r = simulate(policy(cat), wl, lim, catalog=cat, horizon=HORIZON, tick=60.0, seed=0, progress=False)
    return time.perf_counter() - t0, r.summary


def main(argv=None):
    ap = argparse.ArgumentParser(description="virtual clock benchmark")
    ap.add_argument("--scale", type=float, default=0.1, help="scale of the SimPy comparison")
    ap.add_argument("--full-simpy", action="store_true", help="run SimPy at full scale too")
    args = ap.parse_args(argv)
    cat = catalog.default()
    run_hpclab(200, 2000, cat)  # warm up imports (xarray, pandas) outside the timings

    wall, s = run_hpclab(CORES, TASKS, cat)
    print(f"hpclab simulate: {CORES:,} cores, {TASKS:,} tasks, {HORIZON / 3600:.0f} h virtual, "
          f"global-spot+hysteresis")
    print(f"  wall {wall:.2f} s (engine {s['wall_s']:.2f} s), {s['events']:,} events, "
          f"{s['events'] / wall:,.0f} events/s; completed {s['completed']:,}, makespan "
          f"{s['makespan_s'] / 3600:.2f} h, cost {s['cost_usd']:,.0f} USD, peak {s['peak_cores']:,} cores, "
          f"refusals {s['refusals']:,}, reclaims {s['reclaims']}, work redone {s['work_redone']:.3g} units")
    print(f"  ratio to target: {wall / TARGET_WALL:.2f} (target <= 1: under {TARGET_WALL:.0f} s)")

    scale = 1.0 if args.full_simpy else args.scale
    c, n = int(CORES * scale), int(TASKS * scale)
    wl, lim = scenario(c, n, cat)
    small_wall, small = run_hpclab(c, n, cat)
    sp = run_simpy(policy(cat), wl, lim, catalog=cat, horizon=HORIZON, tick=60.0, seed=0)
    print(f"same scenario at {c:,} cores, {n:,} tasks: hpclab {small_wall:.2f} s, "
          f"SimPy per-task {sp['wall_s']:.2f} s ({sp['events_per_s']:,.0f} events/s) -> "
          f"{sp['wall_s'] / small_wall:.1f}x")
    print(f"  agreement: makespan {small['makespan_s'] / 3600:.2f} h vs {sp['makespan_s'] / 3600:.2f} h, "
          f"cost {small['cost_usd']:,.0f} vs {sp['cost_usd']:,.0f} USD, instances {small['instances']} vs "
          f"{sp['instances']}")
    simpy_full = sp["wall_s"] / scale
    speedup = simpy_full / wall
    how = "measured" if scale == 1.0 else f"extrapolated x{1 / scale:.0f} from the {scale:g} scale run"
    print(f"SimPy at full scale: {simpy_full:.1f} s ({how}); speedup {speedup:.1f}x")
    print(f"  ratio to target: {TARGET_SPEEDUP / speedup:.2f} (target <= 1: at least {TARGET_SPEEDUP:.0f}x faster)")


if __name__ == "__main__":
    main()
