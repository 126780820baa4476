"""ElasticPool on real Dask workers: lifecycle, policies, faults, billing, bad configurations.

Pools here are small (at most 2 instances of 1 thread) and fast (time_scale 0.01: a 40 s boot
takes 0.4 s). No scheduler is mocked.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
from distributed import Client, wait

from hpclab import HpclabError, catalog
from hpclab.elastic import events as ev
from hpclab.elastic.faults import Preemption, SpotFaults
from hpclab.elastic.pool import ElasticPool
from hpclab.elastic.state import LIFECYCLE, Decision, Launch, PoolLimits

pytestmark = pytest.mark.timeout(120)

C8I = "ecs.c8i.8xlarge"
C7 = "ecs.c7.8xlarge"
ZONE = "cn-hangzhou-h"


class Burst:
    """A tiny policy for these tests: hold ``n`` serving instances while work is pending,
    replace instances under notice, retire idle ones when there is no work."""

    name = "burst"

    def __init__(self, n=2, itype=C8I, zone=ZONE, market="on-demand"):
        self.n, self.itype, self.zone, self.market = n, itype, zone, market

    def decide(self, state):
        serving = [i for i in state.instances
                   if i.state in ("requested", "booting", "running") and not i.notice]
        if state.queued + state.running > 0:
            k = self.n - len(serving)
            if k > 0:
                return Decision(launch=(Launch(self.itype, self.zone, self.market, k),),
                                reason="burst")
            return Decision()
        idle = tuple(i.id for i in serving if i.state == "running" and i.running_tasks == 0)
        return Decision(retire=idle, reason="idle")


def slow_inc(x, delay=0.02):
    time.sleep(delay)
    return x + 1


def slow_add(a, b, delay=0.05):
    time.sleep(delay)
    return a + b


def states_of(pool, instance):
    df = pool.log.to_frame()
    return list(df.loc[df.instance == instance, "state"])


def wait_empty(pool, timeout=30):
    pool.wait_for(lambda p: not p.alive(), timeout)


# -- lifecycle --------------------------------------------------------------------------------
def test_scale_0_to_2_to_0_with_a_policy_and_full_lifecycle():
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, policy=Burst(2),
                     interval=0.05) as pool, Client(pool) as client:
        assert pool.alive() == []
        futures = client.map(slow_inc, range(40))
        assert client.gather(futures) == list(range(1, 41))
        assert len(pool.records) == 2  # the policy grew the pool to exactly 2
        del futures
        wait_empty(pool)
        for rec in pool.records.values():
            states = states_of(pool, rec.id)
            # in order; a retirement refused while the client still held results on the
            # instance sends it back from draining to running
            assert states[:3] + states[-2:] == list(LIFECYCLE)
            assert all(pair == ("draining", "running") for pair in zip(*[iter(states[3:-2])] * 2)
                       ) and len(states[3:-2]) % 2 == 0
            assert rec.running_at - rec.launched_at >= 0.5 * rec.boot_seconds
        assert len(client.scheduler_info()["workers"]) == 0


class Stall(Burst):
    """Burst, but its third decision blocks the pool's event loop for ``pause`` wall seconds."""

    def __init__(self, pause):
        super().__init__(1)
        self.pause, self.calls = pause, 0

    def decide(self, state):
        self.calls += 1
        if self.calls == 3:
            time.sleep(self.pause)  # the stall under test (blocks the event loop)
        return super().decide(state)


def test_the_policy_loop_measures_how_late_it_runs():
    """A pause of the process delays the next policy call: the adaptive keeps the largest delay
    beyond its interval (wall seconds), and a steady loop keeps it small."""
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, policy=Stall(0.6),
                     interval=0.05) as pool:
        pool.wait_for(lambda p: p.policy.calls >= 6, 30)
        lag = pool._adaptive.max_lag
    assert 0.45 <= lag < 5.0
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, policy=Stall(0.0),
                     interval=0.05) as pool:
        pool.wait_for(lambda p: p.policy.calls >= 6, 30)
        assert pool._adaptive.max_lag < 0.45


