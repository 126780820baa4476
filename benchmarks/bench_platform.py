"""Benchmark the platform replay (issue 8): 100,000 jobs through the Slurm-like and
Kubernetes-like queues.

Workload: :func:`hpclab.platform.mixed_workload` with 100,000 jobs (70 % Lublin-Feitelson HPC
jobs, 30 % AI jobs: training gangs, inference and data pods) offering a load of 0.7 to 128 CPU
nodes and 16 GPU nodes. Replayed twice: on two separate fixed clusters, and on the unified
elastic platform (EASY backfill, topology-aware placement, nodes booting and retiring).
Reported: wall and CPU time and jobs per second of each replay (target: 20,000 jobs/s, "tens of
thousands"; the ratio uses the CPU time of this process, since the wall time on a shared machine
also counts other processes), plus the time to read the same HPC jobs back from an SWF file.

Issue 12: the elastic pools' default scaler is the registered ``shortfall`` policy; its speed
is compared with the rule as it was built into the pools (``builtin_rule.py``) on the same jobs,
interleaved (target: ratio >= 1.0), and the results must be identical.

Linearity (issue 12): a trace that overloads the cluster (offered load 1.5, so queues grow
without bound) replayed on the unified platform at 100,000 and 1,000,000 jobs; the CPU time of
the larger over the smaller (target <= 12 for 10x the jobs). Before the queues became deques it
was 23x here (the issue measured 34x): every start removed its job from the front of a Python
list as long as the queue.
``--linear-only`` runs just this check.

The code of the time the issue was filed (commit ``ISSUE_COMMIT``, the last of round one, with
the rule built into its own engine) replays the same 100,000 jobs in a child process, when the
checkout has that commit (``git archive``): its CPU time against the default's, interleaved. It
says what the whole redesign (one clock, zones, spot, placement below the queues, the shared
policy) costs a user of the default replay, beyond the rule alone.

The machine's 2 cores are shared with whatever else runs: every figure is the best of two
repeats, and the load average is printed so that the noise can be judged.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

N_JOBS = 100_000
TARGET_JOBS_PER_S = 20_000
LINEAR_JOBS = (100_000, 1_000_000)
LINEAR_LOAD = 1.5  # offered load: the queues grow for the whole replay
TARGET_LINEAR = 12.0  # CPU time at 10x the jobs, at most this many times


def best_of(fn, repeats=2):
    """Best wall time and best CPU time (this process) of a few repeats, and the result."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


ISSUE_COMMIT = "8c82817"  # the last commit before issue 12 (round one's platform engine)
_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from hpclab import platform as P
jobs = P.mixed_workload(%d, ai_share=0.3, cpu_nodes=128, gpu_nodes=16, load=0.7, seed=1)
c = time.process_time()
r = P.replay(jobs, policy="unified", cpu_nodes=128, gpu_nodes=16)
print(time.process_time() - c, repr(r.cost))
"""


def issue_time(tmp):
    """Extract the hpclab package and data of ``ISSUE_COMMIT`` into ``tmp``; None if this is not a git
    checkout holding that commit."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        arch = subprocess.run(["git", "-C", str(root), "archive", ISSUE_COMMIT, "hpclab", "data"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(arch)) as tar:  # this checkout's own history
        try:
            tar.extractall(tmp, filter="data")
        except TypeError:  # Python < 3.11.4: no extraction filters
            tar.extractall(tmp)  # noqa: S202
    return tmp


