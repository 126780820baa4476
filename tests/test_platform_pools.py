"""The platform's pools: on spot and in zones (reclaims kill and re-queue jobs, zone capacity refuses
launches, the bill follows the spot price path), placement as a piece below the queues, and the
on-demand path unchanged."""

import hashlib
import math
import re

import numpy as np
import pytest

from hpclab import HpclabError
from hpclab import catalog as _catalog
from hpclab import platform as P
from hpclab.elastic.faults import SpotMarket

# -- the on-demand path is unchanged -------------------------------------------------------------

JOB_COLS = ("start", "end", "segments", "slowdown", "backfilled", "finished", "killed", "reservation")
INST_COLS = ("launch", "ready", "end", "cost")
POOL_COLS = ("launched", "node_hours", "utilisation", "cost")


def digest(res):
    """A fingerprint of what a replay decided (times rounded to a microsecond)."""
    h = hashlib.sha256()
    for frame, cols in ((res.jobs, JOB_COLS), (res.instances, INST_COLS), (res.pools, POOL_COLS)):
        for c in cols:
            v = np.round(frame[c].to_numpy(dtype=float), 6)
            h.update(np.nan_to_num(v, nan=-1.0).tobytes())
    h.update(",".join(res.jobs["status"]).encode())
    h.update(",".join(res.instances["pool"]).encode())
    h.update(repr(round(res.makespan, 6)).encode())
    return h.hexdigest()[:16]


# measured on main's code before pools had zones, capacity and reclaims (commit f355952)
BEFORE = {
    "unified": "d236d08e18057efe",
    "separate": "41466c0c845fcc92",
    "linear": "1566ce44284b232d",
    "strict-spot-price": "f1e24d737c7a0630",
    "overloaded": "bae87bd04702694d",
    "overloaded-separate": "484041b007bf71b1",
    "fixed-unified": "4b8d20d38e0ccd39",
    "slurm-real": "ae4068c52a4b7d24",
    "no-backfill": "fb558d708839bc1a",
}


@pytest.fixture(scope="module")
def traces():
    return {"mixed": P.mixed_workload(3000, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=0.9, seed=3),
            "over": P.mixed_workload(3000, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=2.5, seed=4),
            "lf": P.lublin_feitelson(400, max_nodes=64, seed=5)}


def _case(name, tr):
    kw = dict(cpu_nodes=32, gpu_nodes=8)
    mixed, over, lf = tr["mixed"], tr["over"], tr["lf"]
    return {
        "unified": lambda: P.replay(mixed, "unified", **kw),
        "separate": lambda: P.replay(mixed, "separate", **kw),
        "linear": lambda: P.replay(mixed, "unified", placement="linear", seed=2, **kw),
        # spot nodes never reclaimed, in a zone with room: what the spot price alone gave before
        "strict-spot-price": lambda: P.replay(mixed, "unified", kube_strategy="strict", market="spot",
                                              reclaim_rate=0.0, **kw),
        "overloaded": lambda: P.replay(over, "unified", **kw),
        "overloaded-separate": lambda: P.replay(over, "separate", **kw),
        "fixed-unified": lambda: P.replay(over, "unified", elastic=False, min_nodes=2, **kw),
        "slurm-real": lambda: P.replay(lf, "separate", cpu_nodes=64, cpu_segment=64, slurm=dict(
            limit_unit=60, bf_interval=1, reserve="host", launch_latency=0.7)),
        "no-backfill": lambda: P.replay(lf, "unified", cpu_nodes=64, backfill=False, idle_timeout=0),
    }[name]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_on_demand_replays_are_bit_identical_to_before(name, traces):
    assert digest(_case(name, traces)()) == BEFORE[name]


def test_the_fingerprint_sees_a_one_second_change(traces):
    res = _case("unified", traces)()
    res.jobs.loc[17, "start"] += 1.0
    assert digest(res) != BEFORE["unified"]


# -- reclaims ------------------------------------------------------------------------------------

def _one_gang(run=3 * 3600.0, pods=2, submit=0.0):
    import pandas as pd

    return pd.DataFrame({"job_id": [1], "kind": ["hpc"], "submit": [submit], "pods": [pods],
                         "slots": [0], "run_time": [run], "req_time": [run], "priority": [0]})


RATE = 1 / (3 * 3600)