def test_boot_delay_is_sampled_from_the_catalog_and_scaled_to_wall_time():
    inst = catalog.default().instance(C8I)
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, seed=3) as pool:
        t0 = time.monotonic()
        (i,) = pool.launch(count=1)
        pool.wait_for(lambda p: p.records[i].state == "running", 20)
        wall = time.monotonic() - t0
        rec = pool.records[i]
        # the sampled delay is a draw around the catalog boot time; its wall sleep is scaled
        assert 0.2 * inst.boot_time < rec.boot_seconds < 3 * inst.boot_time
        assert wall >= rec.boot_seconds * 0.01
        assert rec.running_at - rec.launched_at >= rec.boot_seconds
    # many draws: mean and sd of the catalog (lognormal with matched moments)
    from hpclab.elastic._pool_core import sample_boot_seconds

    rng = np.random.default_rng(0)
    draws = np.array([sample_boot_seconds(inst.boot_time, inst.boot_time_sd, rng)
                      for _ in range(20000)])
    assert draws.mean() == pytest.approx(inst.boot_time, rel=0.02)
    assert draws.std() == pytest.approx(inst.boot_time_sd, rel=0.05)
    assert draws.min() > 0


def test_a_fixed_boot_replaces_the_catalog_draw():
    """``boot`` (a scenario's ``pool.boot``) fixes the delay, as it does on the virtual clock."""
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, boot={C8I: 7.5}) as pool:
        (i,) = pool.launch(count=1)
        pool.wait_for(lambda p: p.records[i].state == "running", 20)
        rec = pool.records[i]
        assert rec.boot_seconds == 7.5
        assert rec.running_at - rec.launched_at >= 7.5


def test_worker_processes_boot_from_a_warm_fork_server_inside_the_boot_delay():
    """Worker processes start when the boot starts and register at its end, with the preload
    modules imported: a first task finds them there, and Dask's start method is put back when
    the pool closes."""
    import multiprocessing
    import sys

    import dask

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    key = "distributed.worker.multiprocessing-method"
    before = dask.config.get(key)
    mod = "hpclab.workloads.screening.pipeline"
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=True, boot={C8I: 60.0},
                     preload=(mod,)) as pool, Client(pool) as client:
        assert dask.config.get(key) == "forkserver"
        (i,) = pool.launch(count=1)
        pool.wait_for(lambda p: p.records[i].state == "running", 30)
        rec = pool.records[i]
        assert rec.running_at - rec.launched_at >= 60.0  # never registers before the boot ends
        assert client.submit(lambda: mod in sys.modules, pure=False).result(timeout=30)
        # forked by the server: a spawned worker's parent would be this process (its nanny's)
        assert client.submit(os.getppid, pure=False).result(timeout=30) != os.getpid()
    assert dask.config.get(key) == before


