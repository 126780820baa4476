"""``ElasticPool``: a real Dask cluster whose workers behave like cloud instances.

Each worker is an emulated instance (:class:`~hpclab.elastic._pool_instance.Instance`): an
instance type from the catalog (its vCPUs scaled down to ``threads`` Dask threads, its memory
scaled the same way as the worker's memory limit, its GPUs as the Dask resource ``GPU``), a
zone, a market (on-demand or spot) and a lifecycle ``requested -> booting -> running ->
draining -> terminated``. A launch waits a boot delay drawn from the catalog (lognormal with
the type's ``boot_time`` and ``boot_time_sd``; or fixed per type with ``boot``), scaled to wall
time by ``time_scale`` (a 45 s boot takes 0.45 s with ``time_scale=0.01``), on a real worker: a
``Nanny`` and a worker process on 127.0.0.1 by default (``processes=True``, as ``LocalCluster``),
forked from a warm fork server when the boot starts and registered at its end
(:mod:`hpclab.elastic._boot`), or an in-process ``Worker`` started after the delay
(``processes=False``).

The pool is a :class:`distributed.deploy.SpecCluster`: ``worker_spec`` holds one entry per
instance, ``new_worker_spec`` and ``scale`` keep their meaning (``scale(n)`` asks for ``n``
instances of the first type, zone and the pool's market), and the autoscaling policy runs
through :class:`PolicyAdaptive`, an ``Adaptive`` subclass whose periodic ``adapt`` builds a
:class:`~hpclab.elastic.state.PoolState` and applies the policy's
:class:`~hpclab.elastic.state.Decision` (a mixed decision: launches of several types and zones,
and retirements of named instances, which Dask's scalar ``target`` cannot express).

Scale-down is graceful (``Scheduler.retire_workers``: Dask moves the data off first). A spot
reclaim (:mod:`hpclab.elastic.faults`) starts with a notice: the instance drains; if it is
still there when the notice (the catalog ``spot_notice``, scaled) runs out, its worker process
is killed with SIGKILL. Dask then reschedules its tasks and recomputes results that lived only
there, so every submitted task still completes with the same result.

Every lifecycle change goes to the event log (:mod:`hpclab.elastic.events`); ``bill()`` meters it
per second with :mod:`hpclab.elastic.billing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import time

import dask

from distributed import Nanny, Scheduler, Worker
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.spec import SpecCluster
from distributed.system import MEMORY_LIMIT
from tornado.ioloop import PeriodicCallback

from hpclab._validate import HpclabError, check_positive
from hpclab.elastic import _boot
from hpclab.elastic._pool_core import PoolAccounting, scheduler_view
from hpclab.elastic._pool_instance import Instance, InstanceRecord
from hpclab.elastic.policies import ask
from hpclab.elastic.state import Decision, Launch, PoolLimits

__all__ = ["ElasticPool", "PolicyAdaptive", "AttachedPool"]

logger = logging.getLogger("hpclab.elastic.pool")


class PolicyAdaptive(Adaptive):
    """``distributed.deploy.Adaptive`` driven by an hpclab policy.

    Every ``interval`` (wall seconds) it takes a snapshot of the pool
    (:meth:`ElasticPool.snapshot_async`), asks ``policy.decide(state)`` and applies the
    decision. Dask's ``target``/``recommendations`` pair answers "how many workers"; a mixed pool
    needs "which type, where, which market, and which instances to retire", so this class
    overrides ``adapt`` (the method ``Adaptive``'s periodic callback calls) and keeps the rest:
    the periodic callback, ``stop`` and the cluster's ``adapt`` hook.

    It also measures how late its own calls come (:attr:`max_lag`, wall seconds beyond
    ``interval``): the pool's emulated times are wall times, so a pause of this process (a long
    garbage collection, a starved CPU) delays decisions and stretches instance-seconds by as much.
    """

    def __init__(self, cluster, policy, interval: float = 0.2, **kwargs):
        if not callable(getattr(policy, "decide", None)):
            raise HpclabError(f"policy must have a decide(state) method, got {type(policy).__name__}")
        self.policy = policy
        self.max_lag = 0.0  # the largest delay of a call beyond the interval, wall seconds
        self._last_call = None
        super().__init__(cluster, interval=interval, minimum=0, maximum=math.inf, wait_count=1,
                         **kwargs)

    async def target(self) -> int:
        """Instances the policy wants after its decision (for Dask's logging and tools)."""
        state = await self.cluster.snapshot_async()
        d = ask(self.policy, state)
        return len(self.cluster.plan) + sum(x.count for x in d.launch) - len(d.retire)

    async def adapt(self) -> None:
        now = time.monotonic()
        if self._last_call is not None:
            self.max_lag = max(self.max_lag, now - self._last_call - self.interval)
        self._last_call = now
        if self._adapting:
            return
        self._adapting = True
        try:
            state = await self.cluster.snapshot_async()
            try:
                decision = ask(self.policy, state)
            except HpclabError as exc:
                # a periodic callback would only log it and ask again forever: the pool keeps
                # the error, the policy stops, and the next snapshot() or wait_for() raises it
                self.cluster.policy_error = exc
                self.stop(reason="policy-error")
                return
            if not decision.empty:
                self.log.append((state.time, {"status": "decision", "launch": decision.launch,
                                              "retire": decision.retire,
                                              "reason": decision.reason}))
                await self.cluster.apply_async(decision)
        finally:
            self._adapting = False


class ElasticPool(PoolAccounting, SpecCluster):
    """A Dask cluster of emulated cloud instances (mixed types, zones, markets).

    Parameters
    ----------
    types : str or sequence of str
        Instance types from the catalog (the first is the default for ``scale``/``launch``).
    zones : str or sequence of str
        Zones from the catalog (the first is the default).
    limits : PoolLimits, optional
        Types, zones, per-type min/max and a quota of cores (task slots); overrides
        ``types``/``zones``. ``min_per_type`` instances are launched at start and never retired.
    market : {"on-demand", "spot"}
        Market of ``scale``/``launch`` without a market (policies choose their own).
    threads : int or dict
        Dask threads (task slots) per instance, or per type; the instance's vCPUs are scaled
        down to this. Its memory limit is ``memory * threads / vcpus`` (capped by this machine).
    policy : object with ``decide(state) -> Decision``, optional
        Autoscaling policy, run every ``interval`` wall seconds by :class:`PolicyAdaptive`.
    interval : float
        Wall seconds between policy decisions (and fault checks).
    time_scale : float
        Wall seconds per pool second (0.01: a 45 s boot takes 0.45 s).
    faults : SpotFaults, optional
        Spot reclaims and failures (:mod:`hpclab.elastic.faults`).
    seed : int
        Seed of the boot-delay draws.
    processes : bool
        Workers in their own processes (Nanny, default) or in this process.
    n_instances : int
        Instances of the default type to launch at start (besides ``min_per_type``).
    allowed_failures : int
        Worker deaths a task may see before Dask gives up on it (``KilledWorker``); Dask's
        default is 3, the pool raises it to 10 because reclaims are not the task's fault.
    boot : mapping itype -> float, optional
        A fixed boot time (pool seconds, request to running) per type instead of the catalog's
        lognormal, as :func:`~hpclab.elastic.simulate.simulate` takes it (a scenario's
        ``pool.boot`` on both clocks).
    capacity, spot_capacity : float
        Factor on the zones' catalog capacity, and the share of it open to spot, as for
        :func:`~hpclab.elastic.simulate.simulate` (one rule, :func:`hpclab.elastic.capacity.grantable`):
        a launch beyond it is refused in part (``state.refused``).
    preload : sequence of str
        Modules each instance's worker imports while it boots (inside the boot delay), so that
        the first task on an instance does not pay their import, e.g.
        ``("hpclab.workloads.screening.pipeline",)``.
    catalog : hpclab.catalog.Catalog, optional
    asynchronous, dashboard_address, silence_logs, name
        As for ``LocalCluster``; the scheduler binds to 127.0.0.1.

    Examples
    --------
    >>> from hpclab.elastic import ElasticPool, policies          # doctest: +SKIP
    >>> with ElasticPool("ecs.c8i.8xlarge", "cn-hangzhou-h", time_scale=0.01,
    ...                  policy=policies.TargetDuration(5.0)) as pool, pool.client() as client:
    ...     futures = client.map(slow_square, range(100))
    ...     client.gather(futures)
    ...     pool.bill().total_cost.item()
    """

    def __init__(self, types="ecs.c8i.8xlarge", zones="cn-hangzhou-h", *,
                 limits: PoolLimits | None = None, market: str = "on-demand", threads=1,
                 policy=None, interval: float = 0.2, time_scale: float = 0.01, faults=None,
                 seed: int = 0, processes: bool = True, n_instances: int = 0, catalog=None,
                 allowed_failures: int = 10, preload=(), boot=None, capacity: float = 1.0,
                 spot_capacity: float = 1.0, asynchronous: bool = False, dashboard_address: str | None = None,
                 silence_logs=logging.ERROR, name: str | None = None):
        if limits is None:
            types = (types,) if isinstance(types, str) else tuple(types)
            zones = (zones,) if isinstance(zones, str) else tuple(zones)
            limits = PoolLimits(types=types, zones=zones)
        elif not isinstance(limits, PoolLimits):
            raise HpclabError(f"limits must be a PoolLimits, got {type(limits).__name__}")
        self._init_accounting(limits=limits, catalog=catalog, time_scale=time_scale,
                              faults=faults, seed=seed, threads=threads, market=market, boot=boot,
                              capacity=capacity, spot_capacity=spot_capacity)
        for itype in limits.types:
            if not any(itype in self.catalog.zone(z).capacity for z in limits.zones):
                raise HpclabError(f"instance type {itype!r} is offered in none of the zones "
                                  f"{', '.join(limits.zones)}")
        self.interval = check_positive("interval", interval)
        n_instances = int(n_instances)
        if n_instances < 0:
            raise HpclabError(f"n_instances must be >= 0, got {n_instances}")
        if policy is not None and not callable(getattr(policy, "decide", None)):
            raise HpclabError(f"policy must have a decide(state) method (e.g. "
                              f"hpclab.elastic.make_policy('target-duration')), "
                              f"got {type(policy).__name__}")
        self.processes = bool(processes)
        self.preload = (preload,) if isinstance(preload, str) else tuple(preload)
        for name in self.preload:
            if not isinstance(name, str) or not name.replace(".", "").replace("_", "").isalnum():
                raise HpclabError(f"preload must be module names (e.g. 'hpclab.workloads.screening.pipeline'), "
                                  f"got {name!r}")
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise HpclabError(f"preload: no module named {name!r} here (each worker imports it as it boots)")
        self.allowed_failures = check_positive("allowed_failures", allowed_failures, integer=True)
        self.silence_logs_level = silence_logs
        self._policy_at_start = policy
        self._fault_pc = None
        self._launch_reason = ""
        scheduler = {"cls": Scheduler, "options": {
            "host": "127.0.0.1", "port": 0, "protocol": "tcp://",
            "dashboard": dashboard_address is not None,
            "dashboard_address": dashboard_address or "127.0.0.1:0"}}
        self._forkserver = self.processes and _boot.acquire(self.preload)
        self._initial = [Launch(t, limits.zones[0], "on-demand", n)
                         for t, n in limits.min_per_type.items() if n > 0]
        if n_instances:
            self._initial.append(Launch(limits.types[0], limits.zones[0], market, n_instances))
        try:
            super().__init__(scheduler=scheduler, workers={}, worker=None, asynchronous=asynchronous,
                             silence_logs=silence_logs, name=name)
        except BaseException:
            if self._forkserver:
                self._forkserver = False
                _boot.release()
            raise

    # -- SpecCluster override points ----------------------------------------------------------
    async def _start(self):
        if not len(self.log):
            self.log.restart_clock()  # pool time 0 = the scheduler starts
        # the Active Memory Manager moves data off retiring workers; run it as often as the
        # policy so that a drain takes a few of its cycles, not Dask's 2 s default each
        amm = {"distributed.scheduler.active-memory-manager.interval": f"{max(0.05, self.interval)}s"}
        with dask.config.set(amm):
            await super()._start()
        scheduler_view(self.scheduler)  # installs the task counter before any work arrives
        # a reclaim is not the task's fault: tolerate more worker deaths per task than Dask's
        # default of 3 before declaring a task a KilledWorker
        self.scheduler.allowed_failures = self.allowed_failures
        initial, self._initial = self._initial, []
        for launch in initial:
            for _ in range(self._admit(launch)):
                self._start_launch(launch, "minimum" if launch.market == "on-demand"
                                   and launch.itype in self.limits.min_per_type else "initial")
        if self._fault_schedule is not None:
            self._fault_pc = PeriodicCallback(self._tick_faults, self.interval * 1000)
            self._fault_pc.start()
        if self._policy_at_start is not None:
            policy, self._policy_at_start = self._policy_at_start, None
            self.adapt(policy, interval=self.interval)

    def _worker_spec(self, rec: InstanceRecord) -> dict:
        inst = self.catalog.instance(rec.itype)
        memory = int(min(inst.memory * rec.cores / inst.vcpus, MEMORY_LIMIT))
        options = {"nthreads": rec.cores, "memory_limit": memory, "host": "127.0.0.1",
                   "protocol": "tcp://", "dashboard": False,
                   "dashboard_address": "127.0.0.1:0"}
        if inst.gpus:
            options["resources"] = {"GPU": inst.gpus}
        if self.processes:
            options["silence_logs"] = self.silence_logs_level
        return {"cls": Instance, "options": {
            "pool": self, "record": rec, "boot_wall": rec.boot_seconds * self.time_scale,
            "worker_cls": Nanny if self.processes else Worker, "worker_options": options,
            "preload": self.preload}}

    def _start_launch(self, launch: Launch, reason: str) -> str:
        self._launch_reason = reason
        rec = self._new_record(Launch(launch.itype, launch.zone, launch.market, 1))
        self._launch_reason = ""
        self.worker_spec[rec.id] = self._worker_spec(rec)
        return rec.id

    async def _after_launch(self) -> None:
        await self._correct_state()

    def new_worker_spec(self):
        """One more instance of the default type, zone and market (used by ``scale``)."""
        launch = Launch(self.limits.types[0], self.limits.zones[0], self.market, 1)
        if self._admit(launch) < 1:
            return {}
        self._launch_reason = "scale"
        rec = self._new_record(launch)
        self._launch_reason = ""
        return {rec.id: self._worker_spec(rec)}

    @property
    def _supports_scaling(self):
        return True

    def scale(self, n=0, memory=None, cores=None):
        """Hold ``n`` instances (``cores=``: enough instances for that many task slots).

        Up: launches instances of the first type and zone on the pool's market. Down: cancels
        instances still booting, then retires running ones gracefully, idle and newest first.
        """
        if cores is not None:
            n = max(n, math.ceil(cores / self.threads[self.limits.types[0]]))
        if self.status in (Status.closing, Status.closed):
            return super().scale(n)
        alive = [r for r in self.alive() if r.state != "draining"]
        if n > len(alive):
            return self.sync(self._scale_up, n - len(alive))
        order = {"requested": 0, "booting": 1, "running": 2}
        victims = sorted(alive, key=lambda r: (order[r.state], r.running_tasks, -r.launched_at))
        ids = [r.id for r in victims[:len(alive) - n]]
        return self.sync(self._retire_ids, ids, "scale")

    async def _scale_up(self, k: int) -> None:
        for _ in range(k):
            spec = self.new_worker_spec()
            if not spec:
                break
            self.worker_spec.update(spec)
        await self._correct_state()

    async def scale_down(self, workers):
        """Retire the named instances gracefully (``Adaptive``'s hook)."""
        await self._retire_ids([str(w) for w in workers if str(w) in self.records], "scale")

    async def _correct_state_internal(self) -> None:
        closing = self.status in (Status.closing, Status.closed)
        for name in set(self.workers) - set(self.worker_spec):
            rec = self.records.get(name)
            if rec is not None and rec.state not in ("draining", "terminated"):
                rec.drain_reason = rec.drain_reason or ("close" if closing else "scale")
                self._set_state(rec, "draining", rec.drain_reason)
        await super()._correct_state_internal()

    def _update_worker_status(self, op, msg):
        if op == "remove":
            info = self.scheduler_info["workers"].get(msg, {})
            rec = self.records.get(str(info.get("name")))
            if (rec is not None and rec.state == "running" and not rec.notice
                    and self.status == Status.running):
                # the worker vanished without the pool asking: an instance lost
                rec.end_reason = "lost"
                self._set_state(rec, "draining", "lost")
                self.worker_spec.pop(rec.id, None)
                asyncio.get_running_loop().call_soon(self._correct_state)
        super()._update_worker_status(op, msg)

    # -- what PoolAccounting needs ------------------------------------------------------------
    async def _view(self) -> dict:
        return scheduler_view(self.scheduler)

    async def _retire_now(self, *recs: InstanceRecord) -> set[str]:
        """Ask the scheduler to retire ``recs`` (data moved off first); the ids it retired."""
        res = await self.scheduler_comm.retire_workers(names=[r.id for r in recs],
                                                       close_workers=True, remove=True)
        names = {str(info.get("name")) for info in (res or {}).values()}
        return {r.id for r in recs if r.id in names or r.address in (res or {})}

    async def _kill_now(self, rec: InstanceRecord, reason: str) -> None:
        inst = self.workers.get(rec.id)
        if isinstance(inst, Instance):
            await inst.kill(reason)

    async def _remove(self, *recs: InstanceRecord) -> None:
        for rec in recs:
            self.worker_spec.pop(rec.id, None)
        await self._correct_state()
        for rec in recs:
            if rec.state != "terminated" and rec.id not in self.workers:
                self._on_closed(rec)

    # -- policy: adapt(), policy, stop_policy() come from PoolAccounting ---------------------
    # -- helpers ------------------------------------------------------------------------------
    def client(self, **kwargs):
        """A ``distributed.Client`` connected to the pool."""
        from distributed import Client

        return Client(self, **kwargs)

    def wait_for(self, predicate, timeout: float = 30.0, poll: float = 0.05) -> bool:
        """Wait (wall seconds) until ``predicate(pool)`` is true; raise TimeoutError if not."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.check_policy()
            if predicate(self):
                return True
            time.sleep(poll)
        self.check_policy()
        raise TimeoutError(f"pool condition not reached within {timeout} s")

    def running(self) -> list[str]:
        """Ids of running instances."""
        return [r.id for r in self.records.values() if r.state == "running"]

    async def _close(self):
        if self._fault_pc is not None:
            self._fault_pc.stop()
        for a in (getattr(self, "_adaptive", None),):
            if a is not None:
                a.stop(reason="pool-close")
        try:
            await self._wait_background(timeout=5)
            await super()._close()
            for rec in self.alive():
                self._on_closed(rec)
        finally:
            if getattr(self, "_forkserver", False):
                self._forkserver = False
                _boot.release()

    def __repr__(self) -> str:
        states = {}
        for r in self.records.values():
            states[r.state] = states.get(r.state, 0) + 1
        summary = ", ".join(f"{k}={v}" for k, v in states.items()) or "empty"
        return (f"<ElasticPool {', '.join(self.limits.types)} in {', '.join(self.limits.zones)}: "
                f"{summary}; time_scale={self.time_scale:g}>")

    def _repr_html_(self, cluster_status=None):
        return f"<pre>{self!r}</pre>"


from hpclab.elastic._pool_attach import AttachedPool  # noqa: E402  (uses PolicyAdaptive)