def _spot_gang_run(seed):
    # one 2-node gang of 90 min on a fixed spot cluster of 2 nodes, each reclaimed about every 3 h
    return P.replay(_one_gang(run=5400.0), "separate", cpu_nodes=2, gpu_nodes=1, data_nodes=1,
                    market="spot", reclaim_rate=RATE, spot_market=SpotMarket("independent"), seed=seed,
                    record=True, max_reruns=50)


def test_a_reclaim_kills_the_gang_requeues_it_and_it_completes():
    cat = _catalog.default()
    hit = 0
    for seed in range(20):
        r = _spot_gang_run(seed)
        job = r.jobs.iloc[0]
        assert job["status"] == "done" and job["finished"] == 1
        hit += job["reruns"] >= 1  # the market reclaimed a node under it at least once
        assert math.isclose(job["end"] - job["start"], 5400.0)  # the last run ran in full
        rec = r.record[r.record["pool"] == "hpc-cpu"].sort_values("time", kind="stable")
        G = int(r.pools.loc["hpc-cpu", "slots"])
        starts = rec[rec["slots"] > 0].groupby("time")["node"].apply(sorted)
        ends = rec[rec["slots"] < 0].groupby("time")["node"].apply(sorted)
        assert len(starts) == len(ends) == job["reruns"] + 1  # one run per attempt
        inst = r.instances[r.instances["pool"] == "hpc-cpu"]
        killed_at = set(inst.loc[inst["reason"] == "spot reclaimed (hard kill)", "end"])
        lost = 0.0
        for (t0, n0), (t1, n1) in zip(starts.items(), ends.items()):
            assert n0 == n1 and len(n0) == 2  # the whole gang starts and stops together
            if t1 in killed_at:  # a kill: the gang's work so far is lost
                lost += (t1 - t0) * G * 2
        assert len(killed_at) == job["reruns"]
        assert r.pools.loc["hpc-cpu", "lost_slot_seconds"] == pytest.approx(lost, rel=1e-12)
        assert r.pools.loc["hpc-cpu", "hard_kills"] == job["reruns"]
        # a killed node ends one spot_notice after its notice, and the fixed cluster replaces it
        notice = cat.instance("ecs.c8i.32xlarge").spot_notice
        reclaims = sorted(w for it, z, g, w in r.market.granted if it == "ecs.c8i.32xlarge")
        for t in killed_at:
            assert any(math.isclose(t, w + notice) for w in reclaims)
        assert (inst["reason"] != "running at end").sum() == len(inst) - 2  # two still up at the end
        if hit >= 3:
            break
    assert hit >= 3


def test_reclaim_times_come_from_the_simulators_market_schedule():
    r = _spot_gang_run(1)
    cat = _catalog.default()
    fresh = SpotMarket("independent").schedule(cat, 1)
    assert r.market.granted
    for itype, zone, grant, when in r.market.granted:
        rate = RATE
        assert fresh.reclaim_times(itype, zone, [grant], rate)[0] == when


def test_a_job_killed_too_often_is_given_up():
    r = P.replay(_one_gang(run=20 * 3600.0), "separate", cpu_nodes=2, gpu_nodes=1, data_nodes=1,
                 market="spot", reclaim_rate=1 / 3600, spot_market=SpotMarket("independent"),
                 max_reruns=2)
    job = r.jobs.iloc[0]
    assert job["status"] == "failed" and job["reruns"] == 2 and job["finished"] == 0
    assert r.summary()["failed"] == 1


def test_spot_pods_on_a_mixed_trace_keep_every_node_within_its_slots():
    jobs = P.mixed_workload(1500, ai_share=0.4, cpu_nodes=16, gpu_nodes=8, load=0.8, seed=7)
    for policy in ("unified", "separate"):
        r = P.replay(jobs, policy, cpu_nodes=16, gpu_nodes=8, market="spot", reclaim_rate=1 / (12 * 3600),
                     record=True)
        assert r.pools["reclaims"].sum() > 0 and r.pools["hard_kills"].sum() > 0
        assert (r.jobs["reruns"] > 0).sum() > 0
        assert set(r.jobs["status"]) <= {"done", "failed"}
        assert r.summary()["rerun_jobs"] == (r.jobs["reruns"] > 0).sum()
        for (pool, node), d in r.record.groupby(["pool", "node"]):
            d = d.assign(o=(d["slots"] > 0).astype(int)).sort_values(["time", "o"], kind="stable")
            used = d["slots"].cumsum()
            assert used.max() <= r.pools.loc[pool, "slots"] and used.iloc[-1] == 0
        # pods: every finished job ran all its pods once more than the reclaims took from it
        done = r.jobs[r.jobs["status"] == "done"]
        starts = r.record[r.record["slots"] > 0].groupby("job").size()
        pods = done["pods"].to_numpy()
        assert (starts.reindex(done.index).to_numpy() >= pods).all()


