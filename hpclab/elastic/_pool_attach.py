"""``AttachedPool``: an ElasticPool's accounting, faults and policies over a Dask cluster that
someone else started (a scheduler address, or a cluster object that can scale)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pickle

from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster
from tornado.ioloop import PeriodicCallback

from hpclab._validate import HpclabError, check_positive
from hpclab.elastic._pool_core import PoolAccounting, scheduler_view
from hpclab.elastic._pool_instance import InstanceRecord
from hpclab.elastic.state import Launch, PoolLimits

logger = logging.getLogger("hpclab.elastic.pool")

__all__ = ["AttachedPool"]


class AttachedPool(PoolAccounting, Cluster):
    """Wrap a running Dask cluster: every worker counts as one instance of ``itype`` in ``zone``.

    The pool records each worker's lifecycle from the moment it joins the scheduler (``running``)
    to the moment it leaves (``draining``, ``terminated``), bills it per second, injects faults
    (a reclaim notice retires the worker gracefully; a hard kill ends its process with
    ``os._exit``: a nanny, if it has one, starts a new worker, which the pool sees as a new
    instance) and runs a policy. Launches and retirements reach the cluster only if it can
    scale: pass the cluster object (``LocalCluster``, any ``SpecCluster``...) rather than its
    address; with an address, the policy can retire workers but not add them.

    Parameters
    ----------
    target : str or distributed.deploy.Cluster
        The scheduler address (``tcp://127.0.0.1:8786``) or a cluster object.
    itype, zone, market :
        What each worker stands for (catalog names).
    policy : optional
        An object with ``decide(state) -> Decision``; run every ``interval`` wall seconds.
    time_scale : float
        Wall seconds per pool second (1: real time).
    faults, seed, catalog, asynchronous :
        As for :class:`~hpclab.elastic.ElasticPool`.

    Closing an AttachedPool closes only its connection: the cluster keeps running.
    """

    def __init__(self, target, *, itype: str = "ecs.c8i.8xlarge", zone: str = "cn-hangzhou-h",
                 market: str = "on-demand", policy=None, interval: float = 0.5,
                 time_scale: float = 1.0, faults=None, seed: int = 0, catalog=None,
                 asynchronous: bool = False, name: str | None = None):
        if isinstance(target, str):
            self._cluster = None
            address = target
        elif hasattr(target, "scheduler_address"):
            self._cluster = target
            address = target.scheduler_address
        else:
            raise HpclabError(f"target must be a scheduler address or a Dask cluster object, "
                              f"got {type(target).__name__}")
        limits = PoolLimits(types=(itype,), zones=(zone,))
        self._init_accounting(limits=limits, catalog=catalog, time_scale=time_scale,
                              faults=faults, seed=seed, threads=1, market=market)
        self.interval = check_positive("interval", interval)
        self._address = address
        self._by_address: dict[str, InstanceRecord] = {}
        self._names: dict[str, object] = {}  # record id -> the worker's own name
        self._poll_pc = None
        self._policy_at_start = policy
        super().__init__(asynchronous=asynchronous, name=name)
        self.scheduler_comm = rpc(address)
        if not self.called_from_running_loop:
            self._loop_runner.start()
            self.sync(self._start)

    @property
    def can_scale(self) -> bool:
        """Whether launches reach the cluster (it was given as an object with ``scale``)."""
        return self._cluster is not None and callable(getattr(self._cluster, "scale", None))

    async def _start(self):
        # Not Cluster._start: its worker-status subscription is one per scheduler and belongs to
        # the wrapped cluster object; the pool polls the scheduler every ``interval`` instead.
        self.log.restart_clock()
        self.status = Status.running
        await self._view()  # the workers already there join the pool now
        self._poll_pc = PeriodicCallback(self._poll, self.interval * 1000)
        self._poll_pc.start()
        if self._policy_at_start is not None:
            policy, self._policy_at_start = self._policy_at_start, None
            self.adapt(policy)

    async def _poll(self) -> None:
        with contextlib.suppress(Exception):
            await self._view()
        self._tick_faults()

    # -- workers joining and leaving ----------------------------------------------------------
    def _sync_workers(self, view: dict) -> None:
        present = {w["address"]: w for w in view["workers"].values()}
        for addr, info in present.items():
            if addr not in self._by_address:
                self._joined(info, "joined")
        for addr, rec in list(self._by_address.items()):
            if addr not in present and rec.state != "terminated":
                if rec.state != "draining":
                    rec.end_reason = rec.end_reason or "left"
                    self._set_state(rec, "draining", rec.end_reason)
                self._on_closed(rec)

    def _joined(self, info: dict, reason: str) -> None:
        address = info["address"]
        if address in self._by_address:
            return
        pending = [r for r in self.records.values() if r.address is None and r.state == "booting"]
        if pending:  # a worker the pool asked for
            rec = pending[0]
        else:  # a worker that was there, or that someone else started
            k = self._n_launched
            self._n_launched += 1
            rec = InstanceRecord(id=f"w-{k:04d}", itype=self.limits.types[0],
                                 zone=self.limits.zones[0], market=self.market,
                                 cores=int(info.get("nthreads", 1)), launched_at=self.now())
            self.records[rec.id] = rec
            rec.state = "booting"  # not logged: the pool sees it from when it joins
        rec.address = address
        rec.cores = int(info.get("nthreads", rec.cores))
        self._by_address[address] = rec
        self._names[rec.id] = info.get("name", address)
        self.threads[rec.itype] = rec.cores
        self._on_running(rec)

    # -- what PoolAccounting needs ------------------------------------------------------------
    async def _view(self) -> dict:
        resp = await self.scheduler_comm.run_function(function=pickle.dumps(scheduler_view),
                                                      args=pickle.dumps(()),
                                                      kwargs=pickle.dumps({}))
        if resp.get("status") != "OK":
            raise HpclabError(f"cannot read the scheduler at {self._address}: {resp.get('text', resp)}")
        view = resp["result"]
        self._sync_workers(view)
        return view

    def _start_launch(self, launch: Launch, reason: str):
        if not self.can_scale:
            self.refused[(launch.itype, launch.zone)] = self.now()
            return None
        self._launch_reason = reason
        rec = self._new_record(Launch(launch.itype, launch.zone, launch.market, 1))
        self._launch_reason = ""
        self._set_state(rec, "booting", "boot")  # the cluster starts it now; running when it joins
        return rec.id

    async def _after_launch(self) -> None:
        await self._scale_cluster()

    async def _scale_cluster(self) -> None:
        if self.can_scale:
            res = self._cluster.scale(sum(1 for r in self.alive() if r.state != "draining"))
            if inspect.isawaitable(res):
                await res

    async def _retire_now(self, *recs: InstanceRecord) -> set[str]:
        res = await self.scheduler_comm.retire_workers(workers=[r.address for r in recs],
                                                       close_workers=True, remove=True)
        return {r.id for r in recs if r.address in (res or {})}

    async def _kill_now(self, rec: InstanceRecord, reason: str) -> None:
        rec.end_reason = reason
        msg = {"op": "run", "function": pickle.dumps(os._exit), "args": pickle.dumps((1,)),
               "kwargs": pickle.dumps({}), "wait": True}  # the reply never comes: the process ends
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.scheduler_comm.broadcast(
                msg=msg, workers=[rec.address], on_error="ignore"), 5)

    async def _remove(self, *recs: InstanceRecord) -> None:
        pending = [r for r in recs if r.address is None]
        for rec in pending:  # asked for, not yet joined: ask for fewer
            self._on_closed(rec)
        if self.can_scale and hasattr(self._cluster, "scale_down"):
            names = [self._names[r.id] for r in recs if r.id in self._names]
            with contextlib.suppress(Exception):
                res = self._cluster.scale_down(names)
                if inspect.isawaitable(res):
                    await res
        elif pending:
            await self._scale_cluster()
        loop = asyncio.get_running_loop()
        end = loop.time() + 10 * max(self.interval, 0.5)
        while any(r.state != "terminated" for r in recs) and loop.time() < end:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):
                await self._view()  # notices the worker has left
        for rec in recs:
            if rec.state != "terminated":
                self._on_closed(rec)

    # -- policy (adapt, policy, stop_policy: PoolAccounting) ---------------------------------
    @property
    def plan(self):
        return {r.id for r in self.alive()}

    @property
    def requested(self):
        return self.plan

    @property
    def observed(self):
        return {r.id for r in self.alive() if r.state in ("running", "draining")}

    def running(self) -> list[str]:
        return [r.id for r in self.records.values() if r.state == "running"]

    def wait_for(self, predicate, timeout: float = 30.0, poll: float = 0.05) -> bool:
        from hpclab.elastic.pool import ElasticPool

        return ElasticPool.wait_for(self, predicate, timeout, poll)

    def client(self, **kwargs):
        from distributed import Client

        return Client(self, **kwargs)

    async def _close(self):
        if self._poll_pc is not None:
            self._poll_pc.stop()
        with contextlib.suppress(AttributeError):
            self._adaptive.stop(reason="pool-close")
        await self._wait_background(timeout=5)
        await super()._close()
        # the cluster keeps running; the pool's account of it ends here
        for rec in self.alive():
            rec.end_reason = rec.end_reason or "detached"
            self._on_closed(rec)

    def close(self, timeout=None):
        out = super().close(timeout)
        if not self.asynchronous and self.status == Status.closed:
            self._loop_runner.stop()
        return out

    def __repr__(self) -> str:
        return (f"<AttachedPool {self._address} as {self.limits.types[0]} in "
                f"{self.limits.zones[0]}: {len(self.running())} running>")
