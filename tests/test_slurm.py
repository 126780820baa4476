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


def _slow(x):
    time.sleep(0.5)
    return x


def test_attached_pool_on_slurmcluster_one_job_per_instance_and_billed_as_slurm_records(
        slurm, tmp_path, monkeypatch):
    """A policy-driven burst on dask-jobqueue's SLURMCluster grows from 0 to 4 workers and back
    to 0, twice: each instance is exactly one sbatch job, nothing is resubmitted after the
    retirements (not even after distributed's lost-worker-timeout, which is when SpecCluster
    re-creates a spec whose worker left), no worker joins unrequested, and hpclab's billed seconds
    per instance equal Slurm's (jobcomp/filetxt StartTime..EndTime) within a second."""
    if slurm.jobcomp is None:
        pytest.skip("this Slurm writes no job-completion file (JobCompType=jobcomp/filetxt)")
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    import dask
    from distributed import Client

    from hpclab.elastic import AttachedPool
    from hpclab.elastic.billing import charge, unit_price
    from hpclab.elastic.policies import TargetDuration

    if slurm.conf:
        monkeypatch.setenv("SLURM_CONF", slurm.conf)
    before = set(slurm.job_records())
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}), \
            dask_jobqueue.SLURMCluster(
                cores=1, processes=1, memory="1GB", walltime="00:10:00",
                scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
                worker_extra_args=["--host", "127.0.0.1"], log_directory=str(tmp_path)) as cluster, \
            AttachedPool(cluster, policy=TargetDuration(target_duration=3), interval=0.5,
                         time_scale=1.0, max_instances=4) as pool, \
            Client(pool) as client:
        epoch0 = time.time() - pool.log.wall()  # pool second 0 on the wall clock
        for wave in range(2):
            xs = range(20 * wave, 20 * wave + 20)
            assert client.gather(client.map(_slow, xs)) == list(xs)
            assert pool.wait_for(lambda p: not p.alive(), 90)
        time.sleep(4)  # > lost-worker-timeout: a re-created spec would have been submitted now
        assert not cluster.worker_spec and not client.scheduler_info()["workers"]
        records = dict(pool.records)
        job_ids = dict(pool.job_ids)
        total = float(pool.bill()["total_cost"])
        log = pool.log.to_frame()
    slurm_jobs = {j: r for j, r in _wait_done(slurm, list(job_ids.values())).items()
                  if j not in before and r.get("Name") == "dask-worker"}
    assert 2 <= len(records) <= 8
    assert all(i.startswith("i-") for i in records), "a worker joined that the pool did not ask for"
    assert sorted(job_ids) == sorted(records), "every instance has its job"
    assert sorted(slurm_jobs) == sorted(job_ids.values()), \
        f"{len(slurm_jobs)} sbatch jobs for {len(records)} instances"
    assert set(log.state) >= {"requested", "booting", "running", "draining", "terminated"}
    inst = next(iter(records.values())).itype
    from hpclab import catalog

    rec_t = catalog.default().instance(inst)
    price = unit_price(rec_t, "on-demand")
    for i, rec in records.items():
        r = slurm_jobs[job_ids[i]]
        s_secs = _ts(r["EndTime"]) - _ts(r["StartTime"])  # whole seconds, as Slurm keeps them
        h_secs = rec.terminated_at - rec.billed_from
        # Slurm truncates both times to the second (its duration is within 1 s of the true
        # one); hpclab bills from the job's submission (Slurm starts it at its next scheduling
        # pass, bf_interval = 1 s later at most) to the return of its cancellation
        assert abs(h_secs - s_secs) <= 2.0, (i, h_secs, s_secs)
        assert _ts(r["StartTime"]) - 1.5 <= epoch0 + rec.billed_from <= _ts(r["StartTime"]) + 1.5
        assert _ts(r["EndTime"]) - 1.5 <= epoch0 + rec.terminated_at <= _ts(r["EndTime"]) + 1.5
        assert abs(charge(h_secs, price, rec_t.min_charge)
                   - charge(s_secs, price, rec_t.min_charge)) <= price * 1.0 + 1e-12
    print(f"{len(records)} instances, {len(slurm_jobs)} Slurm jobs; billed s (hpclab, Slurm): "
          + ", ".join(f"{records[i].terminated_at - records[i].billed_from:.2f}/"
                      f"{_ts(slurm_jobs[j]['EndTime']) - _ts(slurm_jobs[j]['StartTime']):.0f}"
                      for i, j in sorted(job_ids.items())))
    slurm_total = sum(float(charge(_ts(r["EndTime"]) - _ts(r["StartTime"]), price, rec_t.min_charge))
                      for r in slurm_jobs.values())
    assert abs(total - slurm_total) <= price * len(records) + 1e-12


