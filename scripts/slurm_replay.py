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


def measured_latency(reference: pd.DataFrame) -> float:
    """Seconds a job costs its cores beyond its sleep, read off the records alone: for each job
    that waited and was started by a completion, its start minus the start and sleep of the job
    whose end freed it (the last to end before it); the mean over those jobs. Launch and end of
    the batch script and the main scheduler's reaction, all in one; both starts are whole
    seconds, so the truncation cancels on average."""
    end = reference["slurm_end"].to_numpy()
    start = reference["slurm_start"].to_numpy()
    run = reference["run_time"].to_numpy()
    out = []
    for sub, st in zip(reference["slurm_submit"], start):
        before = np.flatnonzero(end <= st)
        if st > sub and before.size:
            p = before[np.argmax(end[before])]
            out.append(st - start[p] - run[p])
    return float(max(np.mean(out), 0.0)) if out else 0.0


LATENCY_GRID = np.round(np.arange(0.0, 2.0001, 0.1), 1)  # s, the fit's candidates


def fit_latency(reference: pd.DataFrame, **options) -> float:
    """The launch latency (the one fitted number of the model) that minimises the mean
    absolute start difference on ``reference``, over :data:`LATENCY_GRID`, with ``options``."""
    best = min(LATENCY_GRID, key=lambda lat: (
        replay_against_slurm(reference, **dict(options, launch_latency=lat))["mad_over_mean_run"], lat))
    return float(best)


def slurm_options(reference: pd.DataFrame | None = None) -> dict:
    """The Slurm-like queue's options that model this Slurm (``scripts/slurm-up.sh``'s
    configuration: time limits in minutes, bf_interval=1, reservations for every tested job on
    one host); ``launch_latency`` fitted on ``reference`` (else 0)."""
    opts = dict(limit_unit=60.0, bf_interval=1.0, reserve="host", launch_latency=0.0)
    if reference is not None:
        opts["launch_latency"] = fit_latency(reference, **opts)
    return opts


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


def replay_against_slurm(reference: pd.DataFrame, **slurm) -> dict:
    """Replay the trace on hpclab's queue (``slurm`` options) and set its starts against the
    recorded Slurm starts: mean absolute difference in units of the mean run time, and mean
    waits (s)."""
    opts = slurm_options(reference) if not slurm else slurm
    start = hpclab_starts(reference, submit=reference["slurm_submit"], **opts)
    s_start = reference["slurm_start"].to_numpy()
    submit = reference["slurm_submit"].to_numpy()
    mean_run = float(reference["run_time"].mean())
    return {"mad_over_mean_run": float(np.mean(np.abs(start - s_start)) / mean_run),
            "mean_wait_hpclab": float(np.mean(start - submit)),
            "mean_wait_slurm": float(np.mean(s_start - submit)),
            "mean_run": mean_run, "start": start, "slurm_start": s_start}


def plot_svg(reference: pd.DataFrame, path) -> Path:
    """Each job's start on hpclab's queue (y) against its start on Slurm (x), for the modelled
    options and for EASY, as a small self-contained SVG (docs/img/slurm_starts.svg)."""
    modelled = replay_against_slurm(reference, **slurm_options(reference))
    easy = replay_against_slurm(reference, limit_unit=0.0)
    x = reference["slurm_start"].to_numpy()
    top = float(max(x.max(), modelled["start"].max(), easy["start"].max())) * 1.05
    w, h, m = 520, 420, 50

    def px(v):
        return m + v / top * (w - 2 * m)

    def py(v):
        return h - m - v / top * (h - 2 * m)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(top)}" y2="{py(top)}" stroke="#999" '
           f'stroke-dasharray="4 3"/>']
    for k in range(0, int(top) + 1, 20):
        out.append(f'<text x="{px(k)}" y="{h - m + 16}" text-anchor="middle">{k}</text>')
        out.append(f'<text x="{m - 6}" y="{py(k) + 4}" text-anchor="end">{k}</text>')
    out.append(f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>')
    out.append(f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>')
    for ys, colour, label, r in ((easy["start"], "#d95f02", "EASY at every event", 3),
                                 (modelled["start"], "#1b9e77", "Slurm-modelled", 3)):
        for xv, yv in zip(x, ys):
            out.append(f'<circle cx="{px(xv):.1f}" cy="{py(yv):.1f}" r="{r}" fill="{colour}" '
                       f'fill-opacity="0.7"/>')
    out += [f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">start on Slurm 22.05 [s]</text>',
            f'<text x="14" y="{h / 2}" text-anchor="middle" transform="rotate(-90 14 {h / 2})">'
            f'start on hpclab\'s queue [s]</text>',
            f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">Start of each of '
            f'{len(x)} jobs on 64 cores: hpclab vs Slurm (diagonal: equal)</text>',
            f'<circle cx="{m + 20}" cy="{m + 10}" r="4" fill="#1b9e77"/>',
            f'<text x="{m + 30}" y="{m + 14}">Slurm-modelled: mean |diff| '
            f'{modelled["mad_over_mean_run"]:.2f} mean run times</text>',
            f'<circle cx="{m + 20}" cy="{m + 28}" r="4" fill="#d95f02"/>',
            f'<text x="{m + 30}" y="{m + 32}">EASY at every event: mean |diff| '
            f'{easy["mad_over_mean_run"]:.2f} mean run times</text>', "</svg>"]
    path = Path(path)
    path.write_text("\n".join(out) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="run the trace on the Slurm of "
                    "SLURM_CONF and write data/reference/slurm_replay.csv")
    ap.add_argument("--jobcomp", default="/tmp/hpclab-slurm/jobcomp.txt")
    ap.add_argument("--plot", metavar="SVG", help="also draw the starts into this SVG file")
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
    full = slurm_options(ref)
    print(f"{len(ref)} jobs, mean run {ref['run_time'].mean():.2f} s, Slurm's mean wait "
          f"{(ref['slurm_start'] - ref['slurm_submit']).mean():.1f} s, makespan "
          f"{ref['slurm_end'].max():.0f} s; launch latency fitted {full['launch_latency']:.2f} s "
          f"(read off the records: {measured_latency(ref):.2f} s)")
    for name, opts in (("EASY at every event", dict(limit_unit=0.0)),
                       ("Slurm-modelled", full),
                       ("  without whole minutes", dict(full, limit_unit=0.0)),
                       ("  backfill at every event", dict(full, bf_interval=None)),
                       ("  EASY reservations", dict(full, reserve="head")),
                       ("  no launch latency", dict(full, launch_latency=0.0)),
                       ("  latency read off records", dict(full, launch_latency=measured_latency(ref)))):
        r = replay_against_slurm(ref, **opts)
        print(f"{name:>26}: mean |start - Slurm start| = {r['mad_over_mean_run']:.3f} mean run "
              f"times; mean wait {r['mean_wait_hpclab']:.1f} s")
    if args.plot:
        print(f"wrote {plot_svg(ref, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