# -- zone capacity --------------------------------------------------------------------------------

def test_capacity_zero_refuses_every_launch_in_that_zone():
    jobs = P.mixed_workload(400, ai_share=0.4, cpu_nodes=8, gpu_nodes=4, load=0.5, seed=2)
    # cn-hangzhou-j offers no ecs.ebmgn8is.32xlarge (capacity 0): every GPU launch is refused
    for policy in ("unified", "separate"):
        r = P.replay(jobs, policy, cpu_nodes=8, gpu_nodes=4, zone=("cn-hangzhou-h", "cn-hangzhou-j"))
        gpu = "gpu" if policy == "unified" else "ai-gpu"
        assert r.pools.loc[gpu, "launched"] == 0 and r.pools.loc[gpu, "refused"] > 0
        gpu_jobs = r.jobs["kind"].isin(["train", "infer"])
        assert (r.jobs.loc[gpu_jobs, "status"] == "unfinished").all()
        assert (r.jobs.loc[~gpu_jobs, "status"] == "done").all()
        assert int(r.summary()["refused"].sel(pool=gpu)) == r.pools.loc[gpu, "refused"]


def test_zone_capacity_caps_the_nodes_alive_and_is_shared_by_pools_of_a_type():
    cat = _catalog.default()
    cores = cat.instance("ecs.c8i.32xlarge").cores
    cap = cat.zone("cn-hangzhou-h").capacity["ecs.c8i.32xlarge"]
    factor = 3 * cores / cap  # room for 3 CPU nodes
    jobs = P.mixed_workload(600, ai_share=0.3, cpu_nodes=8, gpu_nodes=4, load=1.2, seed=4,
                            max_hpc_nodes=2)
    jobs = jobs[jobs["kind"].isin(["hpc", "data"])].reset_index(drop=True)  # CPU jobs only
    for policy in ("unified", "separate"):
        r = P.replay(jobs, policy, cpu_nodes=8, gpu_nodes=4, data_nodes=2, zone="cn-hangzhou-h",
                     capacity=factor, elastic=True)
        inst = r.instances[r.instances["itype"] == "ecs.c8i.32xlarge"]
        edges = np.r_[inst["launch"], inst["end"]]
        step = np.r_[np.ones(len(inst)), -np.ones(len(inst))]
        order = np.lexsort((step, edges))  # an end before a launch at the same time
        assert np.cumsum(step[order]).max() == 3
        cpu_pools = [p for p in r.pools.index if r.pools.loc[p, "itype"] == "ecs.c8i.32xlarge"]
        assert r.pools.loc[cpu_pools, "refused"].sum() > 0
        assert (r.jobs["status"] == "done").all()


def _alive(inst, t):
    """Nodes alive (launched, not ended) at ``t``."""
    return int(((inst["launch"] <= t) & (inst["end"] > t)).sum())


