"""``hpclab cae``: run the real domain-decomposed heat solver headless, then (optionally) scale it.

    hpclab cae --grid 2048 --steps 100 --workers 2
    hpclab cae --grid 256 --ndim 3 --steps 50 --steps-per-exchange 5 --workers 2 --model
    hpclab cae --grid 1024 --scheduler tcp://10.0.0.5:8786      # any Dask cluster (an ElasticPool's too)
"""

from __future__ import annotations

import json
import math

from hpclab._validate import HpclabError


def register(sub) -> None:
    p = sub.add_parser("cae", help="run the real stencil (heat equation) solver on Dask workers and print "
                                   "its error against the analytical solution and its time per step",
                       description="Explicit heat equation on the unit square/cube, sine eigenmode initial "
                                   "condition, one sub-domain per worker, halo exchange by dask map_overlap, "
                                   "compiled kernel, temporal blocking.")
    p.add_argument("--grid", type=int, default=2048, help="grid points per axis (default 2048)")
    p.add_argument("--ndim", type=int, default=2, choices=[2, 3], help="2-D or 3-D (default 2)")
    p.add_argument("--steps", type=int, default=100, help="time steps (default 100)")
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes of a local cluster (default 2)")
    p.add_argument("--steps-per-exchange", type=int, default=10,
                   help="temporal blocking: steps per halo exchange (default 10)")
    p.add_argument("--subdomains", default=None,
                   help="sub-domains per axis, comma-separated (default: one per worker along x)")
    p.add_argument("--kappa", type=float, default=1.0, help="diffusivity (default 1)")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in s (default 0.9 x the stability limit h^2/(2 d kappa); a larger one is refused)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="connect to this Dask scheduler instead of starting a local cluster")
    p.add_argument("--model", action="store_true",
                   help="also print strong scaling per fabric, its compute term calibrated by timing the "
                        "compiled kernel on one core here")
    p.add_argument("--fabrics", default=None,
                   help="catalog fabrics for --model, comma-separated (default tcp-vpc,erdma,rdma-hpn7; "
                        "implies --model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    from hpclab.workloads import cae

    for field in ("grid", "steps", "workers", "steps_per_exchange"):
        value = getattr(args, field)
        low = 3 if field == "grid" else 1  # two boundary nodes and one interior; 0 steps have no time per step
        if value < low:
            raise HpclabError(f"--{field.replace('_', '-')} must be a whole number >= {low}, got {value}")
    fabrics = cae.FABRICS
    if args.fabrics is not None:
        from hpclab.network import fabric

        fabrics = tuple(f.strip() for f in args.fabrics.split(",") if f.strip())
        if not fabrics:
            raise HpclabError(f"--fabrics must name at least one catalog fabric, got {args.fabrics!r}")
        for name in fabrics:
            fabric(name)  # unknown names: KeyError listing the known ones, before any cluster starts
        args.model = True
    subdomains = None
    if args.subdomains:
        try:
            subdomains = tuple(int(s) for s in args.subdomains.split(","))
        except ValueError:
            raise HpclabError(f"--subdomains must be whole numbers separated by commas, got {args.subdomains!r}") \
                from None
    client = None
    if args.scheduler:
        from hpclab.elastic._pool_attach import connect

        # the workers are checked first: one line naming a worker without what the solver needs
        client = connect(args.scheduler, needs=("numba",))
    try:
        ds = cae.run_heat(args.grid, args.ndim, steps=args.steps, kappa=args.kappa, dt=args.dt, subdomains=subdomains,
                          steps_per_exchange=args.steps_per_exchange, client=client, workers=args.workers)
    finally:
        if client is not None:
            client.close()
    a = ds.attrs
    out = {k: a[k] for k in ("grid", "subdomains", "workers", "steps", "steps_per_exchange", "dt", "time",
                             "max_abs_error", "rel_l2_error", "seconds_per_step", "seconds_per_cell_step",
                             "halo_nbytes_per_step", "halo_messages_per_step", "exchanges_per_step")}
    if args.model:
        # compute cost of the model = the compiled kernel alone on one core, measured here; the Dask run's
        # own time per cell also holds its per-round runtime overhead and the halo copies, which the
        # model charges separately (messages) or not at all (an MPI code has no task scheduler)
        cost = cae.measure_cost_per_cell(n=min(args.grid, 512 if args.ndim == 2 else 64), ndim=args.ndim,
                                         steps=10, repeat=3)
        sweep = cae.scaling(grid=args.grid, fabrics=fabrics, ndim=args.ndim, cost_per_cell=cost,
                            steps_per_exchange=args.steps_per_exchange)
        out["model_cost_per_cell"] = cost
        out["saturation_cores"] = {str(f): int(sweep.saturation_cores.sel(fabric=f)) for f in sweep.fabric.values}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    decay = math.exp(-cae.heat_decay_rate([1.0] * args.ndim, args.kappa) * a["time"])
    grid = " x ".join(map(str, a["grid"]))
    subs = " x ".join(map(str, a["subdomains"]))
    print(f"heat equation, grid {grid}, {subs} sub-domains on {a['workers']} Dask worker(s), "
          f"{a['steps']} steps of dt {a['dt']:.3g} s, {a['steps_per_exchange']} step(s) per halo exchange")
    print(f"error vs analytical exp(-kappa pi^2 sum(1/L^2) t) at t = {a['time']:.4g} s: "
          f"max abs {a['max_abs_error']:.3e}, relative L2 {a['rel_l2_error']:.3e} "
          f"(the mode decayed to {decay:.6g} of its start)")
    print(f"time per step: {a['seconds_per_step'] * 1e3:.3f} ms "
          f"({a['seconds_per_cell_step'] * 1e9 * a['workers']:.3f} ns per cell and step per worker)")
    if a["halo_messages_per_step"]:
        print(f"halo: {a['halo_nbytes_per_step'] / 1e3:.1f} kB in {a['halo_messages_per_step']:.3g} messages per step "
              f"(all sub-domains), {a['exchanges_per_step']:.3g} exchanges per step")
    else:
        print("halo: none (one sub-domain: no neighbours to exchange with)")
    if args.model:
        sat = ", ".join(f"{f} {n:,}" for f, n in out["saturation_cores"].items())
        print(f"model (strong scaling of this grid, kernel measured here at {cost * 1e9:.3f} ns per cell-step): "
              f"efficiency falls below 50% beyond {sat} cores")
    return 0
