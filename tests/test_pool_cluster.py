"""Pools over clusters someone else started: real ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1 (random ports, cleaned up), and a ``LocalCluster`` object."""

from __future__ import annotations

import time

import pytest
from distributed import Client, LocalCluster

from hpclab.elastic import AttachedPool, SpotFaults
from hpclab.elastic.state import LIFECYCLE

pytestmark = pytest.mark.timeout(180)


def inc(x):
    time.sleep(0.01)
    return x + 1


def square(x):
    time.sleep(0.01)
    return x * x


@pytest.fixture
def two_workers(dask_processes):
    """A `dask scheduler` and two `dask worker` processes (with nannies) on 127.0.0.1
    (conftest.py ``dask_processes``): the address and the processes, scheduler first."""
    for k in range(2):
        dask_processes.add(f"wk-{k}")
    dask_processes.wait(2)
    return dask_processes.address, dask_processes.procs


def test_attached_pool_over_real_scheduler_and_worker_processes(two_workers):
    address, procs = two_workers
    with AttachedPool(address, itype="ecs.c7.8xlarge", zone="cn-beijing-l", market="spot",
                      time_scale=0.01) as pool, Client(pool) as client:
        assert client.scheduler.address == address
        assert len(pool.running()) == 2
        assert client.gather(client.map(inc, range(50))) == list(range(1, 51))
        state = pool.snapshot()
        assert state.done >= 50 and state.count() == 2 and state.cores() == 2
        # a reclaim notice retires one worker gracefully: its data moves, its process exits
        futures = client.map(square, range(20))
        client.gather(futures)
        first = pool.running()[0]
        pool.preempt(first, notice=600.0)
        pool.wait_for(lambda p: p.records[first].state == "terminated", 60)
        assert client.gather(futures) == [x * x for x in range(20)]
        assert len(client.scheduler_info()["workers"]) == 1
        # a hard kill ends the other worker's process; its nanny starts a new one, which the
        # pool counts as a new instance
        (second,) = pool.running()
        pool.preempt(second, notice=0)
        pool.wait_for(lambda p: len(p.running()) == 1 and second not in p.running(), 120)
        assert client.gather(client.map(inc, range(10, 20))) == list(range(11, 21))
        assert client.gather(futures) == [x * x for x in range(20)]  # recomputed where lost
        df = pool.log.to_frame()
        assert set(df[df.state == "terminated"].reason) >= {"spot-notice", "spot-reclaim"}
        bill = pool.bill()
        assert bill["total_cost"].item() > 0
        assert bill["instances"].sel(market="spot").sum().item() == 3
    # the retired worker's process exits; the scheduler and the restarted worker still run
    end = time.monotonic() + 60
    while sum(p.poll() is None for p in procs) > 2 and time.monotonic() < end:
        time.sleep(0.2)
    assert sum(p.poll() is None for p in procs) == 2


class Burst:
    name = "burst"

    def decide(self, state):
        from hpclab.elastic.state import Decision, Launch

        serving = [i for i in state.instances if i.state != "draining" and not i.notice]
        if state.queued + state.running:
            k = 2 - len(serving)
            return Decision(launch=(Launch("ecs.c8i.8xlarge", "cn-hangzhou-h", "on-demand", k),)
                            if k > 0 else ())
        return Decision(retire=tuple(i.id for i in serving if i.running_tasks == 0))


def test_attached_pool_scales_a_local_cluster_object_with_a_policy():
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp://", dashboard_address=None) as cluster, \
            AttachedPool(cluster, time_scale=0.01, policy=Burst(), interval=0.05) as pool, \
            Client(pool) as client:
        assert pool.can_scale and pool.running() == []
        assert client.gather(client.map(inc, range(40))) == list(range(1, 41))
        assert 1 <= len(pool.records) <= 2
        pool.wait_for(lambda p: not p.alive(), 30)
        pool.wait_for(lambda p: not cluster.scheduler_info["workers"], 30)
        for rec in pool.records.values():
            states = list(pool.log.to_frame().query("instance == @rec.id").state)
            # in order; a retirement refused while results were still held goes back to running
            assert states[:3] + states[-2:] == list(LIFECYCLE)
            assert set(states[3:-2]) <= {"draining", "running"}


def test_attached_pool_bad_target():
    from hpclab import HpclabError

    with pytest.raises(HpclabError, match="target must be a scheduler address or a Dask cluster"):
        AttachedPool(42)
    with pytest.raises(HpclabError, match="rate"):
        AttachedPool("tcp://127.0.0.1:1", faults=SpotFaults(rate=-2))