def test_a_capacity_curve_scales_the_zone_over_time_on_the_platform():
    """The simulator's capacity curve on the platform: a dip to zero grants nothing in the dip and
    reclaims the spot nodes alive at its start (notice, then gone by the end of the notice); half
    the capacity leaves at most half the nodes once the notices ran out; after the dip, refused
    pools launch again and every job finishes. A curve of ones changes nothing."""
    cat = _catalog.default()
    cores = cat.instance("ecs.c8i.32xlarge").cores
    notice = cat.instance("ecs.c8i.32xlarge").spot_notice
    cap = cat.zone("cn-hangzhou-h").capacity["ecs.c8i.32xlarge"]
    factor = 6 * cores / cap  # room for 6 CPU nodes
    jobs = P.mixed_workload(800, ai_share=0.3, cpu_nodes=8, gpu_nodes=4, load=1.0, seed=3, max_hpc_nodes=2)
    jobs = jobs[jobs["kind"].isin(["hpc", "data"])].reset_index(drop=True)  # CPU jobs only
    T1, T2 = (float(np.quantile(jobs["submit"], q)) for q in (0.3, 0.6))
    kw = dict(cpu_nodes=8, gpu_nodes=4, data_nodes=2, zone="cn-hangzhou-h", capacity=factor, market="spot")
    base = P.replay(jobs, "unified", **kw)
    ones = P.replay(jobs, "unified", capacity_curve=([T1, T2], [1.0, 1.0]), **kw)
    assert ones.cost == base.cost and ones.jobs["end"].equals(base.jobs["end"])
    for f, most in ((0.0, 0), (0.5, 3)):
        r = P.replay(jobs, "unified", capacity_curve=([T1, T2], [f, 1.0]), **kw)
        inst = r.instances[r.instances["itype"] == "ecs.c8i.32xlarge"]
        assert _alive(inst, T1 - 1) > most  # the dip has nodes to reclaim
        for t in np.linspace(T1 + notice, T2 - 1, 50):
            assert _alive(inst, t) <= most, t
        if f == 0.0:
            assert not ((inst["launch"] >= T1) & (inst["launch"] < T2)).any()
            assert inst.loc[(inst["launch"] < T1) & (inst["end"] > T1), "end"].max() <= T1 + notice
        assert ((inst["launch"] >= T2) & (inst["launch"] < T2 + 3600)).any()  # refused pools ask again
        assert r.pools.loc["cpu", "refused"] > 0 and r.pools.loc["cpu", "reclaims"] > base.pools.loc["cpu", "reclaims"]
        assert (r.jobs["status"] == "done").all()
    # on demand: nothing is reclaimed, but nothing is granted in the dip
    od = dict(kw, market="on-demand")
    r = P.replay(jobs, "unified", capacity_curve=([T1, T2], [0.0, 1.0]), **od)
    assert r.pools.loc["cpu", "reclaims"] == 0
    assert not ((r.instances["launch"] >= T1) & (r.instances["launch"] < T2)).any()
    assert (r.jobs["status"] == "done").all()


def test_jobs_waiting_on_a_zone_without_capacity_run_when_the_curve_raises_it():
    """Nothing runs and nothing else happens while the zone has no capacity: the rise itself
    wakes the refused pool (and ends the replay's drain), so the queued jobs run."""
    jobs = P.mixed_workload(300, ai_share=0.0, cpu_nodes=8, gpu_nodes=4, load=0.5, seed=5, max_hpc_nodes=2)
    jobs = jobs.iloc[:20].copy()
    jobs["submit"] = np.arange(20.0)  # all queued in the first 20 s
    rise = 5000.0
    r = P.replay(jobs, "unified", cpu_nodes=8, gpu_nodes=4, zone="cn-hangzhou-h",
                 capacity_curve=([0.0, rise], [0.0, 1.0]))
    assert (r.jobs["status"] == "done").all()
    assert r.instances["launch"].min() == rise and r.jobs["start"].min() >= rise
    assert r.pools.loc["cpu", "refused"] > 0


def test_a_capacity_change_after_the_replay_ended_changes_nothing():
    """After the last job nothing can run: a drop reclaims no node kept at the end (the end and the
    bill stay), a rise launches nothing more for a fixed cluster the zone had refused."""
    cat = _catalog.default()
    it, z = "ecs.c8i.32xlarge", "cn-hangzhou-h"
    factor = 8 * cat.instance(it).cores / cat.zone(z).capacity[it]
    jobs = P.mixed_workload(300, ai_share=0.0, cpu_nodes=8, gpu_nodes=4, load=1.0, seed=3, max_hpc_nodes=2)
    kw = dict(cpu_nodes=8, gpu_nodes=4, data_nodes=2, zone=z, capacity=factor)
    for extra, factor_late in ((dict(market="spot", min_nodes=1), 0.0), (dict(elastic=False), 2.0)):
        base = P.replay(jobs, "unified", **kw, **extra)
        late = float(jobs["submit"].iloc[0]) + base.makespan + 1e5
        r = P.replay(jobs, "unified", capacity_curve=([late], [factor_late]), **kw, **extra)
        assert (r.makespan, r.cost, len(r.instances)) == (base.makespan, base.cost, len(base.instances)), extra


