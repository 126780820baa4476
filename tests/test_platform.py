"""hpclab.platform: trace readers, generators, the Slurm-like and Kubernetes-like queues."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpclab import HpclabError
from hpclab import platform as P

DATA = Path(__file__).parent / "data"


# -- traces -------------------------------------------------------------------------------------

def test_swf_reader_on_archive_format_sample():
    df, header = P.read_swf(DATA / "sample.swf", return_header=True)
    # 10 job lines, job 7 has run time -1 and is left out
    assert df.attrs["skipped"] == 1
    assert list(df["job_id"]) == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    row = df.set_index("job_id")
    assert row.loc[1, "pods"] == 16 and row.loc[1, "run_time"] == 3600 and row.loc[1, "req_time"] == 7200
    assert row.loc[3, "req_time"] == 60  # requested time -1: the run time stands in
    assert row.loc[8, "pods"] == 8  # requested processors -1: allocated processors stand in
    assert (df["kind"] == "hpc").all() and (df["slots"] == 0).all()
    assert header["MaxProcs"] == "64" and header["Version"] == "2.2"
    # processors per node: ceil(p / 4)
    four = P.read_swf(DATA / "sample.swf", procs_per_node=4).set_index("job_id")
    assert four.loc[1, "pods"] == 4 and four.loc[3, "pods"] == 1 and four.loc[6, "pods"] == 16


def test_swf_malformed_lines_name_file_line_and_field():
    with pytest.raises(HpclabError, match=r"^bad_field\.swf:4: field 4 \(run time\) must be a number, got 'x'$"):
        P.read_swf(DATA / "bad_field.swf")
    with pytest.raises(HpclabError, match=r"^bad_count\.swf:4: expected 18 fields \(SWF\), got 15$"):
        P.read_swf(DATA / "bad_count.swf")


def test_swf_round_trip(tmp_path):
    jobs = P.lublin_feitelson(300, max_nodes=64, seed=5)
    path = P.write_swf(jobs, tmp_path / "lf.swf")
    back = P.read_swf(path)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), jobs.reset_index(drop=True),
                                  check_dtype=False)


def test_gpu_csv_round_trip_and_errors(tmp_path):
    jobs = P.gpu_jobs(200, seed=2)
    path = P.write_gpu_csv(jobs, tmp_path / "gpu.csv")
    back = P.read_gpu_csv(path)
    np.testing.assert_allclose(back["run_time"], jobs["run_time"])
    assert list(back["kind"]) == list(jobs["kind"])
    bad = tmp_path / "bad.csv"
    bad.write_text("job_id,submit,kind,pods,slots,run_time\n1,0,train,2,8,100\n2,5,train,two,8,100\n")
    with pytest.raises(HpclabError, match=r"^bad\.csv:3: column 'pods' must be a whole number in \[1, 10,000,000\], got 'two'$"):
        P.read_gpu_csv(bad)
    bad.write_text("job_id,submit,kind,pods,slots,run_time\n1,0,training,2,8,100\n")
    with pytest.raises(HpclabError, match=r"^bad\.csv:2: column 'kind' must be one of"):
        P.read_gpu_csv(bad)


def test_job_table_errors_are_one_line():
    with pytest.raises(HpclabError, match="kind must be one of hpc, train, infer, data"):
        P.jobs_frame(submit=[0], pods=[1], run_time=[10], kind="mpi")
    with pytest.raises(HpclabError, match="'pods' must be >= 1"):
        P.jobs_frame(submit=[0], pods=[0], run_time=[10])
    with pytest.raises(HpclabError, match="policy must be one of unified, separate"):
        P.replay(P.jobs_frame(submit=[0], pods=[1], run_time=[10]), policy="both")


# -- generators ---------------------------------------------------------------------------------

def test_lublin_feitelson_is_seeded_and_follows_the_model():
    a = P.lublin_feitelson(2000, seed=7)
    b = P.lublin_feitelson(2000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(P.lublin_feitelson(2000, seed=8))
    assert a["pods"].max() <= 128 and a["pods"].min() >= 1
    assert (a["req_time"] >= a["run_time"]).all()
    assert np.all(np.diff(a["submit"]) >= 0)
    # batch jobs only: serial share and the hyper-gamma mean of ln(run time) of serial jobs,
    # E = p a1 b1 + (1 - p) a2 b2 with p = pa + pb (Lublin & Feitelson 2003, batch parameters)
    batch = P.lublin_feitelson(20000, seed=1, interactive=False)
    serial = batch[batch["pods"] == 1]
    assert abs(len(serial) / len(batch) - 0.2927) < 0.015
    p = -0.003 + 0.6986
    expected = p * 6.57 * 0.823 + (1 - p) * 639.1 * 0.0156
    assert abs(np.log(np.maximum(serial["run_time"], 1)).mean() - expected) < 0.1
    parallel = batch[batch["pods"] > 1]["pods"].to_numpy()
    pow2 = (parallel & (parallel - 1)) == 0
    assert pow2.mean() > 0.6668 / (1 - 0.2927) - 0.05  # power-of-two jobs dominate parallel ones


def test_mixed_workload_kinds_and_load():
    jobs = P.mixed_workload(3000, ai_share=0.3, cpu_nodes=64, gpu_nodes=8, load=0.6, seed=3)
    counts = jobs["kind"].value_counts()
    assert counts["hpc"] == 2100 and counts[["train", "infer", "data"]].sum() == 900
    hpc = jobs[jobs["kind"] == "hpc"]
    assert P.offered_load(hpc, nodes=64) == pytest.approx(0.6, rel=1e-2)
    train = jobs[jobs["kind"] == "train"]
    assert (train["pods"] <= 8).all() and (jobs.loc[jobs["kind"] == "data", "slots"] >= 4).all()


# -- the Slurm-like queue ----------------------------------------------------------------------

def _hand_made():
    # 4 nodes. A (3 nodes, 100 s) runs at 0; B (4 nodes) must wait for A: reservation at 100.
    # C (1 node, 50 s) fits beside A and ends at 52 < 100: backfilled.
    # D (1 node, 200 s) would end after 100 and B needs all 4 nodes: must not backfill.
    return P.jobs_frame(submit=[0, 1, 2, 3], pods=[3, 4, 1, 1], run_time=[100, 100, 50, 200],
                        req_time=[100, 100, 50, 200])


def test_easy_backfill_never_delays_the_head_reservation_hand_made():
    res = P.replay(_hand_made(), policy="separate", cpu_nodes=4)
    j = res.jobs.set_index("job_id")
    assert j.loc[2, "reservation"] == 100 and j.loc[2, "start"] == 100
    assert j.loc[3, "start"] == 2 and j.loc[3, "backfilled"]
    assert j.loc[4, "start"] == 200 and not j.loc[4, "backfilled"]
    fifo = P.replay(_hand_made(), policy="separate", cpu_nodes=4, backfill=False).jobs.set_index("job_id")
    assert fifo.loc[3, "start"] == 200 and fifo.loc[2, "start"] == 100
    assert res.jobs["wait"].mean() < P.replay(_hand_made(), policy="separate", cpu_nodes=4,
                                              backfill=False).jobs["wait"].mean()


def test_easy_backfill_uses_extra_nodes():
    # 6 nodes: A (4 nodes, 100 s) runs; B (4 nodes) reserved at 100 leaves 2 extra nodes then;
    # C (2 nodes, 500 s) ends after the shadow but fits in the extra nodes: backfilled at once.
    jobs = P.jobs_frame(submit=[0, 1, 2, 3], pods=[4, 4, 2, 1], run_time=[100, 100, 500, 500])
    j = P.replay(jobs, policy="separate", cpu_nodes=6).jobs.set_index("job_id")
    assert j.loc[3, "start"] == 2 and j.loc[3, "backfilled"]
    assert j.loc[2, "start"] == 100
    assert j.loc[4, "start"] == 200  # no extra node left for D before B ends


@pytest.mark.parametrize("kw", [dict(policy="separate"), dict(policy="unified"),
                                dict(policy="separate", placement="linear", cpu_segment=8),
                                dict(policy="unified", placement="linear", cpu_segment=8)])
def test_easy_backfill_keeps_every_reservation_on_a_trace(kw):
    jobs = P.lublin_feitelson(3000, max_nodes=64, seed=11)
    res = P.replay(jobs, cpu_nodes=64, **kw)
    d = res.jobs
    head = d["reservation"].notna()
    assert head.sum() > 20
    assert (d.loc[head, "start"] <= d.loc[head, "reservation"] + 1e-6).all()
    assert d["backfilled"].sum() > 0


# -- every job once, gangs all-or-nothing, capacity never exceeded ------------------------------

@pytest.mark.parametrize("policy", ["separate", "unified"])
def test_every_job_finishes_exactly_once_and_gangs_start_together(policy):
    jobs = P.mixed_workload(1500, ai_share=0.4, cpu_nodes=32, gpu_nodes=8, load=0.8, seed=4)
    res = P.replay(jobs, policy=policy, cpu_nodes=32, gpu_nodes=8, record=True, cpu_segment=8)
    d = res.jobs
    done = d["status"] == "done"
    assert (d.loc[done, "finished"] == 1).all()
    assert (d.loc[~done, "status"] == "rejected").all() and (d.loc[~done, "finished"] == 0).all()
    assert (d.loc[done, "end"] >= d.loc[done, "start"]).all()
    assert (d.loc[done, "start"] >= d.loc[done, "submit"]).all()
    rec = res.record
    starts = rec[rec["slots"] > 0]
    for kind in ("hpc", "train"):
        ids = d.index[(d["kind"] == kind) & done]
        g = starts[starts["job"].isin(ids)].groupby("job")
        # all pods of a gang start at one instant, and all of them start
        assert (g["time"].nunique() == 1).all()
        assert (g.size() == d.loc[g.size().index, "pods"]).all()
    # independent pods: every pod started once
    ind = d.index[d["kind"].isin(["infer", "data"]) & done]
    assert (starts[starts["job"].isin(ind)].groupby("job").size() == d.loc[ind, "pods"]).all()
    # no node ever holds more slots than it has, nor gives back more than it held
    slots = res.pools["slots"].to_dict()
    rec = rec.sort_values(["time", "slots"], kind="stable")  # releases first at one instant
    use = rec.groupby(["pool", "node"])["slots"].cumsum()
    assert use.min() >= 0
    assert (use <= rec["pool"].map(slots)).all()
    assert rec.groupby(["pool", "node"])["slots"].sum().eq(0).all()  # all given back at the end


# -- elastic pools, billing, topology ----------------------------------------------------------

def test_elastic_pool_boots_bills_and_retires():
    from hpclab import catalog

    rec = catalog.default().instance("ecs.c8i.32xlarge")
    jobs = P.jobs_frame(submit=[0, 10], pods=[2, 1], run_time=[1000, 30])
    res = P.replay(jobs, policy="unified", cpu_nodes=8, idle_timeout=120)
    j = res.jobs.set_index("job_id")
    assert j.loc[1, "start"] == pytest.approx(rec.boot_time)  # nothing warm: wait one boot
    assert j.loc[2, "start"] == pytest.approx(10 + rec.boot_time)
    inst = res.instances[res.instances["pool"] == "cpu"]
    assert len(inst) == 3
    # retired idle_timeout after their last job
    ends = sorted(inst["end"])
    assert ends[0] == pytest.approx(10 + rec.boot_time + 30 + 120)
    assert ends[-1] == pytest.approx(rec.boot_time + 1000 + 120)
    # per-second billing with the catalog minimum charge, computed independently
    expected = sum(max(np.ceil(e - s), rec.min_charge) * rec.price_on_demand
                   for s, e in zip(inst["launch"], inst["end"]))
    assert res.pools.loc["cpu", "cost"] == pytest.approx(expected)
    assert res.pools.loc["gpu", "cost"] == 0


def test_cross_segment_slowdown_matches_hockney_on_the_topology():
    from hpclab.network import fabric, p2p_time, topology

    f = fabric("erdma")
    topo = topology("vpc-placement-group")
    n = 1 << 20
    lo, hi = topo.oversubscription
    t0 = p2p_time(n, f)
    t_pod = p2p_time(n, f.with_(beta=f.beta * lo), hops=2)  # leaf -> spine -> leaf
    t_pods = p2p_time(n, f.with_(beta=f.beta * max(lo, hi)), hops=4)
    got = [P.cross_segment_slowdown("erdma", share=0.25, nbytes=n, tier=tier, topology=topo)
           for tier in P.TIERS]
    assert got == pytest.approx([1.0, 0.75 + 0.25 * t_pod / t0, 0.75 + 0.25 * t_pods / t0])
    assert P.cross_segment_slowdown("erdma", share=0.0, nbytes=n) == 1.0
    arr = P.cross_segment_slowdown("erdma", share=[0.1, 0.5], nbytes=n)
    assert arr.shape == (2,) and arr[1] > arr[0] > 1
    # HPN 7.0: segments of one pod are joined non-blocking, pods through a 15:1 core
    hpn = [P.cross_segment_slowdown("rdma-hpn7", share=0.3, nbytes=64 << 20, tier=t, topology="hpn7")
           for t in P.TIERS]
    assert hpn[0] == 1.0 and hpn[1] < 1.01 < 3 < hpn[2]
    assert P.segment_nodes("lingjun.8xh800") == 128 and P.segment_nodes("ecs.c8i.32xlarge") == 32


def test_topology_aware_placement_keeps_gangs_in_one_segment():
    jobs = P.lublin_feitelson(2000, max_nodes=24, seed=2)
    topo = P.replay(jobs, policy="separate", cpu_nodes=64, cpu_segment=16)
    lin = P.replay(jobs, policy="separate", cpu_nodes=64, cpu_segment=16, placement="linear")
    one_t = int(topo.summary()["in_one_segment"].sel(kind="hpc"))
    one_l = int(lin.summary()["in_one_segment"].sel(kind="hpc"))
    assert one_t > one_l
    spread = topo.jobs[topo.jobs["segments"] > 1]
    assert len(spread) > 0
    # the factor comes from the network layer: eRDMA (c8i) on segments of one pod of the default
    # CPU topology, 30 % communication of 256 KiB messages (data/traces/platform_model.yaml)
    expected = P.cross_segment_slowdown(P.node_fabric("ecs.c8i.32xlarge"), share=0.3, nbytes=256 * 1024,
                                        tier="pod", topology="vpc-placement-group")
    np.testing.assert_allclose(spread["slowdown"], expected)
    assert expected > 1
    one = topo.jobs[topo.jobs["segments"] == 1]
    assert (one["slowdown"] == 1).all()
    np.testing.assert_allclose(spread["end"] - spread["start"],
                               np.minimum(spread["run_time"], spread["req_time"]) * expected)


def test_unified_vs_separate_sanity():
    jobs = P.mixed_workload(3000, ai_share=0.3, cpu_nodes=64, gpu_nodes=8, load=0.5, seed=9)
    ds = P.replay_each(jobs, cpu_nodes=64, gpu_nodes=8)
    assert list(ds["run"].values) == ["separate", "unified"]
    sep, uni = ds.sel(run="separate"), ds.sel(run="unified")
    assert int(sep["jobs"].sum()) == int(uni["jobs"].sum()) == int((jobs["pods"] > 0).sum()) - int(sep["rejected"].sum())
    # fixed clusters are paid while idle; elastic pools only while used
    assert float(uni["total_cost"]) < float(sep["total_cost"])
    assert float(uni["utilisation_total"]) > float(sep["utilisation_total"])
    # the same capacity shared and fixed: the unified platform pays the same nodes
    fixed = P.replay(jobs, policy="unified", elastic=False, cpu_nodes=64, gpu_nodes=8)
    assert fixed.pools["max_nodes"].sum() == 64 + 8 + 8  # HPC + data CPU nodes, GPU nodes
    assert (fixed.jobs["finished"] == (fixed.jobs["status"] == "done")).all()
    assert ds["wait"].attrs["units"] == "s" and ds["cost"].attrs["units"] == "USD"


def test_bounded_slowdown_formula():
    np.testing.assert_allclose(P.bounded_slowdown([0, 90, 5], [100, 10, 1]), [1.0, 10.0, 1.0])


# -- command line -------------------------------------------------------------------------------

def test_cli_replay_prints_metrics(capsys):
    from hpclab.cli import main

    assert main(["platform", "replay", str(DATA / "sample.swf"), "--policy", "unified", "--cpu-nodes", "64"]) == 0
    out = capsys.readouterr().out
    assert "policy unified" in out and "hpc" in out and "total cost [USD]" in out
    assert main(["platform", "replay", str(DATA / "sample.swf"), "--policy", "separate", "--cpu-nodes", "32"]) == 0
    out = capsys.readouterr().out
    assert "1 rejected" in out  # job 6 asks 64 nodes of a 32-node cluster
    assert main(["platform", "replay", str(DATA / "sample.swf"), "--cpu-nodes", "64", "--scaler",
                 "target-duration", "--tick", "30"]) == 0
    out = capsys.readouterr().out
    assert "scaled by target-duration+hysteresis every 30 s" in out and "9 jobs done" in out


def test_cli_generate_and_bad_trace(tmp_path, capsys):
    from hpclab.cli import main

    out = tmp_path / "lf.swf"
    assert main(["platform", "generate", str(out), "--jobs", "50", "--seed", "3"]) == 0
    assert len(P.read_swf(out)) == 50
    assert main(["platform", "replay", str(DATA / "bad_field.swf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hpclab: error: bad_field.swf:4: field 4 (run time) must be a number, got 'x'"]


def test_sample_traces_replay():
    paths = P.sample_traces()
    assert {"lublin_feitelson_1000.swf", "gpu_jobs_500.csv"} <= set(paths)
    jobs = pd.concat([P.read_trace(p) for p in paths.values()], ignore_index=True)
    jobs["job_id"] = np.arange(1, len(jobs) + 1)
    res = P.replay(jobs, policy="unified", cpu_nodes=64, gpu_nodes=16)
    assert ((res.jobs["finished"] == 1) | (res.jobs["status"] == "rejected")).all()


# -- views --------------------------------------------------------------------------------------

def test_platform_panel_updates_in_place():
    from hpclab.viz import platform as V

    box = V.platform_panel(n_jobs=400, cpu_nodes=32, gpu_nodes=8)
    cost = box.sources["cost"]
    before = list(cost.data["cost"])
    assert before[1] < before[0]  # elastic unified pays less than the fixed clusters
    box.widgets["cpu_nodes"].value = 64  # observers fire: the sources change in place
    after = list(box.sources["cost"].data["cost"])
    assert box.sources["cost"] is cost and after != before
    assert "64 CPU" in box.summary.value
    wait = box.sources["wait"].data
    assert len(wait["x"]) == 8 and all(v >= 0 for v in wait["mean"])
    nodes = box.sources["nodes"].data
    assert any(name.startswith("unified") for name in nodes["name"])


def test_report_part_and_cli_json(capsys):
    import json

    from hpclab.cli import main
    from hpclab.viz import platform as V

    part = V.report_part()
    assert len(part.figures) == 3
    assert part.table.loc["unified", "cost [USD]"] < part.table.loc["separate", "cost [USD]"]
    assert main(["platform", "replay", str(DATA / "sample.swf"), "--cpu-nodes", "64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["data_vars"]["wait"]["attrs"]["units"] == "s"
    assert doc["coords"]["kind"]["data"] == list(P.KINDS)


def test_priority_jumps_the_queue():
    jobs = P.jobs_frame(submit=[0, 1, 2], pods=[4, 4, 4], run_time=[100, 100, 100], priority=[0, 0, 5])
    j = P.replay(jobs, policy="separate", cpu_nodes=4).jobs.set_index("job_id")
    assert j.loc[3, "start"] == 100 and j.loc[2, "start"] == 200


def test_kubernetes_queue_best_effort_and_strict():
    # 2 GPU nodes of 8 GPUs. T1: one 8-GPU pod (100 s); T2: gang of two 8-GPU pods, must wait for
    # T1; I: one 1-GPU inference pod (10 s) that fits beside T1 now.
    jobs = P.jobs_frame(submit=[0, 1, 2], pods=[1, 2, 1], slots=[8, 8, 1], run_time=[100, 100, 10],
                        kind=["train", "train", "infer"])
    kw = dict(policy="separate", gpu_nodes=2, gpu_type="ecs.ebmgn8is.32xlarge")
    best = P.replay(jobs, **kw).jobs.set_index("job_id")
    assert best.loc[3, "start"] == 2 and best.loc[2, "start"] == 100  # passes T2, does not delay it here
    strict = P.replay(jobs, kube_strategy="strict", **kw).jobs.set_index("job_id")
    assert strict.loc[2, "start"] == 100 and strict.loc[3, "start"] == 200  # waits behind T2
    with pytest.raises(HpclabError, match="kube_strategy must be one of best-effort, strict"):
        P.replay(jobs, kube_strategy="fair", **kw)


def test_warm_nodes_and_spot_prices():
    from hpclab import catalog

    rec = catalog.default().instance("ecs.c8i.32xlarge")
    jobs = P.jobs_frame(submit=[0, 0], pods=[1, 1], run_time=[600, 60])
    res = P.replay(jobs, policy="unified", cpu_nodes=4, min_nodes=2, market="spot", idle_timeout=60)
    assert (res.jobs["wait"] == 0).all()  # two warm nodes: no boot to wait for
    inst = res.instances[res.instances["pool"] == "cpu"]
    assert len(inst) == 2 and (inst["end"] == 600).all()  # kept to the end, never below min_nodes
    assert res.pools.loc["cpu", "cost"] == pytest.approx(2 * 600 * rec.price_spot)


def test_reservations_hold_on_the_shared_pool():
    # unified: HPC gangs (Slurm-like) and data pods (Kubernetes-like) share one CPU pool; pods may
    # use idle nodes only where the head job's reservation allows, so it is never delayed either
    jobs = P.mixed_workload(3000, ai_share=0.5, cpu_nodes=32, gpu_nodes=4, load=0.9, seed=6)
    jobs = jobs[jobs["kind"].isin(["hpc", "data"])]
    for elastic in (False, True):
        res = P.replay(jobs, policy="unified", elastic=elastic, cpu_nodes=32, data_nodes=8)
        d = res.jobs
        head = d["reservation"].notna()
        assert head.sum() > 20 and (d["kind"] == "data").sum() > 200
        assert (d.loc[head, "start"] <= d.loc[head, "reservation"] + 1e-6).all()
        assert (d["finished"] == 1).all()


def test_lublin_feitelson_daily_cycle():
    # arrivals follow the model's daily cycle: busy days, quiet nights (half-hour buckets)
    jobs = P.lublin_feitelson(20000, seed=4)
    hour = (jobs["submit"].to_numpy() % 86400) // 3600
    per_hour = np.bincount(hour.astype(int), minlength=24)
    assert per_hour.max() > 3 * per_hour.min()


# -- an independent brute-force check of the Slurm-like schedule --------------------------------
# Written from the definitions, not from engine code: it sees only the replay's per-job start and
# end times, the job table and the node count.

def _brute_force_check(jobs, res, nodes, *, backfill=True):
    """Check, at every event time, that the nodes in use never exceed ``nodes``; that a killed job
    stopped at its requested time; and EASY's promise: whenever a job starts while a job ahead of
    it in the queue (FIFO, all priorities equal) waits, that waiting head still starts no later
    than its reservation computed at that instant from the requested times of the running jobs.
    Returns the number of backfill events checked."""
    d = res.jobs
    assert (d["slowdown"] == 1).all()  # one network segment: requested times are not stretched
    done = d[d["status"] == "done"]
    sub = done["submit"].to_numpy()
    start = done["start"].to_numpy()
    end = done["end"].to_numpy()
    pods = done["pods"].to_numpy()
    req = done["req_time"].to_numpy()
    run = done["run_time"].to_numpy()
    order = np.lexsort((done["job_id"].to_numpy(), sub))  # the FIFO queue order
    rank = np.empty(len(done), dtype=int)
    rank[order] = np.arange(len(done))
    # every job ran for min(run, requested) and never before its submit
    np.testing.assert_allclose(end - start, np.minimum(run, req))
    assert (start >= sub).all()
    # capacity, at every instant something starts (ends at that instant are released first)
    for t in np.unique(start):
        busy = pods[(start <= t) & (end > t)].sum()
        assert busy <= nodes, f"t={t}: {busy} nodes in use of {nodes}"
    checked = 0
    for i in range(len(done)):
        t = start[i]
        waiting = np.flatnonzero((sub <= t) & (start > t) & (rank < rank[i]))
        if not len(waiting):
            continue
        assert backfill, f"job {done['job_id'].iloc[i]} passed a waiting job without backfill"
        h = waiting[np.argmin(rank[waiting])]  # the head when job i was backfilled
        running = (start <= t) & (end > t) & (np.arange(len(done)) != i)
        free = nodes - pods[running].sum()
        shadow = t
        if free < pods[h]:
            est = start[running] + req[running]  # requested ends
            k = np.argsort(est, kind="stable")
            freed = free + np.cumsum(pods[running][k])
            shadow = est[k][np.argmax(freed >= pods[h])]
        assert start[h] <= shadow + 1e-6, (
            f"backfilled job {done['job_id'].iloc[i]} at t={t} delayed head {done['job_id'].iloc[h]}: "
            f"reservation {shadow}, started {start[h]}")
        checked += 1
    return checked


def _edge_cases():
    # 4 nodes. 1: fills the machine exactly. 2: larger than the machine (rejected). 3: zero run
    # time. 4, 5: equal submit times. 6: asks 100 s but would run 500 s (killed at the limit).
    # 7 (the whole machine) waits for 6: reservation at 130 + 100 = 230. 8 (1 node, 20 s) is
    # backfilled beside 6 at 130; 9 (2 nodes, 200 s) would end after 230 and must wait.
    return P.jobs_frame(submit=[0, 0, 5, 10, 10, 10, 11, 12, 13], pods=[4, 5, 2, 2, 2, 1, 4, 1, 2],
                        run_time=[100, 50, 0, 30, 30, 500, 40, 20, 200],
                        req_time=[100, 50, 10, 60, 60, 100, 40, 20, 200])


def test_brute_force_edge_cases():
    jobs = _edge_cases()
    res = P.replay(jobs, policy="separate", cpu_nodes=4)
    j = res.jobs.set_index("job_id")
    assert j.loc[2, "status"] == "rejected" and j.loc[2, "reason"] == \
        "needs 5 nodes at once; the hpc-cpu pool has at most 4"
    assert j.loc[2, "finished"] == 0 and np.isnan(j.loc[2, "start"])
    assert j.loc[1, "start"] == 0 and j.loc[1, "end"] == 100  # fills the machine
    assert j.loc[3, "start"] == 100 and j.loc[3, "end"] == 100 and j.loc[3, "finished"] == 1  # zero length
    assert j.loc[4, "start"] == j.loc[5, "start"] == 100  # equal submits, FIFO by id
    assert j.loc[6, "killed"] and j.loc[6, "end"] - j.loc[6, "start"] == 100  # killed at its limit
    assert not j.loc[[1, 3, 4, 5, 7, 8, 9], "killed"].any()
    assert (j.loc[j["status"] == "done", "finished"] == 1).all()
    assert j.loc[8, "backfilled"] and j.loc[8, "start"] == 130
    assert j.loc[7, "reservation"] == 230 and j.loc[7, "start"] == 230
    assert j.loc[9, "start"] == 270 and not j.loc[9, "backfilled"]
    assert _brute_force_check(jobs, res, 4) == 1
    # the same trace, no backfill: strict FIFO, the checker finds no job passing another
    fifo = P.replay(jobs, policy="separate", cpu_nodes=4, backfill=False)
    _brute_force_check(jobs, fifo, 4, backfill=False)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_brute_force_easy_backfill_on_generated_traces(seed):
    nodes = 32
    jobs = P.lublin_feitelson(600, max_nodes=nodes, seed=seed)
    # some users under-estimate: their jobs are killed at the limit
    rng = np.random.default_rng(seed)
    short = rng.random(len(jobs)) < 0.1
    jobs.loc[short, "req_time"] = np.maximum(1.0, np.floor(jobs.loc[short, "run_time"] / 2))
    jobs.loc[rng.random(len(jobs)) < 0.02, "run_time"] = 0.0
    res = P.replay(jobs, policy="separate", cpu_nodes=nodes, cpu_segment=nodes)
    assert (res.jobs["status"] == "done").all() and (res.jobs["finished"] == 1).all()
    assert res.jobs["killed"].sum() > 0
    assert _brute_force_check(jobs, res, nodes) > 20
    fifo = P.replay(jobs, policy="separate", cpu_nodes=nodes, cpu_segment=nodes, backfill=False)
    _brute_force_check(jobs, fifo, nodes, backfill=False)


def test_brute_force_elastic_pool_capacity():
    # the unified platform with an elastic pool: the nodes in use never exceed the nodes booted
    # and not yet retired (from the instance table), and a gang's nodes come all at once
    nodes = 32
    jobs = P.lublin_feitelson(800, max_nodes=nodes, seed=5)
    res = P.replay(jobs, policy="unified", cpu_nodes=nodes, data_nodes=1, cpu_segment=8, record=True)
    d = res.jobs
    inst = res.instances[res.instances["pool"] == "cpu"]
    ready, gone = inst["ready"].to_numpy(), inst["end"].to_numpy()
    for t in np.unique(d["start"]):
        busy = d.loc[(d["start"] <= t) & (d["end"] > t), "pods"].sum()
        assert busy <= ((ready <= t) & (gone > t)).sum() <= nodes + 1
    starts = res.record[res.record["slots"] > 0]
    per_job = starts.groupby("job").agg(t=("time", "min"), t_last=("time", "max"), n=("node", "nunique"))
    assert (per_job["t"] == per_job["t_last"]).all()
    assert (per_job["n"] == d.loc[per_job.index, "pods"]).all()
    # a node is never given to two jobs at once
    for (_, node), r in res.record.sort_values(["time", "slots"]).groupby(["pool", "node"]):
        assert r["slots"].cumsum().max() <= res.pools.loc["cpu", "slots"]


# -- malformed traces on the command line: one line naming file:line, exit 2 -------------------

@pytest.mark.parametrize("name, text, message", [
    ("empty.swf", "", "empty.swf: empty trace (no job lines)"),
    ("comments.swf", "; Version: 2.2\n;\n", "comments.swf: empty trace (no job lines)"),
    ("negative.swf", "1 0 -1 100 -4 -1 -1 -4 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
     "negative.swf:1: field 5 (allocated processors) must be >= 0, or -1 if unknown; got '-4'"),
    ("negrun.swf", "1 0 -1 100 4 -1 -1 4 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n"
                   "2 9 -1 -7 4 -1 -1 4 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
     "negrun.swf:2: field 4 (run time) must be >= 0, or -1 if unknown; got '-7'"),
    ("frac.swf", "; c\n1 0 -1 100 4 -1 -1 2.5 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
     "frac.swf:2: field 8 (requested processors) must be a whole number, got '2.5'"),
    ("count.swf", "1 0 -1 100 4 -1 -1 4 100\n", "count.swf:1: expected 18 fields (SWF), got 9"),
    ("field.swf", "1 0 -1 100 four -1 -1 4 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
     "field.swf:1: field 5 (allocated processors) must be a number, got 'four'"),
    ("unreplayable.swf", "1 0 -1 -1 4 -1 -1 4 100 -1 1 -1 -1 -1 -1 -1 -1 -1\n",
     "unreplayable.swf: no job to replay (1 job lines without a run time or size)"),
])
@pytest.mark.parametrize("policy", ["unified", "separate"])
def test_cli_malformed_traces_one_line_exit_2(tmp_path, capsys, name, text, message, policy):
    from hpclab.cli import main

    path = tmp_path / name
    path.write_text(text)
    assert main(["platform", "replay", str(path), "--policy", policy]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpclab: error: ") and err[0].endswith(message), err


def test_cli_missing_trace(tmp_path, capsys):
    from hpclab.cli import main

    assert main(["platform", "replay", str(tmp_path / "nope.swf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.swf: cannot read trace (No such file or directory)" in err[0]


def test_brute_force_checker_catches_a_delayed_head_and_overbooking():
    # the checker itself can fail: the same replay with the head moved past its reservation,
    # and with a job moved onto busy nodes
    res = P.replay(_edge_cases(), policy="separate", cpu_nodes=4)
    j = res.jobs
    late = j.copy()
    late.loc[late["job_id"] == 7, ["start", "end"]] = [231.0, 271.0]
    late.loc[late["job_id"] == 9, ["start", "end"]] = [271.0, 471.0]
    with pytest.raises(AssertionError, match="delayed head 7: reservation 230"):
        _brute_force_check(_edge_cases(), P.PlatformResult(**{**res.__dict__, "jobs": late}), 4)
    over = j.copy()
    over.loc[over["job_id"] == 9, ["start", "end"]] = [240.0, 440.0]
    with pytest.raises(AssertionError, match="t=240.0: 6 nodes in use of 4"):
        _brute_force_check(_edge_cases(), P.PlatformResult(**{**res.__dict__, "jobs": over}), 4)


# -- elastic pools driven by a shared hpclab.elastic policy at ticks ------------------------------

def test_shared_elastic_policy_scales_the_pools_at_ticks():
    from hpclab.elastic.policies import Hysteresis, TargetDuration
    from hpclab.elastic.state import Decision

    class Counting(TargetDuration):
        calls = 0
        seen = []

        def decide(self, state):
            type(self).calls += 1
            if len(type(self).seen) < 50:
                type(self).seen.append((state.time, state.queued, state.running, len(state.instances)))
            return super().decide(state)

    jobs = P.mixed_workload(800, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=0.7, seed=12)
    kw = dict(policy="unified", cpu_nodes=32, gpu_nodes=8, cpu_segment=8, idle_timeout=300)
    own = P.replay(jobs, **kw)
    shared = P.replay(jobs, scaler=lambda: Hysteresis(Counting(), wait=300, cooldown=0), tick=30, **kw)
    d = shared.jobs
    assert Counting.calls > 100 and shared.settings["scaler"] == "target-duration+hysteresis"
    # the snapshots count task slots (vCPUs, GPUs) queued and running, one view per live node
    assert all(q >= 0 and r >= 0 and n >= 0 for _, q, r, n in Counting.seen)
    assert any(q > 0 for _, q, _, _ in Counting.seen) and any(n > 0 for *_, n in Counting.seen)
    assert (d["finished"] == (d["status"] == "done")).all() and (d["status"] != "unfinished").all()
    head = d["reservation"].notna()
    assert head.sum() > 10 and (d.loc[head, "start"] <= d.loc[head, "reservation"] + 1e-6).all()
    # the built-in rule launches at the first submit, the shared policy at the first tick after it
    t0 = float(jobs["submit"].iloc[0])
    assert own.instances["launch"].min() == t0
    assert shared.instances["launch"].min() == pytest.approx(t0 + 30)
    # nodes in use never exceed nodes up (from the instance table)
    for pool in ("cpu",):
        inst = shared.instances[shared.instances["pool"] == pool]
        hpc = d[d["kind"] == "hpc"]
        for t in np.unique(hpc["start"].dropna()):
            busy = hpc.loc[(hpc["start"] <= t) & (hpc["end"] > t), "pods"].sum()
            assert busy <= ((inst["ready"] <= t) & (inst["end"] > t)).sum()
    # the same work on about the same bill as the built-in rule (both launch for the queued demand,
    # retire after 300 idle seconds); the tick adds up to one tick of waiting per scale-out
    assert shared.cost == pytest.approx(own.cost, rel=0.15)
    assert int((d["status"] == "done").sum()) == int((own.jobs["status"] == "done").sum())

    # a policy that never launches: the replay still ends, with the jobs unfinished
    class Never:
        name = "never"

        def decide(self, state):
            return Decision()

    few = P.jobs_frame(submit=[0, 5], pods=[2, 1], run_time=[100, 10])
    res = P.replay(few, policy="unified", cpu_nodes=4, scaler=Never(), tick=10)
    assert (res.jobs["status"] == "unfinished").all() and len(res.instances) == 0
    with pytest.raises(HpclabError, match="scaler must be a policy name"):
        P.replay(few, policy="unified", cpu_nodes=4, scaler=42)
    with pytest.raises(HpclabError, match="policy must be one of"):
        P.replay(few, policy="unified", cpu_nodes=4, scaler="fastest")


def test_swf_latin1_header_comment_is_read(tmp_path):
    """SWF header comments are free text: a Latin-1 byte there is read; in a job line it is not."""
    body = b"1 0 10 100 4 -1 -1 4 200 -1 1 1 1 1 1 1 -1 -1\n"
    p = tmp_path / "latin1.swf"
    p.write_bytes(b"; Version: 2.2\n; Installation: Universit\xe9 de Gen\xe8ve\n" + body)
    df, header = P.read_swf(p, return_header=True)
    assert len(df) == 1 and header["Installation"] == "Université de Genève"
    p.write_bytes(b"; Version: 2.2\n" + body.replace(b"-1\n", b"\xe9\n"))
    with pytest.raises(HpclabError, match=r"^latin1\.swf:2: not UTF-8 text \(byte 0xe9 at column \d+\)"):
        P.read_swf(p)


@pytest.mark.parametrize("row, expected", [
    ("1e30 0 10 100 4 -1 -1 4 200 -1 1 1 1 1 1 1 -1 -1", r"field 1 \(job number\) must be at most 10\^9"),
    ("1 0 10 1e300 4 -1 -1 4 200 -1 1 1 1 1 1 1 -1 -1", r"field 4 \(run time\) must be at most 10 years"),
    ("1 0 10 100 1e15 -1 -1 1e15 200 -1 1 1 1 1 1 1 -1 -1", r"field 5 \(allocated processors\) must be at most 10\^8"),
])
def test_swf_values_outside_the_domain_name_file_line_and_field(tmp_path, row, expected):
    p = tmp_path / "t.swf"
    p.write_text("; Version: 2.2\n" + row + "\n")
    with pytest.raises(HpclabError, match=r"^t\.swf:2: " + expected):
        P.read_swf(p)


@pytest.mark.parametrize("text, expected", [
    ("job_id,submit,kind,pods,pods,slots,run_time\n1,0,train,1,1,8,10\n", r"^t\.csv:1: header repeats column\(s\) 'pods'$"),
    ("job_id,submit,kind,pods,slots,run_time\n1,-5,train,1,8,10\n", r"^t\.csv:2: column 'submit' must be a number in \[0,"),
    ("job_id,submit,kind,pods,slots,run_time\n1,0,train,1e18,8,10\n", r"^t\.csv:2: column 'pods' must be a whole number in \[1, 10,000,000\]"),
    ("job_id,submit,kind,pods,slots,run_time\n1,0,infer,1,100000,10\n", r"^t\.csv:2: column 'slots' must be a whole number in \[0, 4,096\]"),
    ("job_id,submit,kind,pods,slots,run_time\n1,0,data,1,0,10\n", r"^t\.csv:2: column 'slots' must be >= 1"),
])
def test_gpu_csv_values_outside_the_domain(tmp_path, text, expected):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(HpclabError, match=expected):
        P.read_gpu_csv(p)
