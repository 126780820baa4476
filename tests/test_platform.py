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
    with pytest.raises(HpclabError, match=r"^bad\.csv:3: column 'pods' must be a whole number, got 'two'$"):
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
    ds = P.compare(jobs, cpu_nodes=64, gpu_nodes=8)
    assert list(ds["scenario"].values) == ["separate", "unified"]
    sep, uni = ds.sel(scenario="separate"), ds.sel(scenario="unified")
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
