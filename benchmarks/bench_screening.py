"""Benchmark the RDKit virtual screen (issue 5).

* Molecules per second per core of each stage (prepare, filter, 2D, 3D), measured in this
  process on a 300-molecule subset with the CDK2 actives hidden in it (one core, no Dask).
  Targets: prepare + filter >= 150 molecules/s/core, 2D >= 2,000, 3D (3 conformers) >= 5.
* Scaling efficiency of the pool from 1 to 2 workers: the same 400-molecule screen (with its 3D
  stage) on a LocalCluster of 1 and of 2 single-threaded worker processes, clusters started
  before the clock. Efficiency = T1 / (2 T2); target >= 0.8.
* The campaign model: a 20 x 40 x 5 x 2 sweep (library size x deadline x spot share x zones);
  target <= 50 ms. The virtual clock: 1,000,000 tasks drawn from the measured costs;
  target <= 10 s.

The machine's 2 cores are shared with whatever else runs: the load average is printed so that
the noise can be judged; wall times are the best of a few repeats.
"""

from __future__ import annotations

import os
import time

import numpy as np

STAGE_TARGETS = {"prepare+filter": 150.0, "2d": 2000.0, "3d": 5.0}  # molecules / s / core
EFFICIENCY_TARGET = 0.8
SWEEP_TARGET_S = 0.050
SIM_TARGET_S = 10.0


def main():
    from hpclab.workloads import screening as scr

    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    lib = scr.load_library("nci5k", "cdk2", size=300, seed=7)
    params = scr.ScreenParams()
    scr.screen_batch(lib["id"][:5], lib["smiles"][:5], lib["is_active"][:5], params)  # warm caches
    df = scr.screen_batch(lib["id"], lib["smiles"], lib["is_active"], params)
    ds = scr.to_dataset(df, params)
    costs = scr.stage_costs(ds)
    rate = costs.molecules_per_second_per_core.to_series()
    print("molecules per second per core, by stage:")
    for stage, value in rate.items():
        print(f"  {stage:<8} {value:10.1f}  (mean {1e3 / value:8.3f} ms, ran on "
              f"{float(costs.ran_fraction.sel(stage=stage)):.0%} of molecules)")
    pf = 1.0 / (float(costs.mean_seconds.sel(stage="prepare")) + float(costs.mean_seconds.sel(stage="filter")))
    measured = {"prepare+filter": pf, "2d": float(rate["2d"]), "3d": float(rate["3d"])}
    for key, target in STAGE_TARGETS.items():
        print(f"  {key}: {measured[key]:.1f} mol/s/core, ratio to target: "
              f"{target / measured[key]:.2f} (target <= 1, i.e. >= {target:g} mol/s/core)")
    whole = 1.0 / float(costs.cost_seconds.mean())
    print(f"  whole pipeline (3D on {costs.attrs['survivor_fraction']:.1%}): {whole:.1f} mol/s/core")

    # pool scaling, 1 -> 2 workers
    lib2 = scr.load_library("nci5k", "cdk2", size=400, seed=11)
    walls = {}
    for n in (1, 2):
        with scr.local_client(n) as client:
            client.run(lambda: __import__("hpclab.workloads.screening.pipeline"))
            best = np.inf
            for _ in range(2):
                t0 = time.perf_counter()
                scr.run_screen(lib2, params, client=client, batch_size=20, progress=False)
                best = min(best, time.perf_counter() - t0)
            walls[n] = best
    eff = walls[1] / (2 * walls[2])
    print(f"pool scaling: 1 worker {walls[1]:.2f} s, 2 workers {walls[2]:.2f} s for {len(lib2)} "
          f"molecules -> speed-up {walls[1] / walls[2]:.2f}, efficiency {eff:.2f}; ratio to target: "
          f"{EFFICIENCY_TARGET / eff:.2f} (target <= 1, i.e. efficiency >= {EFFICIENCY_TARGET})")
    print(f"  pool throughput: {len(lib2) / walls[2]:.1f} mol/s on 2 workers")

    # the campaign model and the virtual clock
    inputs = scr.campaign_inputs(ds)
    args = (np.geomspace(1e6, 1e9, 20), np.geomspace(0.25, 72, 40), np.linspace(0, 1, 5),
            ["one", "global"])
    scr.estimate_campaign(inputs, *args, conformers=300, survivor_fraction=1.0)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        scr.estimate_campaign(inputs, *args, conformers=300, survivor_fraction=1.0)
        best = min(best, time.perf_counter() - t0)
    print(f"campaign model, 8,000-point sweep: {best * 1e3:.1f} ms; ratio to target: "
          f"{best / SWEEP_TARGET_S:.2f} (target <= 1)")
    t0 = time.perf_counter()
    sim = scr.simulate_campaign(inputs, 2e7, 1.5, 0.9, "global", conformers=300,
                                survivor_fraction=1.0, batch_size=20)
    dt = time.perf_counter() - t0
    print(f"virtual clock, {sim.attrs['tasks']:,} tasks: {dt:.2f} s (makespan {sim.attrs['makespan_h']:.2f} h, "
          f"peak {sim.attrs['peak_cores']:,} cores); ratio to target: {dt / SIM_TARGET_S:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
