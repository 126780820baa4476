"""Benchmark the ElasticPool against a raw LocalCluster of the same size (issue 3).

The same task graphs run on:
* a raw ``LocalCluster`` (2 workers x 1 thread, in-process workers, 127.0.0.1);
* an ``ElasticPool`` of 2 instances x 1 thread (same worker kind), with its policy loop running
  (``target-duration`` held at 2 instances by min = max = 2) and its event log.

Graphs: (a) 1,000 independent short tasks (1 ms of sleep each) gathered at once - Dask's
per-task overhead dominates; (b) a ``dask.array`` reduction (sum of a 3000 x 3000 random array
in 250 x 250 chunks, 144 chunks + tree reduction), real numeric work.
Figures: wall time of each (median and best of alternating repeats), the overhead ratio
pool / raw of the medians (target < 1.05), and tasks per second for the short tasks.

The machine's 2 cores are shared with whatever else runs: runs alternate raw / pool (and
which goes first) so that load drifts hit both, the ratio uses medians, and the load average is printed.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

N_TASKS = 1000
TASK_SECONDS = 0.001
REPEAT = 5
TARGET_RATIO = 1.05


def short_task(i):
    time.sleep(TASK_SECONDS)
    return i


def run_short(client):
    futures = client.map(short_task, range(N_TASKS), pure=False)
    out = client.gather(futures)
    assert out == list(range(N_TASKS))


def run_array(client):
    import dask.array as da

    x = da.random.RandomState(0).random_sample((3000, 3000), chunks=(250, 250))
    total = client.compute(x.sum()).result()
    assert 0.49 * x.size < total < 0.51 * x.size


def timed(fn, client):
    t0 = time.perf_counter()
    fn(client)
    return time.perf_counter() - t0


def main():
    from distributed import Client, LocalCluster

    from hpclab.elastic import ElasticPool, PoolLimits, policies

    itype, zone = "ecs.c8i.8xlarge", "cn-hangzhou-h"
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 shared cores: figures are noisy)")
    raw = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                       protocol="tcp://", dashboard_address=None, silence_logs=logging.ERROR)
    limits = PoolLimits(types=(itype,), zones=(zone,), min_per_type={itype: 2},
                        max_per_type={itype: 2})
    pool = ElasticPool(limits=limits, time_scale=0.01, processes=False,
                       policy=policies.TargetDuration(5.0, itype=itype), interval=0.2)
    try:
        pool.wait_for(lambda p: len(p.running()) == 2, 60)
        with Client(raw) as c_raw, Client(pool) as c_pool:
            results = {}
            for name, fn in (("short tasks", run_short), ("dask.array sum", run_array)):
                fn(c_raw), fn(c_pool)  # warm up both (imports, task-duration estimates)
                times = {"raw": [], "pool": []}
                for k in range(REPEAT):  # alternate which goes first
                    order = (("raw", c_raw), ("pool", c_pool))
                    for label, c in order if k % 2 == 0 else order[::-1]:
                        times[label].append(timed(fn, c))
                results[name] = times
        events = len(pool.log)
    finally:
        pool.close()
        raw.close()

    print(f"{'graph':<16} {'LocalCluster [s]':>22} {'ElasticPool [s]':>22} {'ratio':>14}")
    print(f"{'':<16} {'median / best':>22} {'median / best':>22} {'median / best':>14}")
    worst = 0.0
    for name, t in results.items():
        med = {k: float(np.median(v)) for k, v in t.items()}
        best = {k: float(np.min(v)) for k, v in t.items()}
        ratio = med["pool"] / med["raw"]
        worst = max(worst, ratio)
        print(f"{name:<16} {med['raw']:11.3f} {best['raw']:10.3f} {med['pool']:11.3f} "
              f"{best['pool']:10.3f} {ratio:7.3f} {best['pool'] / best['raw']:6.3f}")
    short = {k: float(np.median(v)) for k, v in results["short tasks"].items()}
    print(f"short tasks ({TASK_SECONDS * 1e3:g} ms each, 2 slots, median): "
          f"{N_TASKS / short['raw']:.0f} tasks/s on LocalCluster, "
          f"{N_TASKS / short['pool']:.0f} tasks/s on ElasticPool "
          f"(ideal {2 / TASK_SECONDS:.0f} tasks/s)")
    print(f"pool event log: {events} events; pool bill {pool.bill()['total_cost'].item():.4f} USD")
    print(f"overhead ratio (worst graph, medians): {worst:.3f} (target < {TARGET_RATIO})")
    print(f"ratio to target: {worst / TARGET_RATIO:.2f} (target <= 1)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