def test_bad_capacity_curves_are_one_line_errors():
    jobs = P.mixed_workload(50, ai_share=0.3, cpu_nodes=8, gpu_nodes=4, load=0.5, seed=1)
    for curve, msg in ((([0, 10], [1.0]), "equal-length"), (([10, 0], [1, 1]), "non-decreasing"),
                       (([0], [-1.0]), "capacity_curve factors"), ((5,), "(times, factors)")):
        with pytest.raises(HpclabError, match=re.escape(msg)):
            P.replay(jobs, zone="cn-hangzhou-h", capacity_curve=curve)
    with pytest.raises(HpclabError, match="capacity_curve needs a zone"):
        P.replay(jobs, capacity_curve=([0], [1.0]))


# -- the bill ------------------------------------------------------------------------------------

def test_spot_nodes_are_billed_on_the_price_path():
    jobs = P.mixed_workload(400, ai_share=0.3, cpu_nodes=8, gpu_nodes=4, load=0.6, seed=9)
    r = P.replay(jobs, "unified", cpu_nodes=8, gpu_nodes=4, market="spot", reclaim_rate=0.0,
                 spot_market=SpotMarket(prices="path"), seed=3)
    fixed = P.replay(jobs, "unified", cpu_nodes=8, gpu_nodes=4, market="spot", reclaim_rate=0.0)
    cat = _catalog.default()
    total = 0.0
    for row in r.instances.itertuples():
        rec = cat.instance(row.itype)
        billed = max(math.ceil(row.end - row.launch - 1e-9), rec.min_charge)
        starts, prices = r.market.path(row.itype, row.zone, row.launch + billed)
        cost = 0.0  # the integral of the piecewise-constant price, period by period
        bounds = list(starts[1:]) + [math.inf]
        for s0, s1, p in zip(starts, bounds, prices):
            lo, hi = max(s0, row.launch), min(s1, row.launch + billed)
            if hi > lo:
                cost += (hi - lo) * p
        total += cost
        assert row.cost == pytest.approx(cost, rel=1e-9)
    assert r.cost == pytest.approx(total, rel=1e-9)
    assert r.cost != pytest.approx(fixed.cost, rel=1e-3)  # the path moved the price
    assert (r.jobs["start"].to_numpy() == fixed.jobs["start"].to_numpy()).all()


def test_bad_zone_and_market_options_are_one_line_errors():
    jobs = _one_gang()
    with pytest.raises(KeyError, match="unknown zone 'mars-1'"):
        P.replay(jobs, zone="mars-1")
    with pytest.raises(HpclabError, match="zone must be a catalog zone name or a pair"):
        P.replay(jobs, zone=("cn-hangzhou-h",) * 3)
    with pytest.raises(HpclabError, match="reclaim_rate"):
        P.replay(jobs, market="spot", reclaim_rate=-1.0)
    with pytest.raises(HpclabError, match="spot_market must be a SpotMarket"):
        P.replay(jobs, market="spot", spot_market={"model": "independent"})


# -- the scenario file ---------------------------------------------------------------------------

def test_the_spot_platform_scenario_reports_reclaims_and_reruns():
    from hpclab.scenario import Scenario

    s = Scenario.example("platform_spot").replace(workload={"jobs": 600})
    res = s.run()
    summ = res.summary
    assert int(summ["reclaims"]) > 0 and int(summ["rerun_jobs"]) > 0
    assert float(summ["lost_cpu_seconds"]) + float(summ["lost_gpu_seconds"]) > 0
    assert float(summ["cost_usd"]) == pytest.approx(float(res.bill["total_cost"]))
    on_demand = s.replace(pool={"market": "on-demand", "reclaim_rate": None, "spot_market": None}).run()
    assert int(on_demand.summary["reclaims"]) == 0 and int(on_demand.summary["rerun_jobs"]) == 0


# -- placement below the queues ------------------------------------------------------------------

