"""``hpclab simulate``: a campaign on the virtual clock, headless; prints the summary."""

from __future__ import annotations

import json
import math
import sys

from hpclab._validate import MAX_CORES, MAX_SECONDS, MAX_TASKS
from hpclab.cli._args import SEED_MAX, check_bounds
from hpclab.elastic.capacity import MAX_SHORTAGE_SD


def register(sub) -> None:
    from hpclab.elastic.policies import policy_names

    p = sub.add_parser("simulate", help="run a policy on the virtual clock (100,000 cores in seconds)")
    p.add_argument("--cores", type=int, default=100_000, help="core quota of the pool (default 100000)")
    p.add_argument("--tasks", type=int, default=1_000_000, help="number of tasks (default 1000000)")
    p.add_argument("--policy", default="global-spot", metavar="NAME",
                   help=f"a policy ({', '.join(policy_names())}) or module:Class (default global-spot)")
    p.add_argument("--no-hysteresis", action="store_true", help="do not wrap the policy in hysteresis")
    p.add_argument("--mean-work", type=float, default=1800.0,
                   help="mean task work, reference core-seconds (default 1800)")
    p.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma of task work (default 0.5)")
    p.add_argument("--window", type=float, default=4 * 3600.0,
                   help="tasks arrive uniformly over this many seconds (default 14400)")
    p.add_argument("--target-duration", type=float, default=3600.0,
                   help="seconds in which the pool should finish its held work (default 3600)")
    p.add_argument("--spot-share", type=float, default=None, help="share of spot (spot-first, global-spot)")
    p.add_argument("--deadline", type=float, default=None, help="deadline-budget: deadline, s")
    p.add_argument("--budget", type=float, default=None, help="deadline-budget: budget, USD")
    p.add_argument("--capacity", type=float, default=1.0, help="factor on the catalog's zone capacities")
    p.add_argument("--capacity-noise", type=float, default=0.0, help="sd of the seeded capacity shortage")
    p.add_argument("--spot-capacity", type=float, default=1.0, help="fraction of capacity open to spot")
    p.add_argument("--zones", nargs="+", default=None, help="zones (default: all in the catalog)")
    p.add_argument("--types", nargs="+", default=None, help="instance types (default: CPU types)")
    p.add_argument("--tick", type=float, default=60.0, help="policy tick, s (default 60)")
    p.add_argument("--horizon", type=float, default=None,
                   help="stop at this virtual time, s (default: follows the work)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


#: option -> (low, high, whole[, low open]): cores up to 10^8, tasks up to 10^9, times up to 10 years
BOUNDS = {"cores": (1, MAX_CORES, True), "tasks": (1, MAX_TASKS, True),
          "mean_work": (0, MAX_SECONDS, False, True), "sigma": (0, 10, False),
          "window": (0, MAX_SECONDS, False, True), "target_duration": (0, MAX_SECONDS, False, True),
          "spot_share": (0, 1, False), "deadline": (0, MAX_SECONDS, False, True),
          "budget": (0, 1e12, False, True), "capacity": (0, 1e6, False), "capacity_noise": (0, MAX_SHORTAGE_SD, False),
          "spot_capacity": (0, 1, False), "tick": (0, MAX_SECONDS, False, True),
          "horizon": (0, MAX_SECONDS, False, True), "seed": (0, SEED_MAX, True)}


def run(args) -> int:
    from hpclab.elastic.simulate import campaign

    check_bounds(args, BOUNDS)

    r = campaign(args.cores, args.tasks, policy=args.policy, mean_work=args.mean_work, sigma=args.sigma,
                 window=args.window, hysteresis=not args.no_hysteresis, spot_share=args.spot_share,
                 deadline=args.deadline, budget=args.budget, target_duration=args.target_duration,
                 types=args.types, zones=args.zones, seed=args.seed, tick=args.tick, horizon=args.horizon,
                 capacity=args.capacity, capacity_noise=args.capacity_noise,
                 spot_capacity=args.spot_capacity, progress=not args.quiet)
    s = r.summary
    if s.get("note"):
        print(f"hpclab: note: {s['note']}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in s.items()}, indent=2))
        return 0
    rows = [
        ("policy", s["policy"]),
        ("tasks completed", f"{s['completed']:,} / {s['tasks']:,}"),
        ("makespan", f"{s['makespan_s']:,.0f} s ({s['makespan_s'] / 3600:.2f} h)"
         if math.isfinite(s["makespan_s"]) else "not finished"),
        ("cost", f"{s['cost_usd']:,.2f} USD"),
        ("core-hours", f"{s['core_hours']:,.0f}"),
        ("utilisation", f"{s['utilisation']:.1%}"),
        ("peak cores", f"{s['peak_cores']:,}"),
        ("instances launched", f"{s['instances']:,}"),
        ("capacity refusals", f"{s['refusals']:,} instances in {s['refusal_events']:,} requests"),
        ("spot reclaims", f"{s['reclaims']:,} notices, {s['hard_kills']:,} hard kills"),
        ("work redone", f"{s['work_redone']:,.0f} units ({s['tasks_redone']:,} task attempts)"),
        ("virtual time", f"{s['end_time_s']:,.0f} s"),
        ("wall time", f"{s['wall_s']:.2f} s ({s['events_per_s']:,.0f} events/s)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
