"""``hpclab platform``: replay job traces on the unified platform or on separate clusters."""

from __future__ import annotations

import json
import sys

from hpclab._validate import MAX_CORES, MAX_INSTANCES, MAX_SECONDS, HpclabError
from hpclab.cli._args import SEED_MAX, check_bounds, check_writable_file


def register(sub) -> None:
    p = sub.add_parser("platform", help="replay HPC + AI job traces (SWF, GPU CSV) on Slurm-like and "
                                        "Kubernetes-like queues")
    ps = p.add_subparsers(dest="platform_command", metavar="ACTION")

    r = ps.add_parser("replay", help="replay one or more traces and print the metrics")
    r.add_argument("traces", nargs="+", metavar="TRACE", help=".swf (HPC jobs) or .csv (GPU jobs) file")
    r.add_argument("--policy", choices=["unified", "separate"], default="unified",
                   help="one elastic platform, or separate fixed HPC and AI clusters (default unified)")
    r.add_argument("--cpu-nodes", type=int, default=128, help="CPU nodes of the HPC cluster (default 128)")
    r.add_argument("--gpu-nodes", type=int, default=16, help="GPU nodes (default 16)")
    r.add_argument("--data-nodes", type=int, default=None, help="CPU nodes for data pods (default cpu/8)")
    r.add_argument("--cpu-type", default="ecs.c8i.32xlarge", help="catalog instance type of CPU nodes")
    r.add_argument("--gpu-type", default="ecs.ebmgn8is.32xlarge", help="catalog instance type of GPU nodes")
    r.add_argument("--procs-per-node", type=int, default=1,
                   help="SWF processors per node (default 1: one SWF processor is one node)")
    r.add_argument("--elastic", choices=["yes", "no"], default=None,
                   help="elastic pools (default: yes for unified, no for separate)")
    r.add_argument("--no-backfill", action="store_true", help="strict priority/FIFO, no EASY backfill")
    r.add_argument("--placement", choices=["topology", "linear"], default="topology")
    r.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before an idle node is retired")
    r.add_argument("--min-nodes", type=int, default=0, help="nodes an elastic pool keeps warm (default 0)")
    r.add_argument("--market", choices=["on-demand", "spot"], default="on-demand",
                   help="how nodes are bought (spot: priced and reclaimed by the zone's spot market)")
    r.add_argument("--zone", default=None, metavar="ZONE[,GPU_ZONE]",
                   help="catalog zone of the pools (its capacity limits launches; default: none)")
    r.add_argument("--reclaim-rate", type=float, default=None, metavar="PER_S",
                   help="spot reclaims per node-second (default: the zone's catalog rate)")
    r.add_argument("--kube-strategy", choices=["best-effort", "strict"], default="best-effort",
                   help="AI queue order: a fitting job may pass a waiting one, or not")
    r.add_argument("--scaler", default=None, metavar="POLICY",
                   help="the hpclab.elastic policy that scales the elastic pools (default shortfall: "
                        "launch for the queued shortfall, retire after --idle-timeout); one without "
                        "the shortfall and idle triggers (e.g. target-duration) is asked every "
                        "--tick seconds")
    r.add_argument("--tick", type=float, default=60.0,
                   help="seconds between decisions of a policy without the shortfall and idle "
                        "triggers (default 60)")
    r.add_argument("--json", action="store_true", help="print the summary Dataset as JSON")
    r.set_defaults(func=run_replay)

    g = ps.add_parser("generate", help="write a seeded synthetic trace (.swf: Lublin-Feitelson HPC "
                                       "jobs; .csv: AI jobs)")
    g.add_argument("out", metavar="OUT", help="output file, .swf or .csv")
    g.add_argument("--jobs", type=int, default=1000, help="number of jobs (default 1000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-nodes", type=int, default=128, help="largest HPC job (default 128)")
    g.add_argument("--mean-interarrival", type=float, default=300.0, help="AI jobs: seconds (default 300)")
    g.set_defaults(func=run_generate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


#: option -> (low, high, whole[, low open]): nodes and pods up to 10^7, times up to 10 years
REPLAY_BOUNDS = {"cpu_nodes": (1, MAX_INSTANCES, True), "gpu_nodes": (1, MAX_INSTANCES, True),
                 "data_nodes": (1, MAX_INSTANCES, True), "procs_per_node": (1, MAX_CORES, True),
                 "idle_timeout": (0, MAX_SECONDS, False), "min_nodes": (0, MAX_INSTANCES, True),
                 "tick": (0, MAX_SECONDS, False, True),
                 "reclaim_rate": (0, 1.0, False)}  # per node-second: 1 = a reclaim every second
#: jobs of a synthetic trace: 10^7 (a year of a large centre is ~10^6)
GENERATE_BOUNDS = {"jobs": (1, 10**7, True), "seed": (0, SEED_MAX, True),
                   "max_nodes": (1, MAX_INSTANCES, True), "mean_interarrival": (0, MAX_SECONDS, False, True)}


def run_replay(args) -> int:
    import numpy as np
    import pandas as pd

    from hpclab import catalog
    from hpclab import platform as P

    check_bounds(args, REPLAY_BOUNDS)
    cat = catalog.default()
    cpu, gpu = cat.instance(args.cpu_type), cat.instance(args.gpu_type)  # unknown: the known names
    if gpu.gpus < 1:
        with_gpus = ", ".join(n for n, r in cat.instances.items() if r.gpus > 0)
        raise HpclabError(f"--gpu-type {args.gpu_type} has no GPUs; GPU types: {with_gpus}")
    if cpu.vcpus < 1:  # pragma: no cover - the catalog requires vcpus > 0
        raise HpclabError(f"--cpu-type {args.cpu_type} has no vCPUs")

    parts = []
    for path in args.traces:
        kw = {"procs_per_node": args.procs_per_node} if str(path).lower().endswith(".swf") else {}
        parts.append(P.read_trace(path, **kw))
    jobs = pd.concat(parts, ignore_index=True)
    if not len(jobs):
        skipped = sum(int(p.attrs.get("skipped", 0)) for p in parts)
        raise HpclabError(f"{', '.join(map(str, args.traces))}: no job to replay ({skipped} job lines "
                          f"without a run time or size)")
    if len(parts) > 1:
        jobs["job_id"] = np.arange(1, len(jobs) + 1)
    elastic = None if args.elastic is None else args.elastic == "yes"
    res = P.replay(jobs, policy=args.policy, cpu_nodes=args.cpu_nodes, gpu_nodes=args.gpu_nodes,
                   data_nodes=args.data_nodes, cpu_type=args.cpu_type, gpu_type=args.gpu_type,
                   elastic=elastic, backfill=not args.no_backfill, placement=args.placement,
                   idle_timeout=args.idle_timeout, min_nodes=args.min_nodes, market=args.market,
                   kube_strategy=args.kube_strategy, scaler=args.scaler, tick=args.tick,
                   zone=None if args.zone is None else tuple(args.zone.split(",")) if "," in args.zone
                   else args.zone, reclaim_rate=args.reclaim_rate, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(res.summary().to_dict(data="list"), indent=1, default=str))
        return 0
    ds = res.summary()
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 1):
        n_left = int((res.jobs["status"] == "unfinished").sum())
        unfinished = f", {n_left} never started (no capacity)" if n_left else ""
        scaled = ""
        if res.settings.get("scaler") and res.settings["elastic"]:
            when = "at its triggers" if res.settings.get("scaler_triggers") else \
                f"every {res.settings['tick']:g} s"
            scaled = f" scaled by {res.settings['scaler']} {when}"
        print(f"policy {res.policy} ({'elastic' if res.settings['elastic'] else 'fixed'} pools{scaled}, "
              f"{'EASY backfill' if res.settings['backfill'] else 'no backfill'}, "
              f"{res.settings['placement']} placement): {int(ds['jobs'].sum())} jobs done, "
              f"{int(ds['rejected'].sum())} rejected{unfinished}, makespan {res.makespan / 3600:.1f} h")
        print(res.table().to_string())
        pools = res.pools.loc[:, ["itype", "max_nodes", "launched", "node_hours", "utilisation", "cost"]]
        pools = pools.rename(columns={"node_hours": "node_hours [h]", "cost": "cost [USD]"})
        print(pools.to_string())
        print(f"total cost [USD]: {res.cost:.2f}")
        p = res.pools
        if p["reclaims"].sum() or p["refused"].sum():
            print(f"spot reclaims {int(p['reclaims'].sum())} ({int(p['hard_kills'].sum())} hard kills of "
                  f"busy nodes), jobs re-run {int(ds['rerun_jobs'])}, given up {int(ds['failed'])}, "
                  f"work lost {p['lost_slot_seconds'].sum() / 3600:,.0f} slot-hours; launches refused "
                  f"{int(p['refused'].sum())}")
    return 0


def run_generate(args) -> int:
    from hpclab import platform as P

    check_bounds(args, GENERATE_BOUNDS)
    out = str(args.out)
    if not out.lower().endswith((".swf", ".csv")):
        raise HpclabError(f"OUT must end in .swf or .csv, got {out!r}")
    check_writable_file("OUT", out)  # a folder named x.swf, a missing folder: before generating
    if out.lower().endswith(".swf"):
        jobs = P.lublin_feitelson(args.jobs, max_nodes=args.max_nodes, seed=args.seed)
        P.write_swf(jobs, out, header={"Note": f"Lublin-Feitelson 2003 model, seed {args.seed}, "
                                               f"max nodes {args.max_nodes} (hpclab platform generate)"})
    else:
        jobs = P.gpu_jobs(args.jobs, seed=args.seed, mean_interarrival=args.mean_interarrival)
        P.write_gpu_csv(jobs, out)
    print(f"wrote {len(jobs)} jobs to {out}")
    return 0