def test_placement_is_a_piece_below_the_queues_that_any_queue_asks(traces):
    from hpclab.elastic.placement import Linear, Placement

    class Counting(Linear):
        def __init__(self):
            self.calls = {}

        def _count(self, name):
            self.calls[name] = self.calls.get(name, 0) + 1

        def plan_whole(self, pool, k):
            self._count("plan_whole")
            return super().plan_whole(pool, k)

        def place_pods(self, pool, count, g, gang):
            self._count("place_pods")
            return super().place_pods(pool, count, g, gang)

        def launch_plan(self, pool, count):
            self._count("launch_plan")
            return super().launch_plan(pool, count)

    mine = Counting()
    res = P.replay(traces["mixed"], "unified", cpu_nodes=32, gpu_nodes=8, placement=mine, seed=2)
    # the same decisions as the named placement, from before placement moved below the queues
    assert digest(res) == BEFORE["linear"]
    assert mine.calls["plan_whole"] > 0 and mine.calls["place_pods"] > 0 and mine.calls["launch_plan"] > 0
    assert digest(P.replay(traces["mixed"], "unified", cpu_nodes=32, gpu_nodes=8,
                           placement=Placement())) == BEFORE["unified"]
    with pytest.raises(HpclabError, match="placement must be one of topology, linear or an object"):
        P.replay(traces["mixed"], placement=42)


def test_the_slowdown_model_lives_in_the_network_layer():
    import hpclab.network as N
    from hpclab.network import placement as net

    assert P.cross_segment_slowdown is N.cross_segment_slowdown is net.cross_segment_slowdown
    one = net.tier_slowdowns("ecs.c8i.32xlarge", {"hpc": (0.3, 256 * 1024)})
    assert one["hpc"][0] == 1.0 and one["hpc"][1] == pytest.approx(
        N.cross_segment_slowdown("erdma", share=0.3, nbytes=256 * 1024, tier="pod"))


