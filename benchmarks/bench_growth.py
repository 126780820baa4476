"""Growth of the virtual-clock campaign with the work (issue 12): 1 M and 10 M tasks at 100,000
cores, the scenario of ``bench_campaign.py`` (all tasks at t = 0, lognormal work, ecs.c8a.8xlarge
in one zone, the target-duration policy every 60 s, a fixed 95 s boot).

Targets: 10 M tasks cost at most 12x the time of 1 M tasks, and under 200 bytes of peak memory
per task. Each size runs in its own process (so that its peak resident memory is its own); the
bytes per task are (peak RSS of the 10 M run - peak RSS of the 1 M run) / 9 M, which takes out
the interpreter, numpy and the catalog. Best of ``--repeat`` runs for the time (three by default:
one 10 M run varied from 2.7 s to 4.2 s here, most of it first touching about 1 GB of arrays).

    python benchmarks/bench_growth.py [--repeat 3] [--sizes 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {here!r})
from bench_campaign import run_hpclab, work_of
from hpclab import catalog
from hpclab.elastic.state import PoolLimits
cat = catalog.default()
lim = PoolLimits(types=("ecs.c8a.8xlarge",), zones=("cn-hangzhou-h",), quota_cores=100_000)
w = work_of({n})
t = time.perf_counter()
r = run_hpclab(w, lim, cat)
t = time.perf_counter() - t
print(json.dumps({{"seconds": t, "done": r["tasks_done"], "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def run(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE), n=n)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    small, big = args.sizes
    print(f"campaign growth at 100,000 cores (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    res = {}
    for n in (small, big):
        runs = [run(n) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        res[n] = best
        print(f"{n:>11,} tasks: {best['seconds']:6.2f} s, {best['done']:,} done, peak RSS "
              f"{best['rss'] / 2**20:,.0f} MiB")
    ratio = res[big]["seconds"] / res[small]["seconds"]
    per_task = (res[big]["rss"] - res[small]["rss"]) / (big - small)
    print(f"target: time({big:,}) / time({small:,}) <= {big / small * 1.2:.0f}: {ratio:.1f} "
          f"(ratio to target {ratio / (big / small * 1.2):.2f})")
    print(f"target: peak memory per task < 200 B: {per_task:.0f} B (ratio to target {per_task / 200:.2f})")


if __name__ == "__main__":
    main()
