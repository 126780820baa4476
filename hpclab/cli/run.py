"""``hpclab run``: run a scenario file headless on either clock; ``--example NAME`` writes one."""

from __future__ import annotations

import math
import sys
from pathlib import Path


def register(sub) -> None:
    from hpclab.scenario import CLOCKS, example_names

    p = sub.add_parser("run", help="run a scenario file on the virtual or the real clock",
                       description="Run SCENARIO.yaml headless and print its summary. "
                                   f"Shipped examples: {', '.join(example_names())}.")
    p.add_argument("scenario", nargs="?", help="a scenario file (YAML)")
    p.add_argument("--example", metavar="NAME",
                   help="write the shipped example NAME to NAME.yaml (never overwrites) and stop")
    p.add_argument("--clock", choices=CLOCKS, default=None, help="override the scenario's clock")
    p.add_argument("--scheduler", metavar="ADDR", default=None,
                   help="run real work on the Dask scheduler at ADDR (overrides cluster)")
    p.add_argument("--cluster", metavar="FILE", default=None,
                   help="run real work on the cluster of the spec file FILE: a scheduler address or "
                        "a dask-jobqueue cluster (overrides cluster; docs/clusters.md)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write result.nc, summary.json and scenario.yaml into DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _fmt(v, unit: str) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if unit == "USD":
            return f"{v:,.2f} USD"
        if unit == "s":
            if v != 0 and abs(v) < 10:
                return f"{v:.4g} s"
            return f"{v:,.1f} s" if abs(v) < 3600 else f"{v:,.0f} s ({v / 3600:.2f} h)"
        if unit == "1":
            return f"{v:.3g}"
        return f"{v:,.4g} {unit}"
    if isinstance(v, int) and unit not in ("1", ""):
        return f"{v:,} {unit}"
    return str(v)


def run(args) -> int:
    from hpclab._validate import HpclabError, check_writable_folder
    from hpclab.scenario import Scenario

    if args.example:
        if args.scenario:
            raise HpclabError("give either a scenario file or --example NAME, not both")
        s = Scenario.example(args.example)
        target = Path(f"{args.example}.yaml")
        s.save(target, overwrite=False)
        print(f"wrote {target} (run it with: hpclab run {target})")
        return 0
    if not args.scenario:
        raise HpclabError("run needs a scenario file (or --example NAME to write one)")
    if args.seed is not None and args.seed < 0:
        raise HpclabError(f"--seed must be a whole number >= 0, got {args.seed}")
    s = Scenario.load(args.scenario)
    out = Path(args.out) if args.out else None
    if out is not None:  # checked before any work
        check_writable_folder("--out", out)
    changes = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if changes:  # an error names the flag (the file's own value was fine)
        try:
            s = s.replace(**changes)
        except HpclabError as exc:
            msg = str(exc).removeprefix(f"{s.source}: ").removeprefix("seed: ")
            raise HpclabError(f"--seed {args.seed}: {msg} ({s.source})") from None
    if args.cluster is not None:
        if args.scheduler is not None:
            raise HpclabError("give either --scheduler ADDR or --cluster FILE, not both")
        spec = Path(args.cluster)
        if not spec.is_file():
            raise HpclabError(f"--cluster {args.cluster}: no such cluster spec file")
        from hpclab.elastic._cluster_spec import load_cluster_spec

        load_cluster_spec(spec)  # checked before any work
        args.cluster = str(spec.resolve())
    if args.scheduler is not None:  # a wrong address fails in seconds, not after Dask's 30 s
        from hpclab.cli._args import check_scheduler

        args.scheduler = check_scheduler(args.scheduler)
    cluster = {"kind": "address", "address": args.scheduler} if args.scheduler else None
    if args.cluster is not None:
        cluster = {"kind": "file", "file": args.cluster}
    result = s.run(args.clock, progress=not args.quiet and not args.json, cluster=cluster, out=out)
    notes = result.summary.attrs.get("notes", "")
    if notes:
        print(f"hpclab: note: {notes}", file=sys.stderr)
    if out is not None:
        result.save(out)
    if args.json:
        print(result.to_json())
        return 0
    units = result.units()
    rows = [(k, _fmt(result[k], units[k])) for k in result.summary.data_vars]
    width = max(len(k) for k, _ in rows)
    print(f"{s.name} ({s.workload['kind']}) on the {result.clock} clock")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if out is not None:
        print(f"wrote {out / 'result.nc'}, {out / 'summary.json'}, {out / 'scenario.yaml'}")
    return 0