def test_retiring_or_closing_a_booting_instance_leaves_no_worker_process():
    """A worker process forked for a boot (asleep in its preload until the boot ends) is killed
    with its instance: no worker registers later, on a retirement or on closing the pool."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=True, boot={C8I: 150.0}) as pool:
        (i,) = pool.launch(count=1)
        inst = pool.workers  # SpecCluster's process objects, by instance id
        pool.wait_for(lambda p: i in inst and inst[i].worker is not None
                      and inst[i].worker.pid, 20, poll=0.01)
        pid = inst[i].worker.pid
        pool.retire([i])
        pool.wait_for(lambda p: p.records[i].state == "terminated", 20)
        time.sleep(2.0)  # past the end of its boot (1.5 s)
        assert not pool.scheduler_info["workers"]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        (j,) = pool.launch(count=1)
        pool.wait_for(lambda p: j in inst and inst[j].worker is not None and inst[j].worker.pid, 20,
                      poll=0.01)
        pid = inst[j].worker.pid
    time.sleep(2.0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_start_method_the_user_chose_is_kept():
    import dask

    key = "distributed.worker.multiprocessing-method"
    with dask.config.set({key: "fork"}):
        with ElasticPool(C8I, ZONE, time_scale=0.01, processes=True) as pool:
            assert dask.config.get(key) == "fork" and not pool._forkserver
        assert dask.config.get(key) == "fork"


@pytest.mark.parametrize("kw, match", [
    ({"boot": {C7: 10.0}}, r"boot names 'ecs.c7.8xlarge', which is not in the pool's types"),
    ({"boot": {C8I: -1.0}}, r"boot\[ecs.c8i.8xlarge\] must be"),
    ({"preload": ("os; rm",)}, r"preload must be module names"),
    ({"preload": ("hpclab.no_such_module",)}, r"preload: no module named 'hpclab.no_such_module'"),
])
def test_bad_boot_or_preload_gives_one_line(kw, match):
    with pytest.raises(HpclabError, match=match):
        ElasticPool(C8I, ZONE, processes=False, **kw)


def test_a_failing_policy_stops_the_real_pool_with_its_one_line():
    """A policy's decide() runs in a periodic callback, where an exception is only logged: the pool
    keeps the one-line error, stops asking, and the next snapshot() or wait_for() raises it."""
    class Broken:
        name = "broken"

        def decide(self, state):
            raise ZeroDivisionError("division by zero")

    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, policy=Broken(), interval=0.05) as pool:
        with pytest.raises(HpclabError, match=r"policy 'broken' failed at pool time .* ZeroDivisionError"):
            pool.wait_for(lambda p: False, timeout=20)
        with pytest.raises(HpclabError, match="policy 'broken' failed"):
            pool.snapshot()
        assert isinstance(pool.policy_error.__cause__, ZeroDivisionError)


def test_the_real_pool_grants_what_the_zone_capacity_rule_grants():
    """A scenario's pool.capacity and pool.spot_capacity hold on the real pool as on the virtual
    clocks (capacity.grantable): room for 2 instances, 1 of them on spot."""
    from hpclab import catalog as _catalog
    from hpclab.elastic.capacity import grantable

    cat = _catalog.default()
    cores = cat.instance(C8I).cores
    factor = 2 * cores / cat.zone(ZONE).capacity[C8I]
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, capacity=factor, spot_capacity=0.5,
                     boot={C8I: 1000.0}) as pool:
        assert len(pool.apply(Decision(launch=(Launch(C8I, ZONE, "spot", 2),)))) == 1
        assert (C8I, ZONE, "spot") in pool.refused and (C8I, ZONE) not in pool.refused
        assert len(pool.apply(Decision(launch=(Launch(C8I, ZONE, "on-demand", 3),)))) == 1
        assert (C8I, ZONE) in pool.refused
        assert pool.apply(Decision(launch=(Launch(C8I, ZONE, "on-demand", 1),))) == []
    # the same answers from the rule itself
    cap = math.floor(cat.zone(ZONE).capacity[C8I] * factor + 1e-9)
    assert grantable(2, cap, 0, cores, spot=True, spot_capacity=0.5) == (1, "spot")
    assert grantable(3, cap, cores, cores) == (1, "zone")
    with pytest.raises(HpclabError, match="spot_capacity must be a number in"):
        ElasticPool(C8I, ZONE, processes=False, spot_capacity=2.0)


def test_mixed_pool_types_zones_markets_resources_and_limits():
    gpu = "ecs.ebmgn8is.32xlarge"
    limits = PoolLimits(types=(C8I, C7, gpu), zones=(ZONE, "cn-shanghai-m"),
                        max_per_type={C7: 1}, quota_cores=3)
    with ElasticPool(limits=limits, time_scale=0.01, processes=False,
                     threads={C8I: 1, C7: 1, gpu: 1}) as pool, Client(pool) as client:
        # zone capacity: the GPU type is not offered in cn-shanghai-m -> refused and recorded
        assert pool.apply(Decision(launch=(Launch(gpu, "cn-shanghai-m", "on-demand", 1),))) == []
        assert (gpu, "cn-shanghai-m") in pool.refused
        new = pool.apply(Decision(launch=(Launch(C8I, "cn-shanghai-m", "spot", 1),
                                          Launch(C7, ZONE, "on-demand", 2),
                                          Launch(gpu, ZONE, "on-demand", 1))))
        assert len(new) == 3  # C7 capped at 1 by max_per_type
        kinds = {(pool.records[i].itype, pool.records[i].zone, pool.records[i].market) for i in new}
        assert kinds == {(C8I, "cn-shanghai-m", "spot"), (C7, ZONE, "on-demand"),
                         (gpu, ZONE, "on-demand")}
        # the quota of 3 cores is full: nothing more starts
        assert pool.launch(C8I, ZONE) == []
        pool.wait_for(lambda p: len(p.running()) == 3, 30)
        info = client.scheduler_info()["workers"]
        by_name = {w["name"]: w for w in info.values()}
        g = next(i for i in new if pool.records[i].itype == gpu)
        assert by_name[g]["resources"] == {"GPU": 8}
        cat = catalog.default()
        c = next(i for i in new if pool.records[i].itype == C8I)
        assert by_name[c]["memory_limit"] == int(cat.instance(C8I).memory / cat.instance(C8I).vcpus)
        # a GPU task goes only to the GPU instance
        fut = client.submit(lambda: "gpu", resources={"GPU": 1})
        assert fut.result() == "gpu"
        addr = next(a for a, w in info.items() if w["name"] == g)
        assert client.who_has(fut)[fut.key] == (addr,)
        state = pool.snapshot()
        assert state.count() == 3 and state.cores() == 3
        assert state.slots[C8I] == 1


@pytest.mark.parametrize("name", ["target-duration", "spot-first", "global", "deadline-budget",
                                  "hysteresis"])
def test_each_policy_scales_0_to_n_to_0(name):
    from hpclab.elastic import policies

    if name == "deadline-budget":
        policy = policies.make_policy(name, deadline=600.0, budget=10.0, target_duration=5.0)
    elif name == "hysteresis":
        policy = policies.make_policy("target-duration", hysteresis=True, wait=20.0,
                                      cooldown=20.0, target_duration=5.0)
    else:
        policy = policies.make_policy(name, target_duration=5.0)
    limits = PoolLimits(types=(C8I,), zones=(ZONE,), max_per_type={C8I: 2})
    with ElasticPool(limits=limits, time_scale=0.01, processes=False, policy=policy,
                     interval=0.05) as pool, Client(pool) as client:
        futures = client.map(slow_inc, range(40), delay=0.02)
        assert client.gather(futures) == list(range(1, 41))
        assert 1 <= max_alive(pool) <= 2  # grew from 0, within max_per_type
        del futures
        wait_empty(pool, 30)
        assert all(r.state == "terminated" for r in pool.records.values())


def max_alive(pool):
    df = pool.log.to_frame().sort_values("time", kind="stable")
    alive = peak = 0
    for s in df.state:
        alive += s == "requested"
        alive -= s == "terminated"
        peak = max(peak, alive)
    return peak


def test_graceful_scale_down_moves_data_off():
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, n_instances=2) as pool, \
            Client(pool) as client:
        pool.wait_for(lambda p: len(p.running()) == 2, 20)
        futures = client.map(slow_inc, range(20), delay=0.0)
        wait(futures)
        pool.scale(1)
        pool.wait_for(lambda p: len(p.alive()) == 1, 20)
        # the data of the retired instance moved to the one that stays: nothing recomputed
        assert client.gather(futures) == list(range(1, 21))
        assert pool.snapshot().done == 20
        df = pool.log.to_frame()
        assert (df.state == "draining").sum() == 1


# -- faults ------------------------------------------------------------------------------------
def run_two_stage(client, n=8):
    stage1 = client.map(slow_inc, range(n), delay=0.1, key=[f"s1-{i}" for i in range(n)])
    wait(stage1)
    stage2 = [client.submit(slow_add, a, b, delay=0.3, key=f"s2-{i}")
              for i, (a, b) in enumerate(zip(stage1, stage1[1:] + stage1[:1]))]
    return stage1, stage2


def expected_two_stage(n=8):
    s1 = [x + 1 for x in range(n)]
    return s1, [a + b for a, b in zip(s1, s1[1:] + s1[:1])]


def test_hard_kill_mid_task_recomputes_lost_results():
    """SIGKILL a worker process while it runs a task and holds results only it has."""
    with ElasticPool(C8I, ZONE, market="spot", time_scale=0.01, processes=True,
                     policy=Burst(2, market="spot"), interval=0.05) as pool, \
            Client(pool) as client:
        stage1, stage2 = run_two_stage(client)

        def victim(p):  # a running instance busy with stage 2 that holds stage-1 results
            proc = client.processing()
            holders = {a for ws in client.who_has(stage1).values() for a in ws}
            return next((i for i in p.running() if proc.get(p.records[i].address)
                         and p.records[i].address in holders), None)

        pool.wait_for(victim, 60, poll=0.01)
        v = victim(pool)
        pool.preempt(v, notice=0)  # hard kill at once
        s1, s2 = expected_two_stage()
        assert client.gather(stage2) == s2
        assert client.gather(stage1) == s1
        df = pool.log.to_frame()
        end = df[(df.instance == v) & (df.state == "terminated")]
        assert list(end.reason) == ["spot-reclaim"]
        assert len(pool.records) >= 3  # the policy replaced the lost capacity


def test_scripted_spot_notices_drain_then_kill_and_results_match_fault_free():
    # two reclaims: the first with a long notice (graceful drain), the second with a notice
    # too short to finish the running task (hard kill at the end of the notice)
    faults = SpotFaults(times=(Preemption(at=0.0, notice=600.0), Preemption(at=0.0, notice=5.0)))
    with ElasticPool(C8I, ZONE, market="spot", time_scale=0.01, processes=False, faults=faults,
                     policy=Burst(2, market="spot"), interval=0.05) as pool, \
            Client(pool) as client:
        stage1, stage2 = run_two_stage(client)
        s1, s2 = expected_two_stage()
        assert client.gather(stage2) == s2
        assert client.gather(stage1) == s1
        pool.wait_for(lambda p: sum(r.notice for r in p.records.values()) == 2, 30)
        df = pool.log.to_frame()
        notices = df[(df.state == "draining") & (df.reason == "spot-notice")]
        assert len(notices) == 2 and notices.instance.nunique() == 2
        assert len(pool.records) >= 4  # both replaced


def test_fault_model_is_seeded_and_exponential():
    def draws(seed, rate=2.0, n=4000):
        s = SpotFaults(rate=rate, seed=seed).schedule()
        for k in range(n):
            s.on_running(f"i-{k}", "spot", 0.0)
        return np.array([s._next[f"i-{k}"][0] for k in range(n)])

    a, b = draws(7), draws(7)
    assert np.array_equal(a, b) and not np.array_equal(a, draws(8))
    # exponential with rate 2 per hour: mean 1800 s; P(T > 1 h) = e^-2
    assert a.mean() == pytest.approx(1800.0, rel=0.05)
    assert (a > 3600).mean() == pytest.approx(math.exp(-2), abs=0.02)
    # on-demand instances are not reclaimed; failures hit any market, without notice
    s = SpotFaults(rate=2.0, failure_rate=1.0, seed=1).schedule()
    s.on_running("od", "on-demand", 0.0)
    (fault,) = s.due(1e9, [("od", "on-demand", 0.0)])
    assert fault.reason == "failure" and fault.notice == 0.0
    # a scripted preemption hits the longest-running spot instance, once
    s = SpotFaults(times=(10.0,)).schedule()
    running = [("a", "spot", 5.0), ("b", "spot", 1.0), ("c", "on-demand", 0.0)]
    assert s.due(9.0, running) == []
    (f,) = s.due(10.0, running)
    assert f.instance == "b" and f.notice is None
    assert s.due(11.0, running) == []


def test_random_reclaims_at_a_high_rate_lose_nothing():
    # one reclaim per instance per 60 pool seconds (0.6 s wall) on average, 20 s notices; with
    # seed 6 the first two instances are reclaimed 46 and 50 pool seconds after they run
    faults = SpotFaults(rate=60.0, notice=20.0, seed=6)
    with ElasticPool(C8I, ZONE, market="spot", time_scale=0.01, processes=False, faults=faults,
                     policy=Burst(2, market="spot"), interval=0.05) as pool, \
            Client(pool) as client:
        futures = client.map(slow_inc, range(80), delay=0.03)
        assert client.gather(futures) == list(range(1, 81))
        df = pool.log.to_frame()
        assert ((df.state == "draining") & (df.reason == "spot-notice")).sum() >= 2


# -- billing and the event log ----------------------------------------------------------------
def test_bill_matches_an_independent_computation_from_the_event_log():
    cat = catalog.default()
    with ElasticPool(limits=PoolLimits(types=(C8I, C7), zones=(ZONE,)), time_scale=0.01,
                     processes=False) as pool:
        pool.launch(C8I, ZONE, "spot", 1)
        pool.launch(C7, ZONE, "on-demand", 1)
        pool.wait_for(lambda p: len(p.running()) == 2, 20)
        time.sleep(1.0)  # 100 pool seconds: past the 60 s minimum charge
        pool.scale(0)
        wait_empty(pool)
        ds = pool.events()
        bill = pool.bill()
    # by hand: billed from the first booting/running/draining record until terminated,
    # whole seconds rounded up, at least min_charge, at the market's price
    expected = {}
    for inst in set(ds.instance.values):
        rows = ds.where(ds.instance == inst, drop=True)
        states = list(rows.state.values)
        times = rows.time.values
        start = min(t for t, s in zip(times, states) if s in ("booting", "running", "draining"))
        end = max(t for t, s in zip(times, states) if s == "terminated")
        itype, market = str(rows.itype.values[0]), str(rows.market.values[0])
        it = cat.instance(itype)
        price = it.price_spot if market == "spot" else it.price_on_demand
        expected[(itype, market)] = max(math.ceil(end - start), it.min_charge) * price
    assert bill["total_cost"].item() == pytest.approx(sum(expected.values()), rel=1e-12)
    for (itype, market), usd in expected.items():
        assert bill["cost"].sel(itype=itype, zone=ZONE, market=market).item() == pytest.approx(usd)
    assert bill["cost"].attrs["units"] == "USD"
    # what the policies see (spent, from the records) is the same meter
    assert pool.spent() == pytest.approx(bill["total_cost"].item(), rel=1e-12)
    until = float(ds.time.values[len(ds.time) // 2])
    assert pool.spent(until) == pytest.approx(pool.bill(until)["total_cost"].item(), rel=1e-12)


def test_event_log_dataset():
    with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, n_instances=1) as pool:
        pool.wait_for(lambda p: len(p.running()) == 1, 20)
    ds = pool.events()
    assert ds.time.dims == ("event",) and ds.time.attrs["units"] == "s"
    assert set(ev.COLUMNS) <= set(ds.data_vars)
    assert list(ds.state.values) == list(LIFECYCLE)
    assert np.all(np.diff(ds.time.values) >= 0)
    table = ev.instance_table(ds)
    assert table.loc["i-0000", "running"] > table.loc["i-0000", "booting"]
    counts = pool.log.counts()
    assert counts["count"].sum() == len(LIFECYCLE)


# -- bad configurations -----------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: ElasticPool("ecs.nope", ZONE), r"unknown instance 'ecs.nope'.*ecs.c8i.8xlarge"),
    (lambda: ElasticPool(C8I, "mars-1"), r"unknown zone 'mars-1'"),
    (lambda: PoolLimits(types=(C8I,), zones=(ZONE,), min_per_type={C8I: 3},
                        max_per_type={C8I: 1}), r"max_per_type\[ecs.c8i.8xlarge\] must be >= "),
    (lambda: SpotFaults(rate=-1.0), r"rate .* must be a finite number >= 0, got -1"),
    (lambda: PoolLimits(types=(C8I,), zones=(ZONE,), quota_cores=0), r"quota_cores must be"),
    (lambda: ElasticPool(C8I, ZONE, time_scale=0), r"time_scale must be a finite number > 0"),
    (lambda: ElasticPool(C8I, ZONE, threads=64), r"threads\[ecs.c8i.8xlarge\] must be <= its vCPUs"),
    (lambda: ElasticPool("lingjun.8xh800", ZONE), r"offered in none of the zones"),
    (lambda: ElasticPool(C8I, ZONE, market="reserved"), r"market must be one of on-demand, spot"),
    (lambda: ElasticPool(C8I, ZONE, policy="fast"), r"policy must have a decide\(state\) method"),
    (lambda: SpotFaults(times=(-5.0,)), r"Preemption.at must be a finite number >= 0"),
])
def test_bad_configurations_give_one_clear_line(make, match):
    with pytest.raises((HpclabError, KeyError)) as info:
        make()
    msg = str(info.value)
    assert "\n" not in msg
    import re

    assert re.search(match, msg), msg


# -- the burst demo, the CLI and the views ----------------------------------------------------
@pytest.fixture(scope="module")
def burst():
    from hpclab.elastic import run_burst

    from hpclab.viz.pools import PoolView

    view = PoolView()
    run = run_burst(300, 1.0, zones=("cn-hangzhou-h", "cn-shanghai-m"), preemptions=2,
                    on_update=view.update)
    return run, view


def test_burst_grows_from_zero_survives_two_reclaims_and_shrinks_to_zero(burst):
    run, _ = burst
    assert run.correct and run.n_tasks == 300
    assert run.preemptions == 2
    counts = run.event_counts()["events"]
    assert counts["requested"] == counts["terminated"] == run.instances >= 3
    ds = run.events
    assert ds.time.values[0] > 0 and ds.state.values[0] == "requested"  # grew from zero
    assert run.bill_table()["cost_usd"].iloc[-1] == pytest.approx(run.total_cost)
    assert run.summary()["total_cost"].attrs["units"] == "USD"


def test_live_view_updates_in_place_and_matches_the_bill(burst):
    from hpclab.viz import pools

    run, view = burst
    assert view.updates >= 3
    data = view.sources["timeline"].data
    assert set(data["state"]) <= {"requested", "booting", "running", "draining"}
    assert len(set(data["instance"])) == run.instances
    assert view.sources["cost"].data["y"][-1] == pytest.approx(run.total_cost, rel=1e-9)
    cost = pools.cost_data(run.events, points=50)
    assert np.all(np.diff(cost["y"]) >= 0)
    assert pools.timeline_figure(run.events) is not None


def test_panel_runs_a_burst_when_clicked(burst):
    from hpclab.viz import pools

    run, _ = burst
    panel = pools.pool_panel(run, n_tasks=100, max_instances=1)
    assert "300 tasks" in panel.summary.value and "USD" in panel.bill.value
    panel.widgets["policy"].value = "target-duration"
    panel.widgets["types"].value = ("ecs.c7.8xlarge",)
    panel.widgets["n_tasks"].value = 100
    panel.button.click()
    assert panel.last is not None and panel.last.n_tasks == 100 and panel.last.correct
    assert set(panel.last.events.itype.values) == {"ecs.c7.8xlarge"}
    assert panel.view.updates >= 1


def test_cli_pool_demo(capsys):
    from hpclab.cli import main

    assert main(["pool", "demo", "--tasks", "100", "--preemptions", "1"]) == 0
    out = capsys.readouterr().out
    assert "100 tasks" in out and "results correct" in out and "bill (USD)" in out
    assert "terminated" in out
    assert main(["pool", "demo", "--types", "ecs.nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown instance 'ecs.nope'" in err


def test_asynchronous_pool():
    import asyncio

    async def main():
        async with ElasticPool(C8I, ZONE, time_scale=0.01, processes=False, policy=Burst(2),
                               interval=0.05, asynchronous=True) as pool:
            async with Client(pool, asynchronous=True) as client:
                assert await client.gather(client.map(slow_inc, range(20))) == list(range(1, 21))
                assert (await pool.snapshot_async()).done == 20
                await pool.retire(pool.running())  # the user's retire is not held back
                for _ in range(200):
                    if not pool.alive():
                        break
                    await asyncio.sleep(0.05)
                assert not pool.alive()
        return pool

    pool = asyncio.run(main())
    assert len(pool.records) == 2


def test_min_per_type_starts_with_the_pool_and_is_never_retired():
    limits = PoolLimits(types=(C8I, C7), zones=(ZONE,), min_per_type={C7: 1},
                        max_per_type={C8I: 1, C7: 1})
    with ElasticPool(limits=limits, time_scale=0.01, processes=False, policy=Burst(1),
                     interval=0.05) as pool, Client(pool) as client:
        (floor,) = [r.id for r in pool.records.values() if r.itype == C7]
        assert client.gather(client.map(slow_inc, range(20))) == list(range(1, 21))
        pool.wait_for(lambda p: all(r.state == "terminated" for r in p.records.values()
                                    if r.itype == C8I), 30)
        time.sleep(0.3)  # several more policy ticks asking to retire the idle floor instance
        assert pool.records[floor].state == "running"
        pool.retire(floor)
        time.sleep(0.2)
        assert pool.records[floor].state == "running"
        assert states_of(pool, floor) == ["requested", "booting", "running"]


def test_a_burst_from_a_scenario_file():
    """run_burst(scenario=...): the file's burst, pool and policy on a real pool, with scripted
    reclaims on top; the same call with the file's own keywords is refused (one line)."""
    from hpclab import Scenario
    from hpclab.elastic import run_burst

    s = Scenario.example("burst_spot").replace(workload={"tasks": 300})
    run = run_burst(scenario=s, preemptions=1)
    assert run.correct and run.n_tasks == 300
    assert run.preemptions == 1
    bill = run.bill_table()
    assert set(bill.loc[bill.itype != "total", "zone"]) <= set(s.pool["zones"])
    assert int(bill.loc[bill.itype != "total", "instances"].sum()) == run.instances
    with pytest.raises(HpclabError, match=r"run_burst: scenario= describes .*; policy, types must be left out"):
        run_burst(scenario=s, policy="global", types=(C7,))
    with pytest.raises(HpclabError, match=r"workload: a burst is kind: tasks with duration: fixed"):
        run_burst(scenario=Scenario.example("burst"))
    with pytest.raises(HpclabError, match=r"pool_kwargs: processes, time_scale come from the scenario"):
        run_burst(scenario=s, pool_kwargs={"time_scale": 1.0, "processes": True})
    remote = s.replace(cluster={"kind": "address", "address": "tcp://127.0.0.1:1"})
    with pytest.raises(HpclabError, match=r"cluster.kind: a burst on a cluster of kind address takes no scripted"):
        run_burst(scenario=remote, preemptions=2)