def test_the_cli_replays_on_spot_in_a_zone(capsys):
    import json

    from hpclab.cli import main
    from hpclab.platform import sample_traces

    trace = str(sample_traces()["lublin_feitelson_1000.swf"])
    assert main(["platform", "replay", trace, "--market", "spot", "--reclaim-rate", "2e-5",
                 "--cpu-nodes", "64"]) == 0
    assert "spot reclaims" in capsys.readouterr().out
    assert main(["platform", "replay", trace, "--zone", "cn-hangzhou-j", "--cpu-nodes", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(out["data_vars"]["refused"]["data"]) == 0
    assert main(["platform", "replay", trace, "--zone", "mars"]) == 2
    assert "unknown zone 'mars'" in capsys.readouterr().err


def test_a_policy_sees_the_zone_refusals_under_its_pool():
    """A refused launch reaches the pool's policy in ``state.refused``, keyed by the place its
    limits name (the pool), as on the other clocks."""
    from hpclab.elastic.policies import Shortfall

    seen = []

    class Watching(Shortfall):
        def decide(self, state):
            seen.append(dict(state.refused))
            return super().decide(state)

    jobs = P.mixed_workload(300, ai_share=0.4, cpu_nodes=8, gpu_nodes=4, load=0.5, seed=2)
    r = P.replay(jobs, "unified", cpu_nodes=8, gpu_nodes=4, zone=("cn-hangzhou-h", "cn-hangzhou-j"),
                 scaler=Watching(idle_timeout=300.0))
    assert r.pools.loc["gpu", "refused"] > 0
    keys = {k for s in seen for k in s}
    assert ("ecs.ebmgn8is.32xlarge", "gpu") in keys


class _CheckedShortfall:
    """The shortfall policy, checking at every ask that the aggregates a platform pool attaches
    equal :meth:`Aggregates.of` on the instances the same snapshot shows (the reference)."""

    name = "checked-shortfall"
    asks = noticed = 0  # class counters: the platform gives each pool its own copy

    def __init__(self):
        from hpclab.elastic.policies import Shortfall

        self.inner = Shortfall()
        self.triggers = self.inner.triggers
        self.idle_timeout = self.inner.idle_timeout

    def decide(self, state):
        import dataclasses

        from hpclab.elastic.policies import Aggregates, aggregate

        got, ref = aggregate(state), Aggregates.of(state)
        type(self).asks += 1
        type(self).noticed += bool(ref.noticed)
        for f in dataclasses.fields(Aggregates):
            a, b = getattr(got, f.name), getattr(ref, f.name)
            if f.name == "idle":
                a, b = sorted(a), sorted(b)
            assert a == b, f"t={state.time}: {f.name} {a!r} attached, {b!r} from the instances"
        busy_views = sum(i.running_tasks for i in state.instances)
        assert state.running == busy_views, (state.time, state.running, busy_views)
        return self.inner.decide(state)


def test_platform_aggregates_equal_the_reference_with_nodes_under_notice():
    """Nodes under a reclaim notice are not serving and are marked noticed, as on the other
    clocks; running counts the slots busy on them too."""
    jobs = P.mixed_workload(1500, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=0.9, seed=2)
    _CheckedShortfall.asks = _CheckedShortfall.noticed = 0
    P.replay(jobs, "unified", market="spot", reclaim_rate=2 / 3600, spot_market=SpotMarket("independent"),
             scaler=_CheckedShortfall(), max_reruns=50)
    assert _CheckedShortfall.asks > 100
    assert _CheckedShortfall.noticed > 10  # the check ran with noticed nodes in the pool


# -- the scenario's boot and warm nodes per type ---------------------------------------------------

def test_boot_and_min_nodes_per_type_reach_the_pools():
    """``boot`` sets a type's boot seconds and ``min_nodes`` per type keeps that many nodes warm
    from the start to the end; a scenario's pool.boot and pool.min_per_type reach them."""
    jobs = P.mixed_workload(300, ai_share=0.3, cpu_nodes=16, gpu_nodes=4, load=0.7, seed=1)
    cpu_t, gpu_t = "ecs.c8i.32xlarge", "ecs.ebmgn8is.32xlarge"
    r = P.replay(jobs, cpu_nodes=16, gpu_nodes=4, boot={cpu_t: 777.0}, min_nodes={gpu_t: 2})
    inst = r.instances
    cpu, gpu = inst[inst["itype"] == cpu_t], inst[inst["itype"] == gpu_t]
    booted = cpu[cpu["reason"] != "reclaimed while booting"]
    assert len(booted) > 0 and np.allclose(booted["ready"] - booted["launch"], 777.0)
    warm = gpu[(gpu["launch"] == 0.0) & (gpu["ready"] == 0.0)]
    assert len(warm) == 2  # up at the start, no boot
    # never fewer than 2 GPU nodes up (nodes are alike: a warm one may retire once another is up)
    times = np.unique(np.concatenate([gpu["ready"], gpu["end"]]))
    times = times[times < r.makespan]
    up = [((gpu["ready"] <= t) & (gpu["end"] > t)).sum() for t in times]
    assert min(up) >= 2
    gpu_boot = gpu[gpu["ready"] > gpu["launch"]]
    rec = _catalog.default().instance(gpu_t)
    assert np.allclose(gpu_boot["ready"] - gpu_boot["launch"], rec.boot_time)  # the catalog's
    assert r.settings["boot"] == f"{cpu_t}: 777" and r.settings["min_nodes"] == f"{gpu_t}: 2"
    for bad, needle in (({"boot": {"ecs.nope": 1.0}}, "boot: 'ecs.nope' is not one of the pools' types"),
                        ({"boot": {cpu_t: -1.0}}, "boot[ecs.c8i.32xlarge]"),
                        ({"min_nodes": {gpu_t: 1.5}}, "min_nodes[ecs.ebmgn8is.32xlarge]")):
        with pytest.raises(HpclabError, match=re.escape(needle)):
            P.replay(jobs, cpu_nodes=16, gpu_nodes=4, **bad)

    from hpclab.scenario import Scenario

    s = Scenario.example("platform").replace(workload={"jobs": 300},
                                             pool={"boot": {cpu_t: 777.0}, "min_per_type": {gpu_t: 2}})
    res = s.run()
    plain = Scenario.example("platform").replace(workload={"jobs": 300}).run()
    assert res.summary["cost_usd"] > plain.summary["cost_usd"]  # slower boots, two warm GPU nodes


def test_the_simulators_capacity_shortage_runs_on_the_platform():
    """``capacity_noise`` on the platform is the task-bag simulator's seeded shortage (the same
    draws for the same seed, zones and types): a short zone refuses launches, never grants beyond
    the capacity of the interval, and reclaims spot nodes when it shrinks under them; the replay
    still ends, and every job finishes once the shortage passes."""
    import math

    from hpclab import catalog
    from hpclab.elastic.capacity import ShortageNoise
    from hpclab.elastic.simulate import make_workload, simulate
    from hpclab.elastic.state import PoolLimits
    from hpclab.elastic.policies import TargetDuration

    Z, CPU, GPU = "cn-hangzhou-h", "ecs.c8i.32xlarge", "ecs.ebmgn8is.32xlarge"
    cat = catalog.default()
    noise = ShortageNoise.seeded(0.6, (1, 2), 4)
    sim = simulate(TargetDuration(catalog=cat), make_workload(50, seed=1), PoolLimits(types=(CPU, GPU), zones=(Z,)),
                   catalog=cat, seed=4, capacity_noise=0.6)
    for t in (0.0, 3599.0, 3600.0, 20000.0):
        np.testing.assert_array_equal(sim._eng.noise.factor(t), noise.factor(t))
    jobs = P.mixed_workload(400, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=0.7, seed=2)
    kw = dict(cpu_nodes=32, gpu_nodes=8, zone=Z, capacity=0.6, seed=4)  # room for 9 GPU nodes, 8 used
    calm = P.replay(jobs, **kw)
    short = P.replay(jobs, capacity_noise=0.6, **kw)
    assert int(calm.pools["refused"].sum()) == 0 < int(short.pools["refused"].sum())
    assert short.jobs.equals(P.replay(jobs, capacity_noise=0.6, **kw).jobs)  # seeded
    assert (short.jobs["status"] == "done").all() and (calm.jobs["status"] == "done").all()
    assert short.makespan < 2 * calm.makespan and short.settings["capacity_noise"] == 0.6
    inst = short.instances
    for k, itype in enumerate((CPU, GPU)):
        mine = inst[inst["itype"] == itype]
        full = cat.zone(Z).capacity[itype] * 0.6
        for when in mine["launch"].unique():
            alive = int(((mine["launch"] <= when) & ~(mine["end"] <= when)).sum())
            allowed = math.floor(full * float(noise.factor(when)[0, k]) + 1e-9)
            assert alive * cat.instance(itype).cores <= allowed, (itype, when, alive, allowed)
    spot = dict(kw, market="spot", reclaim_rate=0.0)
    assert int(P.replay(jobs, **spot).pools["reclaims"].sum()) == 0
    assert int(P.replay(jobs, capacity_noise=0.6, **spot).pools["reclaims"].sum()) > 0
    for bad, needle in ((dict(capacity_noise=0.5, zone=None), "capacity_noise needs a zone"),
                        (dict(capacity_noise=-1.0), "capacity_noise must be"),
                        (dict(capacity_noise=10.0), r"capacity_noise must be a number in \[0, 2\]"),
                        (dict(capacity_noise=0.5, capacity_interval=0.0), "capacity_interval must be a number of seconds > 0")):
        with pytest.raises(HpclabError, match=needle):
            P.replay(jobs, **{**kw, **bad})


def test_a_shortage_ends_with_the_work_that_can_still_start():
    """After the last job the shortage is followed only for work its zone could start at full
    capacity: a gang larger than the zone (12 GPU nodes where 8 fit) does not keep the replay
    going; and a fixed spot cluster that a shortage shrank asks for its nodes again whenever
    cores free, so its runnable jobs all end (review of stop 16: it stayed short and 9 jobs were
    left unfinished)."""
    from hpclab.platform.jobs import jobs_frame

    jobs = jobs_frame(submit=[0, 10], pods=[2, 12], run_time=[100, 100], kind=["hpc", "train"])
    r = P.replay(jobs, cpu_nodes=4, gpu_nodes=16, zone="cn-hangzhou-h", capacity=0.5, capacity_noise=2.0,
                 min_nodes=1)
    assert r.jobs["status"].tolist() == ["done", "unfinished"] and r.makespan < 4 * 3600
    mixed = P.mixed_workload(300, ai_share=0.3, cpu_nodes=32, gpu_nodes=8, load=0.7, seed=2)
    fixed = P.replay(mixed, policy="separate", cpu_nodes=32, gpu_nodes=8, zone=("cn-hangzhou-h", "cn-beijing-l"),
                     gpu_type="gpu.8xh100", capacity=0.6, capacity_noise=2.0, market="spot", seed=4)
    assert set(fixed.jobs["status"]) <= {"done", "failed"} and int(fixed.pools["reclaims"].sum()) > 0
