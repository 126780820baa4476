"""``hpclab screen``: run the real RDKit virtual screen headless; run it again to resume."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("screen", help="run the real RDKit virtual screen on a Dask cluster "
                                      "(resumes from --out if run again)")
    p.add_argument("--library", default="nci5k", help="screening library (nci5k: RDKit's NCI set)")
    p.add_argument("--target", default="cdk2", help="target whose actives are hidden in the library "
                                                    "(cdk2, egfr)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use a running Dask scheduler (e.g. tcp://127.0.0.1:8786) instead")
    p.add_argument("--pool", default=None, metavar="ITYPE",
                   help="run on an hpclab ElasticPool of up to --workers spot instances of this "
                        "catalog type (e.g. ecs.c8a.8xlarge) and print its bill")
    p.add_argument("--zone", default=None, help="zone of the --pool instances (default: the "
                                                "catalog's first zone offering the type)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for one Parquet file per batch; finished batches are not redone")
    p.add_argument("--size", type=int, default=None, help="screen a seeded random subset of the library")
    p.add_argument("--batch-size", type=int, default=100, help="molecules per task (default 100)")
    p.add_argument("--threshold-3d", type=float, default=None,
                   help="2D similarity needed to reach the 3D stage (default 0.15; >1: no 3D)")
    p.add_argument("--conformers", type=int, default=None, help="ETKDG conformers in the 3D stage")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of the shuffle")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from hpclab._validate import check_positive
    from hpclab.workloads import screening as scr

    check_positive("workers", args.workers, integer=True)  # even when every batch is read back
    params = {}
    if args.threshold_3d is not None:
        params["threshold_3d"] = args.threshold_3d
    if args.conformers is not None:
        params["n_conformers"] = args.conformers
    kwargs = dict(size=args.size, seed=args.seed, out=args.out, workers=args.workers,
                  batch_size=args.batch_size, progress=not args.no_progress, **params)
    bill = None
    if args.scheduler and args.pool:
        from hpclab._validate import HpclabError

        raise HpclabError("give --scheduler or --pool, not both")
    if args.scheduler:
        from hpclab.elastic._pool_attach import connect

        # the workers are checked first: one line naming a worker without what screening needs
        with connect(args.scheduler, needs=("rdkit",)) as client:
            ds = scr.screen(args.library, args.target, client=client, **kwargs)
    elif args.pool:
        ds, bill = _on_pool(args, kwargs)
    else:
        ds = scr.screen(args.library, args.target, **kwargs)
    run_stats = json.loads(ds.attrs["run"])
    a = ds.attrs
    print(f"screened {a['n_molecules']} molecules against {a['target']}: "
          f"{a['n_invalid_smiles']} invalid SMILES, {a['n_3d']} reached the 3D stage, "
          f"{a['n_embed_failed']} failed to embed")
    print(f"batches: {len(run_stats['computed'])} computed, {len(run_stats['skipped'])} read back "
          f"from {args.out or '(memory)'}, {len(run_stats['resubmitted'])} resubmitted; "
          f"{run_stats['wall_seconds']:.1f} s on {run_stats['n_workers']} workers")
    q = scr.quality(ds)
    table = pd.DataFrame({"roc_auc": q.roc_auc.to_series(),
                          "ef_1pct": q.ef.sel(fraction=0.01).to_series(),
                          "ef_5pct": q.ef.sel(fraction=0.05).to_series()})
    print(f"\nquality ({q.attrs['n_actives']} hidden actives among {q.attrs['n_scored']}; "
          f"EF1% cannot exceed {q.attrs['ef_max_at_1pct']:.1f}):")
    print(table.round(3).to_string())
    c = scr.stage_costs(ds)
    costs = pd.DataFrame({"mean_ms": c.mean_seconds.to_series() * 1e3,
                          "p99_ms": c.p99_seconds.to_series() * 1e3,
                          "max_ms": c.max_seconds.to_series() * 1e3,
                          "mol_per_s_per_core": c.molecules_per_second_per_core.to_series(),
                          "ran_fraction": c.ran_fraction.to_series()})
    print("\nper-stage cost (one core):")
    print(costs.round(3).to_string())
    if bill is not None:
        print(f"\npool bill: {float(bill.total_cost):.4f} USD for {int(bill.instances.sum())} "
              f"instance(s) ({bill.attrs.get('meter', 'per second')}; pool time runs "
              f"{1 / bill.attrs.get('time_scale', 1):.0f}x wall time)")
    return 0


def _on_pool(args, kwargs):
    from distributed import Client

    from hpclab import catalog
    from hpclab._validate import check_positive
    from hpclab.elastic import ElasticPool, PoolLimits, make_policy
    from hpclab.workloads import screening as scr

    cat = catalog.default()
    cat.instance(args.pool)  # KeyError listing the known types
    zone = args.zone or next((z for z, rec in cat.zones.items() if args.pool in rec.capacity), None)
    if zone is None:
        raise KeyError(f"no zone offers {args.pool}")
    workers = check_positive("workers", args.workers, integer=True)
    limits = PoolLimits(types=(args.pool,), zones=(zone,), max_per_type={args.pool: workers})
    kwargs = {k: v for k, v in kwargs.items() if k != "workers"}
    with ElasticPool(limits=limits, market="spot", time_scale=0.01, interval=0.1, catalog=cat,
                     policy=make_policy("spot-first", target_duration=5.0, catalog=cat)) as pool, \
            Client(pool) as client:
        ds = scr.screen(args.library, args.target, client=client, **kwargs)
        return ds, pool.bill()
