"""The virtual clock: the same pools and policies at 100,000 cores, in seconds of wall time.

:func:`simulate` runs a policy object (the very one that drives the real
:class:`~hpclab.elastic.pool.ElasticPool`) on a discrete-event clock:

- **instances** have a type, zone, market and CPU generation from the catalog; a request is
  granted at once up to the zone's free capacity and boots for a time drawn from a lognormal
  with the catalog's ``boot_time`` (mean) and ``boot_time_sd``;
- **zone capacity** per type is the catalog's (cores), times a user factor, a user curve over
  time and/or a seeded random shortage process; a request beyond it is partly or wholly refused,
  the refusal shows in ``PoolState.refused`` and the policy may look elsewhere; when capacity
  shrinks below use, spot instances are reclaimed (newest first);
- **spot reclaims** come from the run's :class:`~hpclab.elastic.faults.SpotMarket`: by default
  in waves per (type, zone) market at the zone's mean ``spot_reclaim_rate`` per instance (or each
  instance on its own, ``SpotMarket("independent")``), after any protection period; a reclaim is
  a notice (the instance takes no new task) and a hard kill ``spot_notice`` seconds later if
  tasks are still running; killed tasks go back to the front of the queue and their lost work is
  counted as *work redone*;
- **tasks** carry work in normalised compute units (seconds on a core of speed factor 1) and run
  ``work / speed_factor`` seconds on a core of a generation (catalog ``generations``); they are
  served first in, first out by the slot that frees first (exact greedy list scheduling,
  vectorised: see :mod:`hpclab.elastic._simengine`);
- **policy ticks** every ``tick`` pool seconds build a :class:`~hpclab.elastic.state.PoolState`
  and apply the policy's :class:`~hpclab.elastic.state.Decision`;
- **billing** is :func:`hpclab.elastic.billing.bill` on the instance lifetimes, the same meter
  as the real pool.

Everything random (boots, reclaims, capacity) comes from one seed: a seed gives one outcome.
Times are pool seconds, money USD.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._deprecated import deprecated
from hpclab._validate import HpclabError, check_nonnegative, check_positive
from hpclab.elastic._simengine import REASONS, Engine
from hpclab.elastic._simworkload import ARRIVALS, DURATIONS, Workload, make_workload
from hpclab.elastic.billing import bill, instance_costs
from hpclab.elastic.capacity import check_curve, check_shortage
from hpclab.elastic.state import MARKETS, PoolLimits, fixed_boots

__all__ = ["simulate", "SimResult", "Workload", "make_workload", "campaign_limits", "campaign",
           "real_burst", "replay", "default_horizon", "DURATIONS", "ARRIVALS", "CPU_TYPES"]

#: CPU instance types a campaign may use by default (the GPU and training nodes are left out)
CPU_TYPES = ("ecs.c7.8xlarge", "ecs.c8i.8xlarge", "ecs.g8i.8xlarge", "ecs.c8a.8xlarge",
             "ecs.hfc8i.8xlarge", "ecs.c8i.32xlarge")


def _catalog(catalog):
    from hpclab.catalog import resolve

    return resolve(catalog)


class SimResult:
    """What a simulation returns.

    The summary is computed when the run ends; the tables are built the first time they are
    read (a sweep over many runs that looks only at summaries never pays for them).

    Attributes
    ----------
    summary : dict
        makespan_s, cost_usd, core_hours, utilisation, work_redone, tasks_redone, refusals,
        reclaims, hard_kills, instances, peak_cores, events, wall_s, ... (see :func:`simulate`).
    timeseries : xarray.Dataset
        At each recorded policy tick (dim ``time``, pool seconds): ``instances`` by ``state``,
        ``itype`` and ``zone``; ``cores`` running by ``market``; ``queued``, ``running``, ``done``
        tasks; cumulative ``cost`` (USD) and ``refused`` instances. ``attrs`` hold the summary.
    tasks : xarray.Dataset
        Per task (dim ``task``): ``work``, ``arrival``, final ``start``/``end`` and ``instance``,
        ``attempts``.
    attempts : pandas.DataFrame
        Every attempt: task, instance, start, end, killed.
    instances : pandas.DataFrame
        Per instance: instance, itype, zone, market, start (granted), ready, drain, notice,
        end (NaN while still running at the end), reason.
    log : xarray.Dataset
        The lifecycle event log (dim ``event``): time, instance, itype, zone, market, state, reason.
    bill : xarray.Dataset
        :func:`hpclab.elastic.billing.bill` of the instances, open ones billed to the end.
    """

    def __init__(self, eng: Engine, cat, name: str):
        self._eng, self._cat = eng, cat
        self.end_time = float(eng.end_time)
        self.policy = name
        self.market = eng.market  # the run's spot market (prices the bill)
        self.summary = _summary(eng, cat, name)

    @cached_property
    def instances(self) -> pd.DataFrame:
        eng = self._eng
        ins, n = eng.inst, eng.inst.n
        names = _instance_names(eng)
        end = np.where(ins.end[:n] == np.inf, np.nan, ins.end[:n])
        reason = np.array(REASONS, dtype=object)[ins.reason[:n]] if n else np.zeros(0, dtype=object)
        return pd.DataFrame({"instance": np.array([f"i{k}" for k in range(n)], dtype=object),
                             "itype": names[0], "zone": names[1], "market": names[2],
                             "start": ins.grant[:n], "ready": ins.ready[:n], "drain": ins.drain[:n],
                             "notice": ins.notice_t[:n], "end": end, "reason": reason})

    @cached_property
    def bill(self) -> xr.Dataset:
        return bill(self.instances[["instance", "itype", "zone", "market", "start", "end"]], self._cat,
                    until=self.end_time, market=self.market)

    @cached_property
    def log(self) -> xr.Dataset:
        return _log(self.instances, self.end_time)

    @cached_property
    def attempts(self) -> pd.DataFrame:
        eng = self._eng
        att, na = eng.att, eng.att.n
        return pd.DataFrame({"task": att.task[:na], "instance": eng.slot.inst[att.slot[:na]],
                             "start": att.start[:na], "end": att.end[:na], "killed": att.killed[:na]})

    @cached_property
    def tasks(self) -> xr.Dataset:
        eng = self._eng
        att, sl = eng.att, eng.slot
        attempts_n = np.bincount(att.task[: att.n], minlength=eng.ntasks)
        t_inst = np.where(eng.t_slot >= 0, sl.inst[np.maximum(eng.t_slot, 0)], -1)
        return xr.Dataset(
            {"work": ("task", eng.work, {"units": "normalised compute units (reference core-seconds)"}),
             "arrival": ("task", eng.arrival, {"units": "s"}),
             "start": ("task", eng.t_start, {"units": "s"}),
             "end": ("task", eng.t_end, {"units": "s"}),
             "instance": ("task", t_inst, {"units": "index (instance i<k>)"}),
             "attempts": ("task", attempts_n, {"units": "count"})})

    @cached_property
    def timeseries(self) -> xr.Dataset:
        eng = self._eng
        rec = eng.rec
        nt, nz = len(eng.types), len(eng.zones)
        inst_ts = np.array(rec["inst"]) if rec["inst"] else np.zeros((0, 3, nt, nz), dtype=np.int64)
        cores_ts = np.array(rec["cores"]) if rec["cores"] else np.zeros((0, 2))
        return xr.Dataset(
            {"instances": (("time", "state", "itype", "zone"), inst_ts.astype(np.int64), {"units": "count"}),
             "cores": (("time", "market"), cores_ts, {"units": "cores",
                                                      "long_name": "physical cores of running instances"}),
             "queued": ("time", np.array(rec["queued"], dtype=np.int64), {"units": "tasks"}),
             "running": ("time", np.array(rec["running"], dtype=np.int64), {"units": "tasks"}),
             "done": ("time", np.array(rec["done"], dtype=np.int64), {"units": "tasks"}),
             "cost": ("time", np.array(rec["cost"], dtype=float), {"units": "USD",
                                                                   "long_name": "cost accrued so far"}),
             "refused": ("time", np.array(rec["refused"], dtype=np.int64),
                         {"units": "instances", "long_name": "instances refused so far"})},
            coords={"time": ("time", np.array(rec["time"], dtype=float), {"units": "s"}),
                    "state": ["booting", "running", "draining"], "itype": list(eng.types),
                    "zone": list(eng.zones), "market": list(MARKETS)},
            attrs={k: (v if not isinstance(v, bool) else int(v)) for k, v in self.summary.items()},
        )

    def __repr__(self) -> str:
        s = self.summary
        return (f"<SimResult {self.policy}: {s['completed']}/{s['tasks']} tasks, makespan "
                f"{s['makespan_s']:.0f} s, cost {s['cost_usd']:.2f} USD, peak {s['peak_cores']} cores>")

    def check_conservation(self) -> None:
        """Raise :class:`HpclabError` unless every task completed exactly once.

        From the attempt records: a task has at most one attempt that was not killed, it ends
        within the run for every task counted as completed, and if the run finished (all tasks
        completed) every task has exactly one. Killed attempts are the work redone.
        """
        a = self.attempts
        done = a[~a["killed"]]
        n = self.tasks.sizes["task"]
        counts = np.bincount(done["task"].to_numpy(), minlength=n)
        finished = np.bincount(done["task"].to_numpy()[done["end"].to_numpy() <= self.end_time + 1e-9],
                               minlength=n)
        if np.any(counts > 1):
            bad = int(np.flatnonzero(counts > 1)[0])
            raise HpclabError(f"task {bad} completed {counts[bad]} times (must be exactly once)")
        if int(finished.sum()) != self.summary["completed"]:
            raise HpclabError(f"{int(finished.sum())} attempts completed but the summary counts "
                              f"{self.summary['completed']}")
        if self.summary["completed"] == n and np.any(finished != 1):
            bad = int(np.flatnonzero(finished != 1)[0])
            raise HpclabError(f"task {bad} never completed although the run finished")

    def table(self) -> pd.Series:
        """The summary as a one-column table (for printing)."""
        return pd.Series(self.summary, name=self.policy)


def _compare_frame(results, labels=None) -> pd.DataFrame:
    """The old ``compare``: :func:`hpclab.result.compare` as a DataFrame of a few figures."""
    from hpclab.result import compare as tabulate

    results = list(results)
    keys = ["completed", "makespan_s", "cost_usd", "core_hours", "utilisation", "peak_cores",
            "instances", "refusals", "reclaims", "hard_kills", "work_redone", "wall_s"]
    return tabulate(results, labels or [r.policy for r in results]).to_dataframe()[keys]


compare = deprecated("hpclab.elastic.simulate", "compare", "hpclab.result.compare", _compare_frame)


def campaign_limits(cores: int = 100_000, *, types=None, zones=None, catalog=None) -> PoolLimits:
    """Limits of a campaign: CPU types and every zone of the catalog, a quota of ``cores``."""
    cat = _catalog(catalog)
    types = tuple(types) if types is not None else tuple(t for t in CPU_TYPES if t in cat.instances)
    zones = tuple(zones) if zones is not None else tuple(cat.zones)
    for t in types:
        cat.instance(t)
    for z in zones:
        cat.zone(z)
    return PoolLimits(types=types, zones=zones, quota_cores=int(check_positive("cores", cores, integer=True)))


def default_horizon(workload: Workload, limits: PoolLimits, slots: Mapping[str, int] | None = None,
                    catalog=None) -> float:
    """A horizon that follows the work: the last arrival, plus four times the work divided by the
    slowest capacity the pool may hold (its quota, else its zones' capacity, in task slots at the
    slowest type's speed), plus the longest task at that speed, plus a day. A run that still
    reaches it says so in its summary."""
    return _horizon(_work_span(workload, limits, slots, catalog))


def _horizon(span) -> float:
    last, spread, longest, _ = span
    return last + 4.0 * spread + longest + 86400.0


#: policy ticks one run may take (a tick far shorter than the work would never end in practice)
MAX_TICKS = 10_000_000


def _work_span(workload, limits, slots, catalog):
    """Pool seconds: (the last arrival, the work spread over the slowest capacity the pool may
    hold, the longest task at the slowest type's speed, and at the fastest type's). A run lasts at
    least the largest of the first and the last."""
    cat = _catalog(catalog)
    slots = dict(slots or {})
    speeds = [cat.generation(cat.instance(t).generation).speed_factor for t in limits.types]
    speed = min(speeds)
    cap = limits.quota_cores
    if cap is None:
        cap = sum(cat.zone(z).capacity.get(t, 0) for z in limits.zones for t in limits.types)
        cap = cap * min(slots.get(t, cat.instance(t).cores) / cat.instance(t).cores for t in limits.types)
    cap = max(float(cap), 1.0)
    work = float(np.sum(workload.work))
    longest = float(np.max(workload.work, initial=0.0))
    return float(np.max(workload.arrival, initial=0.0)), work / (cap * speed), longest / speed, longest / max(speeds)


def simulate(policy, workload: Workload, limits: PoolLimits, *, catalog=None, tick: float = 60.0,
             horizon: float | None = None, seed: int = 0, slots: Mapping[str, int] | None = None,
             capacity: float | Mapping[str, float] = 1.0, capacity_curve=None,
             capacity_noise: float = 0.0, capacity_interval: float = 3600.0, spot_capacity: float = 1.0,
             reclaim_scale: float = 1.0, reclaim_rate: float | None = None, linger: float = 3600.0,
             record_every: int = 1, progress: bool | None = None,
             boot: Mapping[str, float] | None = None, market=None) -> SimResult:
    """Run ``policy`` on the virtual clock.

    Parameters
    ----------
    policy
        Any object with ``decide(PoolState) -> Decision`` (e.g. from
        :func:`hpclab.elastic.policies.make_policy`).
    workload : Workload
        Tasks (see :func:`make_workload`).
    limits : PoolLimits
        Types, zones, per-type bounds and core quota (see :func:`campaign_limits`).
    tick : float
        Pool seconds between policy ticks (the real pool's ``Adaptive`` interval / time_scale).
    horizon : float, optional
        Stop at this pool time at the latest (default :func:`default_horizon`: it follows the
        work). A run that reaches it with tasks left says so in ``summary["note"]``.
    seed : int
        Seed of boots, reclaims and capacity noise.
    slots : mapping, optional
        Task slots per instance of a type (default: the catalog's physical cores); the real pool
        gives each worker a few threads, so a replay of a real run passes the same numbers.
    capacity : float or mapping zone -> float
        Factor on the catalog's zone capacities (all zones, or per zone).
    capacity_curve : (times, factors), optional
        A piecewise-constant factor on every zone's capacity from each time on.
    capacity_noise : float
        Standard deviation of a seeded shortage process: per zone and type, the capacity factor is
        ``min(1, exp(x - s**2/2))`` with ``x`` an AR(1) process (correlation 0.8 per
        ``capacity_interval``) of standard deviation ``s``.
    spot_capacity : float
        Fraction of each zone's capacity open to spot (refusals of spot alone are
        ``(itype, zone, "spot")`` keys in ``state.refused``).
    reclaim_scale, reclaim_rate
        Factor on the catalog's ``spot_reclaim_rate`` per zone, or one rate for all zones
        (reclaims per instance per second).
    linger : float
        After the last task, stop once no instance is left or ``linger`` seconds have passed.
    record_every : int
        Record the time series every this many ticks.
    progress : bool, optional
        Show a tqdm progress bar of completed tasks (default: for 500,000 tasks or more).
    boot : mapping itype -> float, optional
        A fixed boot time (pool seconds, request to running) per type instead of the catalog's
        lognormal, e.g. the boots measured on a real run (:func:`replay`).
    market : hpclab.elastic.faults.SpotMarket, optional
        How spot reclaims come (default ``SpotMarket()``: in waves per (type, zone) market, at
        the zones' mean rates) and how spot is priced (protection option, price path, bid).

    Returns
    -------
    SimResult
        Its ``summary``: ``tasks``, ``completed``, ``makespan_s`` (last completion minus first
        arrival), ``cost_usd`` (the bill), ``core_hours`` (physical cores x lifetime),
        ``utilisation`` (busy slot-seconds / slot-seconds of instances alive, boots included),
        ``work_redone`` (normalised units lost to hard kills), ``tasks_redone``, ``refusals``
        (instances refused), ``refusal_events``, ``quota_clipped``, ``reclaims`` (spot notices),
        ``hard_kills``, ``instances`` (launched), ``peak_cores``, ``limit_violations`` (ticks at
        which serving instances broke ``max_per_type`` or the quota), ``ticks``, ``events`` (task
        starts and ends + instance lifecycle changes + control events), ``wall_s``,
        ``events_per_s``.
    """
    cat = _catalog(catalog)
    if not isinstance(workload, Workload):
        raise HpclabError(f"workload must be a Workload (see make_workload), got {type(workload).__name__}")
    if not isinstance(limits, PoolLimits):
        raise HpclabError(f"limits must be a PoolLimits, got {type(limits).__name__}")
    if not hasattr(policy, "decide"):
        raise HpclabError(f"policy must have decide(state), got {policy!r}")
    for t in limits.types:
        cat.instance(t)
    for z in limits.zones:
        cat.zone(z)
    check_positive("tick", tick)
    if horizon is not None:
        check_positive("horizon", horizon)
    check_nonnegative("linger", linger)
    check_shortage(capacity_noise)
    check_positive("capacity_interval", capacity_interval)
    check_nonnegative("reclaim_scale", reclaim_scale)
    if reclaim_rate is not None:
        check_nonnegative("reclaim_rate", reclaim_rate)
    record_every = check_positive("record_every", record_every, integer=True)
    if progress is None:
        progress = workload.tasks >= 500_000
    if isinstance(spot_capacity, bool) or not isinstance(spot_capacity, (int, float)) \
            or not 0 <= spot_capacity <= 1:
        raise HpclabError(f"spot_capacity must be a number in [0, 1], got {spot_capacity!r}")
    if market is not None:
        from hpclab.elastic.faults import SpotMarket

        if not isinstance(market, SpotMarket):
            raise HpclabError(f"market must be a SpotMarket, got {type(market).__name__}")
    boot = fixed_boots(boot, limits.types)
    slots = dict(slots or {})
    for t, n in slots.items():
        if t not in limits.types:
            raise HpclabError(f"slots names {t!r}, which is not in the pool's types ({', '.join(limits.types)})")
        check_positive(f"slots[{t}]", n, integer=True)
    if isinstance(capacity, Mapping):
        for z, f in capacity.items():
            if z not in limits.zones:
                raise HpclabError(f"capacity names zone {z!r}; allowed: {', '.join(limits.zones)}")
            check_nonnegative(f"capacity[{z}]", f)
        cap = np.array([float(capacity.get(z, 1.0)) for z in limits.zones])
    else:
        cap = np.full(len(limits.zones), float(check_nonnegative("capacity", capacity)))
    curve = check_curve(capacity_curve)
    span = _work_span(workload, limits, slots, cat)
    if horizon is None:
        horizon = _horizon(span)
    # a lower bound of the run: it lasts past the last arrival and past its longest task at the
    # fastest type's speed
    least = min(max(span[0], span[3]), float(horizon))
    if least / tick > MAX_TICKS:
        lo = least / MAX_TICKS
        step = 10 ** (math.floor(math.log10(lo)) - 2)  # three significant digits, rounded up
        raise HpclabError(f"tick {tick:g} s: the run lasts at least {least:,.0f} pool seconds, more "
                          f"than {MAX_TICKS:,} policy ticks; take a tick of at least {math.ceil(lo / step) * step:.3g} s")
    eng = Engine(policy, workload, limits, cat, tick=float(tick), horizon=float(horizon), seed=seed,
                 slots=slots, capacity=cap, capacity_curve=curve, capacity_noise=float(capacity_noise),
                 capacity_interval=float(capacity_interval), spot_capacity=float(spot_capacity),
                 reclaim_scale=float(reclaim_scale), reclaim_rate=reclaim_rate, linger=float(linger),
                 progress=progress, record_every=record_every, boot=boot, market=market).run()
    return SimResult(eng, cat, getattr(policy, "name", type(policy).__name__))


def _instance_names(eng: Engine):
    """Each instance's type, zone and market names (object arrays)."""
    ins, n = eng.inst, eng.inst.n
    if not n:
        return (np.zeros(0, dtype=object),) * 3
    return (np.array(eng.types, dtype=object)[ins.itype[:n]], np.array(eng.zones, dtype=object)[ins.zone[:n]],
            np.array(MARKETS, dtype=object)[ins.market[:n]])


def _summary(eng: Engine, cat, name: str) -> dict:
    T = eng.end_time
    ins, att = eng.inst, eng.att
    n, na = ins.n, att.n
    grant = ins.grant[:n]
    end = np.minimum(ins.end[:n], T)  # open instances billed to the end
    itype, zone, market = _instance_names(eng)
    cost = float(np.sum(instance_costs(itype, zone, market, grant, end, cat, schedule=eng.market)[2]))
    completed = int(np.sum(eng.t_end <= T + 1e-9))
    all_done = completed == eng.ntasks
    makespan = float(np.nanmax(eng.t_end) - eng.arrival.min()) if all_done and eng.ntasks else math.nan
    life = np.maximum(end - grant, 0.0)
    core_s = float((eng.t_cores[ins.itype[:n]] * life).sum())
    slot_s = float((ins.nslots[:n] * life).sum())
    busy_s = float((np.minimum(att.end[:na], T) - att.start[:na]).clip(min=0).sum())
    peak = int(eng.peak_cores)  # the most running cores of any record
    events = int(eng.events + na + int(np.sum(np.isfinite(att.end[:na]))))
    return {
        "policy": name,
        "tasks": int(eng.ntasks),
        "completed": completed,
        "makespan_s": makespan,
        "cost_usd": cost,
        "core_hours": core_s / 3600.0,
        "utilisation": busy_s / slot_s if slot_s > 0 else 0.0,
        "work_redone": float(eng.work_redone),
        "tasks_redone": int(att.killed[:na].sum()),
        "refusals": int(eng.n_refused),
        "refusal_events": int(eng.n_refusal_events),
        "quota_clipped": int(eng.n_quota_clipped),
        "reclaims": int(eng.n_notices),
        "hard_kills": int(eng.n_kills),
        "instances": int(n),
        "peak_cores": peak,
        "limit_violations": int(eng.limit_violations),
        "ticks": int(eng.nticks),
        "end_time_s": T,
        "events": events,
        "wall_s": float(eng.wall),
        "events_per_s": events / eng.wall if eng.wall > 0 else math.inf,
        "note": "" if all_done else (f"stopped at the horizon ({T:,.0f} s of virtual time) with "
                                     f"{completed:,} of {eng.ntasks:,} tasks done; raise horizon or "
                                     "the pool's limits"),
    }


def _log(inst: pd.DataFrame, T: float) -> xr.Dataset:
    """Lifecycle event log: requested+booting at grant, running, draining, terminated."""
    frames = []
    base = inst[["instance", "itype", "zone", "market"]]

    def part(mask, time, state, reason):
        df = base[mask].copy()
        df["time"] = np.asarray(time)[mask]
        df["state"] = state
        df["reason"] = reason if isinstance(reason, str) else np.asarray(reason)[mask]
        frames.append(df)

    allm = np.ones(len(inst), dtype=bool)
    end = inst["end"].to_numpy()
    ready = inst["ready"].to_numpy()
    part(allm, inst["start"].to_numpy(), "requested", "policy launch")
    part(allm, inst["start"].to_numpy(), "booting", "capacity granted")
    up = ~(ready >= np.nan_to_num(end, nan=np.inf)) & (ready <= T)
    part(up, ready, "running", "boot complete")
    drain = inst["drain"].to_numpy()
    dmask = np.isfinite(drain)
    why = np.where(np.isfinite(inst["notice"].to_numpy()), "spot reclaim notice", "retired by policy")
    part(dmask, drain, "draining", why)
    part(np.isfinite(end), end, "terminated", inst["reason"].to_numpy())
    log = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["instance", "itype", "zone", "market", "time", "state", "reason"])
    order = {"requested": 0, "booting": 1, "running": 2, "draining": 3, "terminated": 4}
    log = log.assign(_o=log["state"].map(order)).sort_values(["time", "_o", "instance"], kind="stable")
    log = log.drop(columns="_o").reset_index(drop=True)
    ds = xr.Dataset({c: ("event", log[c].to_numpy()) for c in
                     ("time", "instance", "itype", "zone", "market", "state", "reason")})
    ds["time"].attrs["units"] = "s"
    return ds


def campaign(cores: int = 100_000, tasks: int = 1_000_000, *, policy="global-spot",
             mean_work: float = 1800.0, sigma: float = 0.5, arrival: str = "uniform",
             window: float = 4 * 3600.0, hysteresis: bool = True, spot_share: float | None = None,
             deadline: float | None = None, budget: float | None = None, target_duration: float = 3600.0,
             types=None, zones=None, seed: int = 0, catalog=None, **kw) -> SimResult:
    """A screening campaign at scale: ``tasks`` lognormal tasks on up to ``cores`` slots.

    ``policy`` is a name from :data:`hpclab.elastic.policies.POLICY_NAMES` (built with
    ``target_duration``, ``spot_share``, ``deadline``/``budget`` and wrapped in hysteresis if
    asked) or a policy object. Other keywords go to :func:`simulate`.
    """
    from hpclab.elastic.policies import make_policy

    cat = _catalog(catalog)
    limits = campaign_limits(cores, types=types, zones=zones, catalog=cat)
    check_positive("tasks", tasks, integer=True)
    check_positive("mean_work", mean_work)
    if isinstance(policy, str):
        params = {"catalog": cat}
        if policy != "deadline-budget":
            params["target_duration"] = target_duration
        if spot_share is not None and policy in ("spot-first", "global-spot"):
            params["spot_share"] = spot_share
        if policy == "deadline-budget":
            params.update(deadline=deadline if deadline is not None else 86400.0,
                          budget=budget if budget is not None else math.inf)
            if not math.isfinite(params["budget"]):
                params["budget"] = 1e12
        pol = make_policy(policy, hysteresis=hysteresis, **params)
    else:
        pol = policy
    wl = make_workload(tasks, duration="lognormal", mean=mean_work, sigma=sigma, arrival=arrival,
                       window=window, seed=seed)
    return simulate(pol, wl, limits, catalog=cat, seed=seed, **kw)


def _sleep(i, seconds):
    import time as _time

    _time.sleep(seconds)


def real_burst(policy, limits: PoolLimits, *, tasks: int = 40, task_seconds: float = 10.0,
               time_scale: float = 0.01, interval: float = 0.1, catalog=None, seed: int = 0,
               timeout: float = 60.0) -> dict:
    """Run a burst of sleeping tasks on a real :class:`~hpclab.elastic.pool.ElasticPool` (in-process
    workers, one thread each) and measure it, for :func:`replay`.

    Each task sleeps ``task_seconds`` pool seconds (``task_seconds * time_scale`` wall seconds).
    Dask's task stream records where and when each task ran; the per-task *slot time* is from a
    task's start to the next start on the same worker (so Dask's per-task overhead is included),
    in pool seconds. Results are not kept (``fire_and_forget``).

    Returns
    -------
    dict
        ``slot_seconds`` (per task, submission order), ``makespan_s`` (submission to the end of
        the last task), ``boot_seconds`` (per instance, request to running in pool seconds: the
        sampled boot plus the worker's real start-up), ``instances`` (launched), ``cost_usd`` (the pool's bill once it is back to zero),
        ``log`` (the pool's event log), ``end_time_s``, ``time_scale``, ``interval``, ``limits``,
        ``itype`` (the type the tasks ran on, or None if several).
    """
    import time as _time

    from distributed import Client, fire_and_forget, get_task_stream

    from hpclab.elastic.pool import ElasticPool

    cat = _catalog(catalog)
    tasks = check_positive("tasks", tasks, integer=True)
    check_positive("task_seconds", task_seconds)
    slots = {t: 1 for t in limits.types}
    with ElasticPool(limits=limits, catalog=cat, time_scale=time_scale, processes=False, policy=policy,
                     interval=interval, seed=seed, threads=1) as pool, Client(pool) as client:
        with get_task_stream(client) as stream:
            wall_submit = _time.time()
            futures = client.map(_sleep, range(tasks), [task_seconds * time_scale] * tasks, pure=False)
            keys = {f.key: k for k, f in enumerate(futures)}
            # results are not kept: no worker is left holding the only copy of one when the
            # policy retires it (Dask would refuse to retire it)
            fire_and_forget(futures)
            del futures
            try:
                pool.wait_for(lambda p: p.snapshot().done >= tasks, timeout=timeout)
                pool.wait_for(lambda p: len(p.alive()) == 0, timeout=timeout)
            except TimeoutError:
                raise HpclabError(f"the burst did not finish and scale back to zero within "
                                  f"{timeout} s of wall time") from None
        t_end = pool.now()
        cost = float(pool.bill(until=t_end)["total_cost"])
        log = pool.events()
    rows = [(keys[t["key"]], t["worker"], s["start"], s["stop"]) for t in stream.data
            if t["key"] in keys for s in t["startstops"] if s["action"] == "compute"]
    df = pd.DataFrame(rows, columns=["task", "worker", "start", "end"]).set_index("task").sort_index()
    if len(df) != tasks or not df.index.is_unique:
        raise HpclabError(f"the task stream recorded {len(df)} computations for {tasks} tasks")
    by_worker = df.sort_values(["worker", "start"])
    slot = (by_worker.groupby("worker")["start"].shift(-1) - by_worker["start"]).fillna(
        by_worker["end"] - by_worker["start"])
    makespan = (float(df["end"].max()) - wall_submit) / time_scale
    itypes = set(log["itype"].values)
    ev = log.to_dataframe()
    first = ev.groupby(["instance", "state"])["time"].min().unstack()
    boots = (first["running"] - first["requested"]).dropna() if {"running", "requested"} <= set(first) \
        else pd.Series(dtype=float)
    return {"slot_seconds": slot.sort_index().to_numpy() / time_scale, "makespan_s": makespan,
            "boot_seconds": boots.to_numpy(dtype=float),
            "instances": len(set(log["instance"].values)), "cost_usd": cost, "log": log,
            "end_time_s": t_end, "time_scale": time_scale, "interval": interval, "limits": limits,
            "slots": slots, "itype": itypes.pop() if len(itypes) == 1 else None}


def replay(burst: dict, policy, *, catalog=None, seed: int = 0, **kw) -> SimResult:
    """Replay a :func:`real_burst` on the virtual clock: the same limits, one slot per instance,
    a tick of ``interval / time_scale`` pool seconds, the measured slot times as the tasks'
    work (``duration="empirical"``, converted to normalised units with the speed factor of the
    type they ran on) and the mean measured boot (request to running: the worker's real start-up,
    which a busy machine stretches, is part of it) as a fixed boot. Other keywords go to
    :func:`simulate` (``boot={}`` keeps the catalog's boots)."""
    cat = _catalog(catalog)
    itype = burst["itype"] or burst["limits"].types[0]
    speed = cat.generation(cat.instance(itype).generation).speed_factor
    wl = make_workload(duration="empirical", samples=burst["slot_seconds"], sample_speed=speed)
    kw.setdefault("reclaim_rate", 0.0)
    boots = np.asarray(burst.get("boot_seconds", ()), dtype=float)
    if "boot" not in kw and boots.size:
        kw["boot"] = {itype: float(boots.mean())}
    return simulate(policy, wl, burst["limits"], catalog=cat, tick=burst["interval"] / burst["time_scale"],
                    slots=burst["slots"], seed=seed, **kw)