# -- hpclab's Slurm-like queue against Slurm --------------------------------------------------
def _replay_module():
    """scripts/slurm_replay.py (the trace, the recording on Slurm, the comparison)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "_hpclab_slurm_replay"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "scripts" / "slurm_replay.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _check_against(ref, ablations=False):
    """hpclab's queue with the Slurm options (launch latency fitted on ``ref``, its one fitted
    number) starts jobs when Slurm did; EASY does not; with ``ablations``, dropping any one
    option fails the bound whatever latency is fitted to it."""
    sr = _replay_module()
    opts = sr.slurm_options(ref)
    modelled = sr.replay_against_slurm(ref, **opts)
    easy = sr.replay_against_slurm(ref, limit_unit=0.0)  # hpclab's defaults: EASY at every event
    print(f"{len(ref)} jobs: mean |start - Slurm| = {modelled['mad_over_mean_run']:.3f} mean run "
          f"times (EASY: {easy['mad_over_mean_run']:.3f}); mean wait {modelled['mean_wait_hpclab']:.1f} s"
          f" (EASY {easy['mean_wait_hpclab']:.1f} s, Slurm {modelled['mean_wait_slurm']:.1f} s); "
          f"latency fitted {opts['launch_latency']:.2f} s, read off the records "
          f"{sr.measured_latency(ref):.2f} s")
    assert modelled["mad_over_mean_run"] <= 0.25
    assert abs(modelled["mean_wait_hpclab"] - modelled["mean_wait_slurm"]) \
        <= 0.15 * modelled["mean_wait_slurm"]
    assert easy["mad_over_mean_run"] > 2 * modelled["mad_over_mean_run"]
    if ablations:
        base = sr.slurm_options()
        for change in (dict(limit_unit=0.0), dict(bf_interval=None), dict(reserve="head")):
            o = dict(base, **change)
            o["launch_latency"] = sr.fit_latency(ref, **o)
            assert sr.replay_against_slurm(ref, **o)["mad_over_mean_run"] > 0.25, change


def test_slurm_like_queue_starts_jobs_when_the_recorded_slurm_did():
    """The 60-job trace as Slurm 22.05 ran it (data/reference/slurm_replay.csv, recorded by
    scripts/slurm_replay.py --record) against hpclab's queue with the options that model it."""
    import pandas as pd

    sr = _replay_module()
    ref = pd.read_csv(sr.REF_CSV, comment="#")
    assert len(ref) >= 50 and ref["pods"].max() <= sr.CORES
    assert (ref["slurm_state"] == "COMPLETED").all()
    assert (ref["minutes"] == [max(1, -(-int(r) // 60)) for r in ref["req_time"]]).all()
    _check_against(ref, ablations=True)


def test_slurm_like_queue_against_a_live_slurm(slurm, tmp_path, monkeypatch):
    """The first 50 jobs of the trace replayed now on the live Slurm (about 100 s)."""
    if slurm.jobcomp is None:
        pytest.skip("this Slurm writes no job-completion file (JobCompType=jobcomp/filetxt)")
    sr = _replay_module()
    if slurm.cpus != sr.CORES:
        pytest.skip(f"the comparison needs one host of {sr.CORES} cores; this Slurm has "
                    f"{slurm.cpus}")
    if slurm.conf:
        monkeypatch.setenv("SLURM_CONF", slurm.conf)
    live = sr.record(sr.trace().head(50), slurm.jobcomp, workdir=str(tmp_path))
    assert (live["slurm_state"] == "COMPLETED").all()
    _check_against(live)


def _queue(jobs, nodes, **opts):
    from hpclab.platform.jobs import jobs_frame
    from hpclab.platform.replay import replay

    df = jobs_frame(**jobs)
    res = replay(df, "separate", cpu_nodes=nodes, cpu_segment=nodes, data_nodes=1, gpu_nodes=1,
                 elastic=False, slurm=opts)
    return res.jobs["start"].tolist()


def test_slurm_options_by_hand():
    # 4 one-core nodes. A (2 nodes, limit 60) runs; B needs 3: reserved at 60, when 1 node is
    # spare ("extra"); C (1 node, limit 120) would end after 60.
    jobs = dict(submit=[0, 1, 2], pods=[2, 3, 1], run_time=[50, 10, 10], req_time=[60, 60, 120])
    # EASY: C runs at once on the extra node
    assert _queue(jobs, 4) == [0, 50, 2]
    # Slurm on one host: B's reservation blocks the whole host from 60 and C would run past
    # it, so C waits; at 50 A ends and the main scheduler starts B, then C (the new head) beside
    assert _queue(jobs, 4, reserve="host", bf_interval=1.0) == [0, 50, 50]
    # limits in whole minutes: C's 30 s limit is a minute, and a minute from t=2 ends after
    # B's reservation at 60 (EASY, no extra node as B needs all 4)
    jobs = dict(submit=[0, 1, 2], pods=[2, 4, 1], run_time=[50, 10, 10], req_time=[60, 60, 30])
    assert _queue(jobs, 4) == [0, 50, 2]
    assert _queue(jobs, 4, limit_unit=60.0) == [0, 50, 60]
    # a launch latency holds the nodes longer: B starts 0.5 s after A's sleep ends
    assert _queue(jobs, 4, launch_latency=0.5)[1] == 50.5
    # backfill on its interval: C (submitted at 2.3) starts at the next pass, t=3
    jobs = dict(submit=[0, 1, 2.3], pods=[2, 4, 1], run_time=[50, 10, 10], req_time=[60, 60, 30])
    assert _queue(jobs, 4, bf_interval=1.0)[2] == 3.0


def test_a_scenario_runs_on_slurm_from_a_cluster_spec_file(slurm, tmp_path, monkeypatch, capsys):
    """``hpclab run --cluster FILE`` with a SLURMCluster in dask-jobqueue's configuration format:
    the burst's pool grows from zero as Slurm jobs (one per instance, at most two) and shrinks
    back; every instance hpclab bills is one dask-worker job in Slurm's records."""
    import json

    pytest.importorskip("dask_jobqueue")
    from hpclab.cli import main
    from hpclab.scenario import Scenario

    if slurm.jobcomp is None:
        pytest.skip("this Slurm writes no job-completion file (JobCompType=jobcomp/filetxt)")
    if slurm.conf:
        monkeypatch.setenv("SLURM_CONF", slurm.conf)
    before = set(slurm.job_records())
    spec = tmp_path / "slurm.yaml"
    spec.write_text("jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GB\n    processes: 1\n"
                    "    walltime: '00:10:00'\n    scheduler-options: {host: 127.0.0.1}\n"
                    "    worker-extra-args: [--host, 127.0.0.1]\n"
                    f"    log-directory: {tmp_path}\n")
    s = Scenario.example("burst").replace(workload={"tasks": 16}, pool={"max_per_type": {"ecs.c8i.8xlarge": 2}},
                                          cluster={"timeout": 150.0})
    path = s.save(tmp_path / "burst.yaml")
    capsys.readouterr()
    assert main(["run", str(path), "--clock", "real", "--json", "--cluster", str(spec)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks_done"] == 16 and out["finished"] == 1
    assert 1 <= out["instances"] <= 2 * 4 and out["cost_usd"] > 0  # at most 2 at once
    end = time.monotonic() + 60
    while time.monotonic() < end:
        jobs = {j: r for j, r in slurm.job_records().items()
                if j not in before and r.get("Name") == "dask-worker"}
        if len(jobs) >= out["instances"]:
            break
        time.sleep(0.5)
    assert len(jobs) == out["instances"], (jobs, out)
    assert not slurm.run("squeue", "-h", "-n", "dask-worker").strip()  # nothing left behind
    print(f"{out['tasks_done']} tasks on {out['instances']} instances = {len(jobs)} Slurm jobs "
          f"({', '.join(sorted(r['JobState'] for r in jobs.values()))}); {out['cost_usd']:.4f} USD, "
          f"{out['wall_s']:.1f} s wall")