def replay_issue_time(tmp):
    """CPU seconds and cost of the 100,000-job unified replay on the issue-time code (a child)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _CHILD % N_JOBS, tmp], capture_output=True, text=True,
                         check=True, cwd=tmp).stdout.split()
    return float(out[0]), float(out[1])


def linearity():
    """CPU time of the overloaded unified replay at the two sizes, and their ratio."""
    from hpclab import platform as P

    cpu = {}
    for n in LINEAR_JOBS:
        jobs = P.mixed_workload(n, ai_share=0.3, cpu_nodes=128, gpu_nodes=16, load=LINEAR_LOAD, seed=1)
        _, c, res = best_of(lambda: P.replay(jobs, policy="unified", cpu_nodes=128, gpu_nodes=16), 1)
        cpu[n] = c
        waiting = float(res.jobs["wait"].mean())
        print(f"overloaded unified replay, {n:>9,} jobs (load {LINEAR_LOAD}): CPU {c:7.2f} s = "
              f"{n / c:8,.0f} jobs/s  (mean wait {waiting:,.0f} s)", flush=True)
    a, b = LINEAR_JOBS
    ratio = cpu[b] / cpu[a]
    print(f"linearity: time({b:,}) / time({a:,}) = {ratio:.1f} for {b // a}x the jobs "
          f"(target <= {TARGET_LINEAR:g}; ratio to target {ratio / TARGET_LINEAR:.2f})")
    return ratio


def main():
    import sys

    from hpclab import platform as P

    if "--linear-only" in sys.argv[1:]:
        linearity()
        return

    print(f"platform replay of {N_JOBS:,} jobs (load average before: {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores)")
    t_gen, _, jobs = best_of(lambda: P.mixed_workload(N_JOBS, ai_share=0.3, cpu_nodes=128, gpu_nodes=16,
                                                   load=0.7, seed=1), 1)
    print(f"generate (Lublin-Feitelson + GPU jobs):  {t_gen:7.2f} s")
    worst = worst_wall = 0.0
    for policy in ("separate", "unified"):
        wall, cpu, res = best_of(lambda: P.replay(jobs, policy=policy, cpu_nodes=128, gpu_nodes=16))
        done = int((res.jobs["finished"] == 1).sum())
        worst = max(worst, TARGET_JOBS_PER_S * cpu / N_JOBS)
        worst_wall = max(worst_wall, TARGET_JOBS_PER_S * wall / N_JOBS)
        print(f"replay {policy:9s}: wall {wall:6.2f} s = {N_JOBS / wall:8,.0f} jobs/s; CPU {cpu:6.2f} s = "
              f"{N_JOBS / cpu:8,.0f} jobs/s  ({done:,} finished, {len(res.instances):,} nodes launched, "
              f"cost {res.cost:,.0f} USD)")
    # issue 12: the default scaler is the registered "shortfall" policy, asked at its triggers;
    # the baseline is the rule as it was built into the pools (builtin_rule.py), on the same
    # 100,000 jobs in the same run, interleaved (best of two each)
    from builtin_rule import builtin_rule

    def with_builtin():
        with builtin_rule():
            return P.replay(jobs, policy="unified", cpu_nodes=128, gpu_nodes=16)

    cpu_b = cpu_p = float("inf")
    for _ in range(2):
        _, c, res_b = best_of(with_builtin, 1)
        cpu_b = min(cpu_b, c)
        _, c, res_p = best_of(lambda: P.replay(jobs, policy="unified", cpu_nodes=128, gpu_nodes=16), 1)
        cpu_p = min(cpu_p, c)
    same = res_b.cost == res_p.cost and res_b.jobs["end"].equals(res_p.jobs["end"])
    ratio_policy = cpu_b / cpu_p
    with tempfile.TemporaryDirectory() as tmp:
        old = issue_time(tmp)
        if old is None:
            print(f"issue-time code ({ISSUE_COMMIT}): not in this checkout (no git history), not measured")
        else:
            cpu_o = cpu_n = float("inf")
            for _ in range(2):  # interleaved with the default, best of two each
                c, cost_o = replay_issue_time(old)
                cpu_o = min(cpu_o, c)
                _, c, _ = best_of(lambda: P.replay(jobs, policy="unified", cpu_nodes=128, gpu_nodes=16), 1)
                cpu_n = min(cpu_n, c)
            print(f"unified, issue-time code {ISSUE_COMMIT} (its own engine and built-in rule): CPU {cpu_o:6.2f} s = "
                  f"{N_JOBS / cpu_o:8,.0f} jobs/s (cost {'identical' if cost_o == res_p.cost else f'{cost_o:,.0f} USD, DIFFERENT'}); "
                  f"the default now / then: {cpu_o / cpu_n:.2f} of its speed")
    print(f"unified, built-in rule (baseline):   CPU {cpu_b:6.2f} s = {N_JOBS / cpu_b:8,.0f} jobs/s")
    print(f"unified, shortfall policy (default): CPU {cpu_p:6.2f} s = {N_JOBS / cpu_p:8,.0f} jobs/s  "
          f"(results {'identical' if same else 'DIFFERENT'}: cost {res_p.cost:,.0f} USD)")
    # a policy without triggers is asked every tick (60 s of virtual time): for reference
    n_small = N_JOBS // 10
    small = jobs.iloc[:n_small]
    wall, cpu, res = best_of(lambda: P.replay(small, policy="unified", cpu_nodes=128, gpu_nodes=16,
                                              scaler="target-duration", tick=60.0), 1)
    print(f"unified, target-duration every 60 s ({n_small:,} jobs): CPU {cpu:6.2f} s = {n_small / cpu:8,.0f} "
          f"jobs/s  (cost {res.cost:,.0f} USD, mean wait {res.jobs['wait'].mean():,.0f} s; no target)")
    with tempfile.TemporaryDirectory() as tmp:
        path = P.write_swf(jobs, Path(tmp) / "bench.swf")
        t_read, _, back = best_of(lambda: P.read_swf(path))
        print(f"read SWF ({len(back):,} HPC jobs):        {t_read:7.2f} s  {len(back) / t_read:10,.0f} lines/s")
    print(f"target: {TARGET_JOBS_PER_S:,} jobs/s per replay (the slower of the two)")
    print(f"ratio to target on wall time: {worst_wall:.2f} (inflated when other work shares the cores)")
    print(f"ratio to target: {worst:.2f} (target <= 1; on the CPU time of this process)")
    print(f"shortfall policy / built-in rule speed: {ratio_policy:.2f} (target >= 1.0, issue 12)")
    linearity()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
