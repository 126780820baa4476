"""hpclab on a real Slurm: the single-host Slurm of ``scripts/slurm-up.sh`` (the ``slurm``
fixture in conftest.py starts it when Slurm is installed and none answers, else these tests
skip), dask-jobqueue pools billed against Slurm's own job records, and hpclab's Slurm-like queue
against Slurm's starts."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

pytestmark = pytest.mark.timeout(240)


def _ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def _wait_done(slurm, ids, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        recs = slurm.job_records()
        if all(i in recs for i in ids):
            return recs
        time.sleep(0.5)
    raise AssertionError(f"jobs {ids} not finished after {timeout} s: {slurm.run('squeue')}")


def test_single_host_answers_and_backfills_a_small_job_beside_a_large_one(slurm, tmp_path):
    assert slurm.cpus >= 2
    assert "idle" in slurm.run("sinfo", "-h", "-o", "%T") or slurm.run("squeue", "-h") != ""
    n = slurm.cpus
    big, wide, small = n * 3 // 4, n, n - n * 3 // 4

    def sbatch(cpus, minutes, seconds):
        return slurm.run("sbatch", "--parsable", "-n", str(cpus), "-t", str(minutes),
                         "-o", "/dev/null", "-D", str(tmp_path), "--wrap", f"sleep {seconds}").strip()

    a = sbatch(big, 2, 8)     # runs at once; by its limit it holds 3/4 of the cores for 2 min
    b = sbatch(wide, 1, 1)    # needs every core: reserved for when A's limit ends
    c = sbatch(small, 1, 2)   # fits beside A and ends (by its 1 min limit) before B's reservation
    recs = _wait_done(slurm, [a, b, c])
    start = {j: _ts(recs[j]["StartTime"]) for j in (a, b, c)}
    end = {j: _ts(recs[j]["EndTime"]) for j in (a, b, c)}
    assert all(recs[j]["JobState"] == "COMPLETED" for j in (a, b, c))
    assert start[c] < end[a], "the small job should run beside the large one (backfill)"
    assert start[c] - start[a] <= 5, "backfill (bf_interval=1) should start it within seconds"
    assert start[b] >= end[a], "the wide job waits for the cores"
