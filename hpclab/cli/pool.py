"""``hpclab pool``: run elastic pools headless."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("pool", help="elastic pools on real Dask workers")
    psub = p.add_subparsers(dest="pool_command", metavar="ACTION")
    demo = psub.add_parser("demo", help="a burst of short tasks on a pool that grows from zero, "
                                        "is preempted and shrinks to zero; prints the bill and "
                                        "the event counts")
    demo.add_argument("--tasks", type=int, default=2000, help="number of tasks (default 2000)")
    demo.add_argument("--task-seconds", type=float, default=0.2,
                      help="pool seconds per task (default 0.2: 2 ms of wall time at time scale 0.01)")
    demo.add_argument("--policy", default="spot-first",
                      help="target-duration, single-zone, spot-first, global, global-spot, "
                           "deadline-budget (default spot-first)")
    demo.add_argument("--types", default="ecs.c8i.8xlarge",
                      help="comma-separated instance types (default ecs.c8i.8xlarge)")
    demo.add_argument("--zones", default="cn-hangzhou-h", help="comma-separated zones")
    demo.add_argument("--spot-share", type=float, default=0.5)
    demo.add_argument("--preemptions", type=int, default=2)
    demo.add_argument("--fault-rate", type=float, default=0.0,
                      help="random spot reclaims per instance-hour (pool time)")
    demo.add_argument("--max-instances", type=int, default=2, help="per type (default 2)")
    demo.add_argument("--time-scale", type=float, default=0.01,
                      help="wall seconds per pool second (default 0.01)")
    demo.add_argument("--processes", action="store_true",
                      help="workers in their own processes (default: threads in this process)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--progress", action="store_true", help="Dask's progress bar")
    demo.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run the burst on the workers of this Dask scheduler (each billed as "
                           "one instance of the first --types; checked for hpclab first; no "
                           "policy or reclaims: the workers are not the pool's)")
    demo.set_defaults(func=run_demo)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_demo(args) -> int:
    import pandas as pd

    from hpclab.elastic._pool_burst import run_burst

    types = tuple(t.strip() for t in args.types.split(",") if t.strip())
    zones = tuple(z.strip() for z in args.zones.split(",") if z.strip())
    preemptions = args.preemptions
    if args.scheduler and preemptions:
        print(f"(--scheduler: no reclaims; ignoring --preemptions {preemptions})")
        preemptions = 0
    run = run_burst(args.tasks, args.task_seconds, policy=args.policy, types=types, zones=zones,
                    spot_share=args.spot_share, preemptions=preemptions,
                    fault_rate=args.fault_rate, max_instances=args.max_instances,
                    time_scale=args.time_scale, processes=args.processes, seed=args.seed,
                    progress=args.progress, scheduler=args.scheduler)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"{run.n_tasks} tasks in {run.wall_seconds:.2f} s wall "
              f"({run.tasks_per_second:.0f} tasks/s), {run.pool_seconds:.0f} pool s; "
              f"results {'correct' if run.correct else 'WRONG'}; "
              f"{run.instances} instances, {run.preemptions} spot reclaims")
        print("\nbill (USD):")
        print(run.bill_table().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print("\nevents by state:")
        print(run.event_counts().to_string())
        print("\ninstances ended by:")
        print(run.end_reasons().to_string())
    return 0 if run.correct else 1
