"""Accounting shared by :class:`ElasticPool` and :class:`AttachedPool`: instance records, the
event log, the scheduler snapshot a policy sees, limits on launches, faults and the bill."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from types import MappingProxyType

import numpy as np
from distributed.diagnostics.plugin import SchedulerPlugin

from hpclab._validate import HpclabError, check_choice, check_positive
from hpclab.elastic._pool_instance import InstanceRecord
from hpclab.elastic.capacity import grantable
from hpclab.elastic.events import EventLog
from hpclab.elastic.faults import SpotFaults
from hpclab.elastic.state import MARKETS, Decision, InstanceView, Launch, PoolLimits, PoolState, fixed_boots

logger = logging.getLogger("hpclab.elastic.pool")

_PLUGIN = "hpclab-task-counter"
_PENDING = ("waiting", "queued", "no-worker")


class TaskCounter(SchedulerPlugin):
    """Counts tasks finished on the scheduler (``processing -> memory`` / ``-> erred``)."""

    name = _PLUGIN
    idempotent = True

    def __init__(self):
        self.done = 0
        self.erred = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing":
            if finish == "memory":
                self.done += 1
            elif finish == "erred":
                self.erred += 1


def scheduler_view(dask_scheduler=None) -> dict:
    """What a policy needs from the scheduler, as plain data (runs on the scheduler).

    Queued tasks are those ``waiting``, ``queued`` or ``no-worker``; running ones are
    ``processing``; the mean task duration is Dask's per-prefix estimate, weighted by the
    prefix's pending work.
    """
    s = dask_scheduler
    plugin = s.plugins.get(_PLUGIN)
    if plugin is None:
        plugin = TaskCounter()
        s.add_plugin(plugin, name=_PLUGIN)
    queued = running = 0
    weight = total = 0.0
    for tp in s.task_prefixes.values():
        counts = tp.states  # current tasks by state (state_counts is cumulative)
        pending = sum(counts.get(k, 0) for k in _PENDING)
        proc = counts.get("processing", 0)
        queued += pending
        running += proc
        if tp.duration_average is not None and tp.duration_average > 0 and pending + proc:
            weight += pending + proc
            total += (pending + proc) * tp.duration_average
    workers = {}
    for ws in s.workers.values():
        workers[str(ws.name)] = {"address": ws.address, "processing": len(ws.processing),
                                 "nthreads": ws.nthreads, "status": ws.status.name,
                                 "nbytes": ws.nbytes}
    return {"queued": queued, "running": running, "done": plugin.done, "erred": plugin.erred,
            "mean_task_wall": (total / weight) if weight else None, "workers": workers}


def sample_boot_seconds(mean: float, sd: float, rng: np.random.Generator) -> float:
    """A boot delay drawn from a lognormal with the catalog's mean and standard deviation.

    :math:`\\sigma^2 = \\ln(1 + s^2/m^2)`, :math:`\\mu = \\ln m - \\sigma^2/2` (so the mean is
    ``m`` and the standard deviation ``s``); a lognormal keeps boot times positive and skewed to
    the slow side, as measured instance start times are.
    """
    if sd <= 0:
        return float(mean)
    sigma2 = math.log1p((sd / mean) ** 2)
    return float(rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2)))


class PoolAccounting:
    """Mixin: what every pool keeps whatever runs its workers.

    Subclasses provide ``_view()`` (async: a :func:`scheduler_view` dict), ``_start_launch``,
    ``_retire_now`` and ``_kill_now``, and call ``_init_accounting`` before starting.
    """

    # -- policy -------------------------------------------------------------------------------
    def adapt(self, policy=None, *, interval: float | None = None, **kwargs):
        """Run ``policy`` every ``interval`` wall seconds through a
        :class:`~hpclab.elastic.pool.PolicyAdaptive` (replaces any running policy)."""
        from hpclab.elastic.pool import PolicyAdaptive

        if policy is None:
            raise HpclabError("adapt needs a policy (an object with decide(state), e.g. "
                              "hpclab.elastic.policies.TargetDuration())")
        with contextlib.suppress(AttributeError):
            self._adaptive.stop(reason="new-policy")
        self._adaptive = PolicyAdaptive(self, policy, interval=interval or self.interval, **kwargs)
        return self._adaptive

    @property
    def policy(self):
        a = getattr(self, "_adaptive", None)
        return getattr(a, "policy", None)

    def stop_policy(self) -> None:
        """Stop the autoscaling policy (instances stay as they are)."""
        a = getattr(self, "_adaptive", None)
        if a is not None:
            a.stop(reason="stop-policy")

    def _init_accounting(self, *, limits: PoolLimits, catalog, time_scale, faults, seed, threads,
                         market, boot=None, capacity: float = 1.0, spot_capacity: float = 1.0):
        from hpclab import catalog as _catalog
        from hpclab.elastic.capacity import ZoneCapacity

        self.catalog = catalog if catalog is not None else _catalog.default()
        check_positive("time_scale", time_scale)
        self.time_scale = float(time_scale)
        for itype in limits.types:
            self.catalog.instance(itype)  # KeyError listing known types
        for zone in limits.zones:
            self.catalog.zone(zone)
        self.limits = limits
        # the zones' capacity as the virtual clocks see it (a factor, a share open to spot),
        # checked by the one zone-capacity rule's own bookkeeping
        self._zone_capacity = ZoneCapacity(self.catalog, factor=capacity, spot_capacity=spot_capacity)
        self.boot = fixed_boots(boot, limits.types)
        check_choice("market", market, MARKETS)
        self.market = market
        if isinstance(threads, dict):
            unknown = set(threads) - set(limits.types)
            if unknown:
                raise HpclabError(f"threads names {sorted(unknown, key=str)[0]!r}, which is not in types "
                                  f"({', '.join(limits.types)})")
            self.threads = {t: check_positive(f"threads[{t}]", threads.get(t, 1), integer=True)
                            for t in limits.types}
        else:
            n = check_positive("threads", threads, integer=True)
            self.threads = {t: n for t in limits.types}
        for t, n in self.threads.items():
            if n > self.catalog.instance(t).vcpus:
                raise HpclabError(f"threads[{t}] must be <= its vCPUs "
                                  f"({self.catalog.instance(t).vcpus}), got {n}")
        if faults is not None and not isinstance(faults, SpotFaults):
            raise HpclabError(f"faults must be a SpotFaults or None, got {type(faults).__name__}")
        self.faults = faults
        self._fault_schedule = faults.schedule(self.catalog) if faults is not None else None
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise HpclabError(f"seed must be a whole number, got {seed!r}")
        self.seed = int(seed)
        self.log = EventLog(self.time_scale)
        self.records: dict[str, InstanceRecord] = {}
        self.refused: dict[tuple[str, str], float] = {}
        self.decisions: list[tuple[float, Decision]] = []
        self._n_launched = 0
        self._last_view: dict | None = None
        self._background: set[asyncio.Task] = set()
        self.drain_timeout = 30.0  # wall seconds a graceful retire may take before a close

    # -- clock and events ---------------------------------------------------------------------
    def now(self) -> float:
        """Pool seconds since the pool started."""
        return self.log.now()

    def _set_state(self, rec: InstanceRecord, state: str, reason: str = "") -> None:
        if rec.state == "terminated" or (rec.state == state and state != "requested"):
            return
        rec.state = state
        event = self.log.record(None, rec.id, rec.itype, rec.zone, rec.market, state, reason)
        if state in ("booting", "running", "draining") and rec.billed_from is None:
            rec.billed_from = event.time
            if self._fault_schedule is not None:  # granted: the market schedules its reclaim
                rate = self.catalog.zone(rec.zone).spot_reclaim_rate * 3600.0
                self._fault_schedule.on_granted(rec.id, rec.itype, rec.zone, rec.market, event.time, rate)
        elif state == "terminated":
            rec.terminated_at = event.time

    def _new_record(self, launch: Launch) -> InstanceRecord:
        k = self._n_launched
        self._n_launched += 1
        inst = self.catalog.instance(launch.itype)
        rng = np.random.default_rng([self.seed, k])
        boot = self.boot.get(launch.itype)
        if boot is None:
            boot = sample_boot_seconds(inst.boot_time, inst.boot_time_sd, rng)
        rec = InstanceRecord(id=f"i-{k:04d}", itype=launch.itype, zone=launch.zone,
                             market=launch.market, cores=self.threads[launch.itype],
                             launched_at=self.now(), boot_seconds=boot)
        self.records[rec.id] = rec
        self.log.record(None, rec.id, rec.itype, rec.zone, rec.market, "requested",
                        getattr(self, "_launch_reason", "") or "launch")
        return rec

    def _on_running(self, rec: InstanceRecord) -> None:
        if rec.state in ("requested", "booting"):
            rec.running_at = self.now()
            rec.idle_since = rec.running_at
            self._set_state(rec, "running", "booted")
            if self._fault_schedule is not None:
                rate = self.catalog.zone(rec.zone).spot_reclaim_rate * 3600.0
                self._fault_schedule.on_running(rec.id, rec.market, rec.running_at, rate)

    def _on_closed(self, rec: InstanceRecord) -> None:
        if rec.state != "terminated":
            reason = rec.end_reason or rec.drain_reason or "close"
            self._set_state(rec, "terminated", reason)
        if self._fault_schedule is not None:
            self._fault_schedule.forget(rec.id)

    def _instance_failed(self, rec: InstanceRecord) -> None:
        spec = getattr(self, "worker_spec", None)
        if spec is not None:
            spec.pop(rec.id, None)  # a failed boot is not retried as the same instance
        self._on_closed(rec)

    # -- what a policy sees -------------------------------------------------------------------
    def alive(self) -> list[InstanceRecord]:
        """Instances not yet terminated."""
        return [r for r in self.records.values() if r.state != "terminated"]

    def _update_from_view(self, view: dict) -> None:
        now = self.now()
        by_address = {w["address"]: w for w in view["workers"].values()}
        for rec in self.alive():
            w = by_address.get(rec.address)
            if w is None:
                continue
            rec.running_tasks = int(w["processing"])
            if rec.running_tasks:
                rec.idle_since = None
            elif rec.idle_since is None and rec.state == "running":
                rec.idle_since = now

    def state_from_view(self, view: dict) -> PoolState:
        """A :class:`PoolState` snapshot from a scheduler view (pool seconds, USD)."""
        self._update_from_view(view)
        now = self.now()
        instances = tuple(
            InstanceView(id=r.id, itype=r.itype, zone=r.zone, market=r.market, state=r.state,
                         cores=r.cores, launched_at=r.launched_at, running_tasks=r.running_tasks,
                         idle_since=r.idle_since if r.state == "running" else None,
                         notice=r.notice)
            for r in self.alive())
        mean = view.get("mean_task_wall")
        return PoolState(time=now, queued=int(view["queued"]), running=int(view["running"]),
                         instances=instances, limits=self.limits, spent=self.spent(now),
                         mean_task_seconds=None if mean is None else mean / self.time_scale,
                         done=int(view["done"]), refused=MappingProxyType(dict(self.refused)),
                         slots=MappingProxyType(dict(self.threads)))

    async def snapshot_async(self) -> PoolState:
        view = await self._view()
        self._last_view = view
        return self.state_from_view(view)

    def snapshot(self) -> PoolState:
        """The pool as a policy sees it now (raises the policy's error if it failed, see
        :meth:`check_policy`)."""
        self.check_policy()
        return self.sync(self.snapshot_async)

    #: the error of a policy that failed in its decide() (its autoscaling then stopped)
    policy_error = None

    def check_policy(self) -> None:
        """Raise the one-line error of the pool's policy if its decide() failed (a policy runs
        in a periodic callback, where an exception would only be logged)."""
        if self.policy_error is not None:
            raise self.policy_error

    # -- limits -------------------------------------------------------------------------------
    def _admit(self, launch: Launch) -> int:
        """How many of ``launch`` the limits allow now (records refusals)."""
        check_choice("itype", launch.itype, self.limits.types)
        check_choice("zone", launch.zone, self.limits.zones)
        check_choice("market", launch.market, MARKETS)
        n = int(launch.count)
        if n <= 0:
            return 0
        alive = self.alive()
        serving = [r for r in alive if r.state != "draining"]
        hi = self.limits.max_per_type.get(launch.itype)
        if hi is not None:
            n = min(n, hi - sum(1 for r in serving if r.itype == launch.itype))
        if self.limits.quota_cores is not None:
            free = self.limits.quota_cores - sum(r.cores for r in alive)
            n = min(n, free // self.threads[launch.itype])
        # the zone's capacity (the one rule of every clock, capacity.grantable): cores of every
        # instance alive there count, draining ones included
        inst = self.catalog.instance(launch.itype)
        here = [r for r in alive if r.itype == launch.itype and r.zone == launch.zone]
        zc = self._zone_capacity
        spot = launch.market == "spot"
        n_cap, why = grantable(max(n, 0), zc.capacity(launch.zone, launch.itype), len(here) * inst.cores,
                               inst.cores, spot=spot, spot_capacity=zc.spot_capacity,
                               spot_use=sum(1 for r in here if r.market == "spot") * inst.cores)
        if why is not None:
            self.refused[(launch.itype, launch.zone) if why == "zone" else
                         (launch.itype, launch.zone, "spot")] = self.now()
        return max(0, n_cap)

    # -- applying a decision ------------------------------------------------------------------
    async def apply_async(self, decision: Decision) -> list[str]:
        """Launch and retire as ``decision`` says (within limits); return the new instance ids."""
        self.decisions.append((self.now(), decision))
        reason = decision.reason or "policy"
        new: list[str] = []
        for launch in decision.launch:
            n = self._admit(launch)
            for _ in range(n):
                i = self._start_launch(launch, reason)
                if i is not None:
                    new.append(i)
        retire = [i for i in decision.retire if i in self.records]
        if retire:
            await self._retire_ids(retire, reason)
        if new:
            await self._after_launch()
        return new

    def apply(self, decision: Decision) -> list[str]:
        return self.sync(self.apply_async, decision)

    def launch(self, itype: str | None = None, zone: str | None = None,
               market: str | None = None, count: int = 1, reason: str = "user") -> list[str]:
        """Launch ``count`` instances (default: the first type and zone, the pool's market)."""
        launch = Launch(itype or self.limits.types[0], zone or self.limits.zones[0],
                        market or self.market, int(count))
        return self.apply(Decision(launch=(launch,), reason=reason))

    def retire(self, ids, reason: str = "user") -> None:
        """Retire instances gracefully (Dask moves their data off first)."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        unknown = [i for i in ids if i not in self.records]
        if unknown:
            raise HpclabError(f"retire names unknown instance {unknown[0]!r}; known: "
                              f"{', '.join(r.id for r in self.alive()) or 'none'}")
        return self.sync(self._retire_ids, ids, reason)

    async def _retire_ids(self, ids, reason: str) -> None:
        mins = dict(self.limits.min_per_type)
        batch = []
        for i in ids:
            rec = self.records[i]
            if rec.state in ("draining", "terminated"):
                continue
            serving = sum(1 for r in self.alive() if r.itype == rec.itype and r.state != "draining")
            if serving <= mins.get(rec.itype, 0) and reason != "close":
                continue  # never below the type's minimum
            if rec.hold_until is not None and self.now() < rec.hold_until and reason != "user":
                continue  # its retirement was just refused (it holds unique results)
            if rec.state in ("requested", "booting"):
                self._spawn(self._drain(rec, reason, notice=None))
            else:
                rec.drain_reason = reason
                self._set_state(rec, "draining", reason)
                batch.append(rec)
        if batch:
            self._spawn(self._drain_batch(batch, reason))

    async def _drain_batch(self, recs, reason: str) -> None:
        """Retire running instances together (one ``retire_workers`` call moves their data to the
        instances that stay), then close them.

        An instance the scheduler refuses to retire (it holds results that no other worker can
        take, e.g. the last instances while a client still holds their futures) goes back to
        ``running``: closing it would lose those results, and Dask would recompute them on a new
        instance (the scale-down thrash of plain adaptive scaling).
        """
        retired: set[str] | None = None
        try:
            retired = await asyncio.wait_for(self._retire_now(*recs), self.drain_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            logger.warning("retiring %s took over %s s; closing them", [r.id for r in recs],
                           self.drain_timeout)
        except Exception as exc:  # workers that went away meanwhile
            logger.info("retiring %s: %s", [r.id for r in recs], exc)
        keep = []
        if retired is not None and len(retired) < len(recs):
            with contextlib.suppress(Exception):
                present = {w["address"] for w in (await self._view())["workers"].values()}
                keep = [r for r in recs if r.id not in retired and r.address in present]
        for rec in keep:
            rec.drain_reason = ""
            # do not ask again at once: a policy would retry every tick
            rec.hold_until = self.now() + 20 * getattr(self, "interval", 1.0) / self.time_scale
            self._set_state(rec, "running", "retire refused: holds unique results")
            rec.idle_since = self.now()
        gone = [r for r in recs if r not in keep]
        for rec in gone:
            rec.end_reason = rec.end_reason or reason
        if gone:
            await self._remove(*gone)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _drain(self, rec: InstanceRecord, reason: str, notice: float | None) -> None:
        """Drain ``rec``: graceful retire (data moved off), hard kill when ``notice`` runs out."""
        if rec.state in ("requested", "booting"):
            rec.end_reason = reason
            self._set_state(rec, "draining", reason)
            await self._remove(rec)
            return
        rec.drain_reason = reason
        self._set_state(rec, "draining", reason)
        loop = asyncio.get_running_loop()
        deadline = None if notice is None else loop.time() + notice * self.time_scale
        retired = False
        while deadline is None or loop.time() < deadline:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                retired = await asyncio.wait_for(self._retire_now(rec), timeout)
            except (asyncio.TimeoutError, TimeoutError):
                break
            except Exception as exc:  # the worker went away meanwhile
                logger.info("retiring %s: %s", rec.id, exc)
                break
            if retired or deadline is None:
                break
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
        if not retired and deadline is not None and rec.state != "terminated":
            rec.end_reason = "spot-reclaim"
            await self._kill_now(rec, "spot-reclaim")
        elif not rec.end_reason:
            rec.end_reason = reason
        await self._remove(rec)

    async def notice_async(self, instance: str, notice: float | None = None,
                           reason: str = "spot-notice") -> None:
        """Send a reclaim notice to ``instance``: drain now, kill after ``notice`` pool seconds
        (default: the type's catalog ``spot_notice``; 0 kills at once)."""
        rec = self.records[instance]
        if rec.state in ("terminated",) or rec.notice:
            return
        if notice is None:
            notice = self.catalog.instance(rec.itype).spot_notice
        rec.notice = True
        if notice <= 0:
            rec.drain_reason = reason
            self._set_state(rec, "draining", reason)
            rec.end_reason = "spot-reclaim" if reason == "spot-notice" else reason
            await self._kill_now(rec, rec.end_reason)
            await self._remove(rec)
            return
        await self._drain(rec, reason, notice=notice)

    def preempt(self, instance: str | None = None, notice: float | None = None) -> str:
        """Reclaim a spot instance now (default: the longest-running spot one); return its id.

        ``notice`` in pool seconds (None: the catalog ``spot_notice``; 0: a hard kill now).
        Returns once the instance is terminated.
        """
        if instance is None:
            spot = sorted((r for r in self.alive() if r.market == "spot" and r.state == "running"),
                          key=lambda r: (r.running_at, r.id))
            if not spot:
                raise HpclabError("preempt needs a running spot instance; the pool has none")
            instance = spot[0].id
        elif instance not in self.records:
            raise HpclabError(f"preempt names unknown instance {instance!r}")
        self.sync(self.notice_async, instance, notice)
        return instance

    # -- faults -------------------------------------------------------------------------------
    def _tick_faults(self) -> None:
        if self._fault_schedule is None:
            return
        running = [(r.id, r.market, r.running_at) for r in self.alive()
                   if r.state == "running" and not r.notice]
        for fault in self._fault_schedule.due(self.now(), running):
            self._spawn(self.notice_async(fault.instance, fault.notice, fault.reason))

    # -- money --------------------------------------------------------------------------------
    def events(self):
        """The event log as an ``xarray.Dataset`` (dim ``event``)."""
        return self.log.to_dataset()

    def spent(self, until: float | None = None) -> float:
        """USD billed up to pool time ``until`` (default now), instances still alive included.

        The meter of :mod:`hpclab.elastic.billing` (``max(ceil(end - start), min_charge) *
        price``, billed from the first booting/running/draining event to termination), computed
        from the instance records so that the policy loop does not re-read the whole log on
        every tick; ``bill()`` computes the same from the event log.
        """
        from hpclab.elastic.billing import meter, unit_price

        now = self.now() if until is None else float(until)
        recs = [r for r in self.records.values() if r.billed_from is not None]
        if not recs:
            return 0.0
        insts = [self.catalog.instance(r.itype) for r in recs]
        return meter([r.billed_from for r in recs],
                     [np.inf if r.terminated_at is None else r.terminated_at for r in recs], now,
                     [unit_price(i, r.market) for i, r in zip(insts, recs)],
                     [i.min_charge for i in insts])

    def bill(self, until: float | None = None):
        """The bill up to pool time ``until`` (default now): cost, billed seconds and instances
        by type, zone and market, an ``xarray.Dataset`` (see :func:`hpclab.elastic.billing.bill`)."""
        from hpclab.elastic import _pool_billing

        return _pool_billing.bill(self, until)

    async def _wait_background(self, timeout: float = 10.0) -> None:
        if self._background:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._background), timeout=timeout)
