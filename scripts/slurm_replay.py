#!/usr/bin/env python3
"""Replay a small SWF trace on a real Slurm and on hpclab's Slurm-like queue; compare starts.

    eval "$(scripts/slurm-up.sh)"                       # a single host with 64 emulated cores
    python scripts/slurm_replay.py --record             # measure, write data/reference/slurm_replay.csv
    python scripts/slurm_replay.py                      # compare the recorded starts with hpclab's

The trace (``trace()``, also written as ``data/reference/slurm_replay.swf``): 60 jobs of 1 to 64
cores, run times of seconds (jobs that sleep) and requested times from the f-model
(:func:`hpclab.platform.generate.requested_times`), arrivals about a second apart, so that the
queue builds up on 64 cores. Each job is ``sbatch -n CORES -t MINUTES --wrap "sleep RUN"``
submitted at its submit time (Slurm keeps time limits in whole minutes: ``MINUTES =
ceil(req / 60)``). Slurm's own record of each job (jobcomp/filetxt: SubmitTime, StartTime,
EndTime, whole seconds) is stored with the wall times of the submissions, all in seconds from
the whole second before the first submission.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REF_CSV = ROOT / "data" / "reference" / "slurm_replay.csv"
REF_SWF = ROOT / "data" / "reference" / "slurm_replay.swf"
CORES = 64
SEED = 15
N_JOBS = 60


def trace(n: int = N_JOBS, seed: int = SEED) -> pd.DataFrame:
    """The job table of the comparison (see the module docstring)."""
    from hpclab.platform.generate import requested_times
    from hpclab.platform.jobs import jobs_frame

    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 2, 4, 8, 16, 32, 48, 64], size=n,
                       p=[0.2, 0.15, 0.2, 0.15, 0.12, 0.1, 0.05, 0.03])
    run = np.clip(np.round(rng.lognormal(np.log(4.0), 0.8, size=n)), 1, 30)
    req = requested_times(rng, run, f=3.0, round_to=1.0)
    submit = np.round(np.cumsum(rng.exponential(1.0, size=n)), 1)
    return jobs_frame(submit=submit - submit[0], pods=sizes, run_time=run, req_time=req)


def _slurm_time(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def record(jobs: pd.DataFrame, jobcomp: Path, *, workdir: str = "/tmp") -> pd.DataFrame:
    """Submit ``jobs`` to the Slurm of ``SLURM_CONF`` at their submit times (wall seconds), wait
    for them, and return the table with Slurm's submit/start/end (s from the whole second
    before the first submission) and the measured wall time of each ``sbatch``."""
    tag = f"hpclab-replay-{os.getpid()}"
    ids, wall = [], []
    t0 = math.floor(time.time()) + 1.0
    while time.time() < t0:
        time.sleep(0.01)
    for row in jobs.itertuples():
        delay = t0 + row.submit - time.time()
        if delay > 0:
            time.sleep(delay)
        minutes = max(1, math.ceil(row.req_time / 60.0))
        wall.append(time.time() - t0)
        out = subprocess.run(
            ["sbatch", "--parsable", "-J", tag, "-n", str(int(row.pods)), "-t", str(minutes),
             "-o", "/dev/null", "-D", workdir, "--wrap", f"sleep {int(row.run_time)}"],
            check=True, capture_output=True, text=True).stdout
        ids.append(out.strip().split(";")[0])
    end = time.time() + 600
    recs: dict = {}
    while time.time() < end:
        recs = {}
        for line in jobcomp.read_text().splitlines():
            rec = dict(re.findall(r"(\w+)=(\S*)", line))
            if rec.get("JobId") in ids:
                recs[rec["JobId"]] = rec
        if len(recs) == len(ids):
            break
        time.sleep(1.0)
    missing = [i for i in ids if i not in recs]
    if missing:
        raise RuntimeError(f"jobs {missing[:5]} did not finish within 600 s")
    df = jobs.copy()
    df["minutes"] = [max(1, math.ceil(r / 60.0)) for r in df["req_time"]]
    df["sbatch_wall"] = np.round(wall, 3)
    df["slurm_job"] = ids
    for col, key in (("slurm_submit", "SubmitTime"), ("slurm_start", "StartTime"),
                     ("slurm_end", "EndTime")):
        df[col] = [_slurm_time(recs[i][key]) - t0 for i in ids]
    df["slurm_state"] = [recs[i]["JobState"] for i in ids]
    return df


def launch_latency(reference: pd.DataFrame) -> float:
    """Seconds a job costs its cores beyond its sleep, measured on ``reference``: the mean of
    Slurm's EndTime - StartTime - sleep (launch and completion of the batch script) plus the
    mean gap between a waiting job's start and the last end before it (the main scheduler's
    reaction to a completion)."""
    held = reference["slurm_end"] - reference["slurm_start"] - reference["run_time"]
    ends = np.sort(reference["slurm_end"].to_numpy())
    gaps = []
    for sub, start in zip(reference["slurm_submit"], reference["slurm_start"]):
        k = np.searchsorted(ends, start, side="right")
        if start > sub and k:
            gaps.append(start - ends[k - 1])
    return float(max(held.mean(), 0.0) + (np.mean(gaps) if gaps else 0.0))


def slurm_options(reference: pd.DataFrame | None = None) -> dict:
    """The Slurm-like queue's options that model this Slurm (``scripts/slurm-up.sh``'s
    configuration: time limits in minutes, bf_interval=1, reservations for every tested job on
    one host); ``launch_latency`` measured on ``reference`` (else 0)."""
    latency = 0.0 if reference is None else launch_latency(reference)
    return dict(limit_unit=60.0, bf_interval=1.0, reserve="host", launch_latency=latency)


def hpclab_starts(jobs: pd.DataFrame, *, cores: int = CORES, submit=None, **slurm) -> np.ndarray:
    """Start times of ``jobs`` on hpclab's Slurm-like queue: ``cores`` one-core nodes in one
    segment (a job of ``p`` cores is a gang of ``p`` nodes), fixed, with ``slurm`` options."""
    from hpclab.platform.replay import replay

    j = jobs[["job_id", "kind", "submit", "pods", "slots", "run_time", "req_time",
              "priority"]].copy()
    if submit is not None:
        j["submit"] = np.asarray(submit, dtype=float)
    j = j.sort_values(["submit", "job_id"], kind="stable")
    res = replay(j, "separate", cpu_nodes=cores, cpu_segment=cores, data_nodes=1, gpu_nodes=1,
                 elastic=False, slurm=slurm or None)
    return res.jobs.set_index("job_id").loc[jobs["job_id"], "start"].to_numpy()


def compare(reference: pd.DataFrame, **slurm) -> dict:
    """hpclab's starts against the recorded Slurm starts: mean absolute difference in units
    of the mean run time, and mean waits (s)."""
    opts = slurm_options(reference) if not slurm else slurm
    start = hpclab_starts(reference, submit=reference["slurm_submit"], **opts)
    s_start = reference["slurm_start"].to_numpy()
    submit = reference["slurm_submit"].to_numpy()
    mean_run = float(reference["run_time"].mean())
    return {"mad_over_mean_run": float(np.mean(np.abs(start - s_start)) / mean_run),
            "mean_wait_hpclab": float(np.mean(start - submit)),
            "mean_wait_slurm": float(np.mean(s_start - submit)),
            "mean_run": mean_run, "start": start, "slurm_start": s_start}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="run the trace on the Slurm of "
                    "SLURM_CONF and write data/reference/slurm_replay.csv")
    ap.add_argument("--jobcomp", default="/tmp/hpclab-slurm/jobcomp.txt")
    args = ap.parse_args(argv)
    jobs = trace()
    if args.record:
        from hpclab.platform.traces import write_swf

        write_swf(jobs, REF_SWF, header={"Note": "scripts/slurm_replay.py trace(); run and "
                                                 "requested times in seconds"})
        df = record(jobs, Path(args.jobcomp))
        v = subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.strip()
        header = [f"# Starts of {len(df)} jobs measured on {v}, one host with {CORES} emulated "
                  f"cores (scripts/slurm-up.sh: sched/backfill bf_interval=1 bf_resolution=1, "
                  f"select/cons_tres CR_CPU), {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
                  "# Measured by scripts/slurm_replay.py --record: sbatch -n pods -t minutes "
                  "--wrap 'sleep run_time' at submit (wall s); Slurm's SubmitTime, StartTime, "
                  "EndTime (jobcomp/filetxt, whole seconds) in s from the whole second before "
                  "the first submission."]
        REF_CSV.write_text("\n".join(header) + "\n" + df.to_csv(index=False))
        print(f"wrote {REF_CSV} and {REF_SWF}")
    ref = pd.read_csv(REF_CSV, comment="#")
    out = compare(ref)
    for name, opts in (("EASY (hpclab default)", {}), ("Slurm-modelled", slurm_options(ref))):
        r = compare(ref, **opts) if opts else _easy(ref)
        print(f"{name:>22}: mean |start - Slurm start| = {r['mad_over_mean_run']:.3f} mean run "
              f"times; mean wait {r['mean_wait_hpclab']:.1f} s (Slurm {r['mean_wait_slurm']:.1f} s)")
    del out
    return 0


def _easy(ref):
    start = hpclab_starts(ref, submit=ref["slurm_submit"])
    s = ref["slurm_start"].to_numpy()
    sub = ref["slurm_submit"].to_numpy()
    return {"mad_over_mean_run": float(np.mean(np.abs(start - s)) / ref["run_time"].mean()),
            "mean_wait_hpclab": float(np.mean(start - sub)), "mean_wait_slurm": float(np.mean(s - sub))}


if __name__ == "__main__":
    sys.exit(main())
