"""Replay a job trace on the platform: one elastic platform or two separate fixed clusters.

``policy="unified"`` (the E-HPC idea): one submission front; a router sends HPC jobs to a
Slurm-like queue and AI jobs to a Kubernetes-like queue; both draw on shared elastic pools (a CPU
pool used by HPC gangs and data pods, a GPU pool used by training and inference pods) that grow
after the boot time and shrink when idle.

``policy="separate"`` (the baseline): an HPC cluster (Slurm-like queue on ``cpu_nodes`` fixed CPU
nodes) and an AI cluster (Kubernetes-like queue on ``gpu_nodes`` fixed GPU nodes plus
``data_nodes`` fixed CPU nodes for data pods), each paid for the whole replay.

Both use the same capacity limits (the unified CPU pool may grow to ``cpu_nodes + data_nodes``),
so the comparison isolates sharing and elasticity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._deprecated import deprecated
from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive
from hpclab.elastic.billing import bill_instances, unit_price
from hpclab.platform import _model
from hpclab.platform.engine import EV_CAPACITY, Engine, Kube, Pool, Router, Slurm

#: why a node ended (``instances.reason``), the task-bag simulator's words
END_REASONS = ("running at end", "retired by policy", "drained after notice", "spot reclaimed (hard kill)",
               "reclaimed while booting")
from hpclab.platform.jobs import GANG_KINDS, KINDS, check_jobs

__all__ = ["replay", "PlatformResult", "POLICIES", "PLACEMENTS", "replay_each", "bounded_slowdown"]

POLICIES = ("unified", "separate")
PLACEMENTS = ("topology", "linear")
QUANTILES = (0.5, 0.9, 0.99)


def bounded_slowdown(wait, run, tau=None):
    """``max(1, (wait + run) / max(run, tau))`` with ``tau`` = 10 s (Feitelson et al. 1997)."""
    tau = _model.figure("bounded_slowdown", "tau") if tau is None else tau
    wait = np.asarray(wait, dtype=float)
    run = np.asarray(run, dtype=float)
    return np.maximum(1.0, (wait + run) / np.maximum(run, tau))


@dataclass
class PlatformResult:
    """What a replay returns.

    Attributes
    ----------
    jobs : pandas.DataFrame
        The job table plus ``start``, ``end``, ``wait``, ``response``, ``bsld`` (bounded
        slowdown), ``segments`` (network segments a gang spans), ``slowdown`` (run-time factor
        from its placement), ``backfilled``, ``finished`` (times it finished: 1) and ``status``
        (``done`` or ``rejected``: larger than its cluster can ever hold), ``reason`` (why it
        was rejected, else empty) and ``killed`` (ran into its requested time and was stopped
        there).
    instances : pandas.DataFrame
        One row per node: ``pool``, ``itype``, ``launch``, ``ready``, ``end`` (s), ``cost`` (USD).
    pools : pandas.DataFrame
        Per pool: instance type, slots per node, maximum and launched nodes, node-hours,
        utilisation (busy slot-seconds / slot-seconds of running nodes), cost (USD).
    policy : str
    makespan : float
        Seconds from the first submit to the last event.
    record : pandas.DataFrame or None
        With ``record=True``: one row per pod start (+slots) and release (-slots) on a node.
    """

    jobs: pd.DataFrame
    instances: pd.DataFrame
    pools: pd.DataFrame
    policy: str
    makespan: float
    settings: dict
    record: pd.DataFrame | None = None
    market: object = None  # the run's hpclab.elastic.faults.MarketSchedule (spot), else None

    @property
    def cost(self) -> float:
        """Total bill in USD."""
        return float(self.pools["cost"].sum())

    def summary(self) -> xr.Dataset:
        """Metrics as a Dataset: wait and bounded-slowdown percentiles per job kind, jobs placed
        in one segment, utilisation and cost per pool (see :func:`_summary`)."""
        return _summary(self)

    def table(self) -> pd.DataFrame:
        """The per-kind metrics as a readable DataFrame (what the CLI prints)."""
        ds = self.summary()
        rows = []
        for k in ds["kind"].values:
            d = ds.sel(kind=k)
            if int(d["jobs"]) == 0:
                continue
            rows.append({"kind": str(k), "jobs": int(d["jobs"]),
                         "wait mean [s]": float(d["wait_mean"]),
                         "wait p50 [s]": float(d["wait"].sel(quantile=0.5)),
                         "wait p90 [s]": float(d["wait"].sel(quantile=0.9)),
                         "wait p99 [s]": float(d["wait"].sel(quantile=0.99)),
                         "bsld mean": float(d["bsld_mean"]),
                         "bsld p90": float(d["bsld"].sel(quantile=0.9)),
                         "one segment": f"{int(d['in_one_segment'])}/{int(d['gangs'])}"
                         if int(d["gangs"]) else "-",
                         "backfilled": int(d["backfilled"])})
        return pd.DataFrame(rows).set_index("kind") if rows else pd.DataFrame()


def _catalog(catalog):
    from hpclab.catalog import resolve

    return resolve(catalog)


def _per_type(name, value, types, integer=False, scalar=True):
    """``value`` (a number if ``scalar``, or a mapping of instance types among ``types`` to
    numbers >= 0) checked: one line naming the entry that is not."""
    if not isinstance(value, Mapping):
        if not scalar:
            raise HpclabError(f"{name} must map instance types to numbers, got {value!r}")
        return check_nonnegative(name, value, integer=integer)
    out = {}
    for k, v in value.items():
        if k not in types:
            raise HpclabError(f"{name}: {k!r} is not one of the pools' types ({', '.join(types)})")
        out[k] = check_nonnegative(f"{name}[{k}]", v, integer=integer)  # finite too
    return out


def _show_per_type(value):
    """A per-type setting as a result attribute (netCDF takes no mappings)."""
    if not isinstance(value, Mapping):
        return value
    if not value:
        return 0
    return ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())


def _make_pool(name, itype, nodes, *, elastic, catalog, placement, idle_timeout, min_nodes, seg_nodes,
               topology, market, rng, zone=None, capacity=None, schedule=None, reclaim_rate=None, boot):
    from hpclab.platform.placement import node_topology, slowdowns

    rec = catalog.instance(itype)
    slots = rec.gpus if rec.gpus > 0 else rec.vcpus
    topo = node_topology(rec, topology, catalog)
    seg = topo.hosts_per_leaf if seg_nodes is None else seg_nodes
    price = unit_price(rec, market)
    warm = min_nodes.get(itype, 0) if isinstance(min_nodes, Mapping) else min_nodes
    pool = Pool(name, itype, slots, nodes, seg, elastic=elastic, min_nodes=min(warm, nodes),
                idle_timeout=idle_timeout, boot_time=boot.get(itype, rec.boot_time), price=price,
                min_charge=rec.min_charge, placement=placement, slowdown=slowdowns(rec, topo, catalog),
                segments_per_pod=topo.leaves_per_pod, rng=rng)
    pool.market = market
    if zone is not None:
        pool.zone = zone
        pool.capacity = capacity
        pool.cores = rec.cores
        if market == "spot":
            pool.spot = True
            pool.schedule = schedule
            pool.reclaim_rate = (catalog.zone(zone).spot_reclaim_rate if reclaim_rate is None
                                 else float(reclaim_rate))
            pool.notice = float(rec.spot_notice)
            pool.njobs = []
    return pool


def _zones(zone, market, types, catalog):
    """The catalog zone of the CPU and of the GPU pools: ``zone`` (one name or a pair), else for
    spot the first catalog zone offering each type (as a scenario's pool), else None (no zone)."""
    from hpclab.catalog import UnknownNameError

    if zone is None:
        if market != "spot":
            return None, None
        out = []
        for t in types:
            z = next((z for z, rec in catalog.zones.items() if rec.capacity.get(t, 0)), None)
            if z is None:
                raise HpclabError(f"no catalog zone offers {t} (spot needs a zone: pass zone=)")
            out.append(z)
        return tuple(out)
    zones = (zone, zone) if isinstance(zone, str) else tuple(zone)
    if len(zones) != 2 or not all(isinstance(z, str) for z in zones):
        raise HpclabError(f"zone must be a catalog zone name or a pair (CPU zone, GPU zone), got {zone!r}")
    for z in zones:
        if z not in catalog.zones:
            raise UnknownNameError(f"unknown zone {z!r}; known: {', '.join(sorted(catalog.zones))}")
    return zones


def replay(jobs, policy: str = "unified", *, cpu_type: str = "ecs.c8i.32xlarge",
           gpu_type: str = "ecs.ebmgn8is.32xlarge", cpu_nodes: int = 128, gpu_nodes: int = 16,
           data_nodes: int | None = None, elastic: bool | None = None, backfill: bool = True,
           placement: str = "topology", depth: int = 100, idle_timeout: float = 300.0,
           min_nodes: int | Mapping[str, int] = 0, boot: Mapping[str, float] | None = None,
           cpu_segment: int | None = None, gpu_segment: int | None = None,
           cpu_topology=None, gpu_topology=None,
           market: str = "on-demand", kube_strategy: str = "best-effort", seed: int = 0,
           scaler=None, tick: float = 60.0, slurm: dict | None = None,
           zone=None, spot_market=None, reclaim_rate: float | None = None, capacity: float = 1.0,
           spot_capacity: float = 1.0, capacity_curve=None, capacity_noise: float = 0.0,
           capacity_interval: float = 3600.0, max_reruns: int = 6,
           record: bool = False, progress: bool = False, catalog=None) -> PlatformResult:
    """Replay a job table (see :mod:`hpclab.platform.jobs`) on the platform.

    Parameters
    ----------
    jobs : pandas.DataFrame
        From :func:`read_swf`, :func:`read_gpu_csv`, :func:`lublin_feitelson`, ...
    policy : {"unified", "separate"}
        One platform with shared pools, or separate HPC and AI clusters (module docstring).
    cpu_type, gpu_type : str
        Catalog instance types of the CPU and GPU nodes (slots: vCPUs, GPUs).
    cpu_nodes, gpu_nodes : int
        Nodes of the HPC cluster and of the GPU pool (the maximum an elastic pool grows to).
    data_nodes : int, optional
        CPU nodes for data pods in the separate AI cluster (default ``max(1, cpu_nodes // 8)``);
        the unified CPU pool may grow to ``cpu_nodes + data_nodes``.
    elastic : bool, optional
        Elastic pools (default: True for unified, False for separate).
    backfill : bool
        EASY backfill in the Slurm-like queue (else strict priority/FIFO).
    placement : {"topology", "linear"} or hpclab.elastic.placement.Placement
        Topology-aware placement and scale-out, or nodes in index order / random segments, or
        a placement object of one's own (each pool gets it).
    depth : int
        Queued jobs a pass looks at (Slurm's ``bf_max_job_test``).
    idle_timeout : float
        Seconds an elastic node stays idle before it is retired.
    min_nodes : int or {type: int}
        Nodes an elastic pool keeps warm (one count for every pool, or per instance type).
    boot : {type: float}, optional
        Seconds a node of the type takes to boot (default: the catalog's ``boot_time``).
    cpu_segment, gpu_segment : int, optional
        Hosts per network segment (default: the topology's ``hosts_per_leaf``).
    cpu_topology, gpu_topology : str or hpclab.network.Topology, optional
        Network topology of the CPU and GPU hosts (default presets ``vpc-placement-group`` and
        ``hpn7``); gives segment sizes, hops and oversubscription
        (:func:`hpclab.network.placement.cross_segment_slowdown`).
    market : {"on-demand", "spot"}
        How the nodes are bought. Spot nodes are billed at the spot price (its path, with
        ``spot_market``) and reclaimed by the spot market of their zone: a notice (the node takes
        no new job; an idle or booting node goes at once), then after the catalog ``spot_notice``
        a hard kill of the jobs still on it, which go back to their queue (a gang loses all its
        nodes; independent pods only those on the node). A fixed pool asks for a replacement node.
    zone : str or (str, str), optional
        Catalog zone of the pools (one for both, or the CPU pool's and the GPU pool's). Its
        capacity per type (cores, times ``capacity``) limits launches, shared by the pools of one
        type: a launch beyond it is refused (counted in ``pools.refused``) and asked again when
        capacity frees. Default: no zone (launches always granted), or for spot the first zone
        offering each type.
    spot_market : hpclab.elastic.faults.SpotMarket, optional
        The spot market (reclaim waves or independent reclaims, protection, bid, price path;
        default ``SpotMarket()``): the same seeded schedule as the task-bag simulator's for the
        same ``seed`` and grants.
    reclaim_rate : float, optional
        Mean reclaims per spot instance-second (default: the zone's catalog ``spot_reclaim_rate``).
    capacity, spot_capacity : float
        Factor on the zones' capacities; the share of it open to spot.
    capacity_curve : (times, factors), optional
        A piecewise-constant factor on the zones' capacities from each time on (the trace's
        seconds, as ``submit``; 1 before the first time), as :func:`hpclab.elastic.simulate`'s:
        where a drop leaves a zone's cores in use above its capacity, spot nodes there get a
        reclaim notice, newest first, until it fits (on-demand nodes stay, but no more are
        granted); after a rise, refused pools ask again. Needs a zone (``zone`` or spot).
    capacity_noise, capacity_interval : float
        The task-bag simulator's seeded shortage (:class:`hpclab.elastic.capacity.ShortageNoise`):
        in each ``capacity_interval`` seconds (of the trace's clock, from 0) the capacity of each
        pool's (zone, type) is scaled by a factor of at most 1, an AR(1) process in log of
        standard deviation ``capacity_noise``; the same draws as the simulator's for the same
        ``seed``, zones and types (CPU type, then GPU type). A drop reclaims and a rise wakes
        refused pools, as the curve's. Needs a zone.
    max_reruns : int
        Times a job killed by reclaims is queued again; killed once more it is given up
        (``status == "failed"``), as a Kubernetes Job stops after ``backoffLimit`` (default 6)
        failed pods: a job longer than the market's time between reclaims would never end.
    kube_strategy : {"best-effort", "strict"}
        Kubernetes-like queue order: a job that fits may pass one that does not (Kueue
        ``BestEffortFIFO``), or the first waiting job blocks its pool (``StrictFIFO``).
    seed : int
        Seed for random segment choice (``placement="linear"``).
    scaler : str, policy or callable, optional
        The :mod:`hpclab.elastic.policies` policy that scales each elastic pool (default
        ``"shortfall"``, :class:`~hpclab.elastic.policies.Shortfall` with ``idle_timeout``: launch
        for the queued shortfall at once, retire after ``idle_timeout``): a policy name for
        :func:`hpclab.elastic.policies.make_policy` (a policy without the ``shortfall`` and ``idle``
        ``triggers`` is wrapped in ``Hysteresis`` with ``wait=idle_timeout``), a policy object (copied per pool) or a
        function returning one. A policy whose ``triggers`` are those is asked when they hold (a
        shortfall after a scheduling pass, an idle node due); any other is asked every ``tick``
        seconds while a pool has queued work or nodes (slots are task slots; see
        :meth:`engine.Pool.pool_state`).
    tick : float
        Seconds of virtual time between two decisions of a policy asked at ticks.
    slurm : dict, optional
        Options of the Slurm-like queue that model a real Slurm (:class:`engine.Slurm`:
        ``limit_unit``, ``bf_interval``, ``reserve``, ``launch_latency``; docs/platform.md).
    record : bool
        Keep a per-node log of pod starts and releases (for checks; slower).
    progress : bool
        Show a tqdm progress bar over the jobs.

    Returns
    -------
    PlatformResult
    """
    check_choice("policy", policy, POLICIES)
    if isinstance(placement, str):
        check_choice("placement", placement, PLACEMENTS)
    else:
        from hpclab.elastic.placement import make_placement

        make_placement(placement)  # one line if it is not a placement
    check_choice("market", market, ("on-demand", "spot"))
    check_choice("kube_strategy", kube_strategy, ("best-effort", "strict"))
    if reclaim_rate is not None:
        check_nonnegative("reclaim_rate", reclaim_rate)
    cpu_nodes = check_positive("cpu_nodes", cpu_nodes, integer=True)
    gpu_nodes = check_positive("gpu_nodes", gpu_nodes, integer=True)
    data_nodes = max(1, cpu_nodes // 8) if data_nodes is None else check_positive("data_nodes", data_nodes,
                                                                                  integer=True)
    depth = check_positive("depth", depth, integer=True)
    check_nonnegative("idle_timeout", idle_timeout)
    min_nodes = _per_type("min_nodes", min_nodes, (cpu_type, gpu_type), integer=True)
    boot = _per_type("boot", {} if boot is None else boot, (cpu_type, gpu_type), scalar=False)
    for name, v in (("cpu_segment", cpu_segment), ("gpu_segment", gpu_segment)):
        if v is not None:
            check_positive(name, v, integer=True)
    jobs = check_jobs(jobs)
    cat = _catalog(catalog)
    elastic = (policy == "unified") if elastic is None else bool(elastic)
    rng = np.random.default_rng(seed)
    cpu_zone, gpu_zone = _zones(zone, market, (cpu_type, gpu_type), cat)
    schedule = zone_cap = None
    from hpclab.elastic.capacity import ShortageNoise, ZoneCapacity, check_shortage

    check_shortage(capacity_noise)
    if cpu_zone is not None:
        noise = cells = None
        if capacity_noise > 0:
            zones = tuple(dict.fromkeys((cpu_zone, gpu_zone)))
            types = (cpu_type, gpu_type)
            noise = ShortageNoise.seeded(capacity_noise, (len(zones), len(types)), seed, capacity_interval)
            cells = {(z, t): (zones.index(z), k) for z in zones for k, t in enumerate(types)}
        zone_cap = ZoneCapacity(cat, factor=check_positive("capacity", capacity),
                                spot_capacity=spot_capacity, curve=capacity_curve, noise=noise, cells=cells)
    elif capacity_curve is not None or capacity_noise > 0:
        what = "capacity_curve" if capacity_curve is not None else "capacity_noise"
        raise HpclabError(f"{what} needs a zone whose capacity it scales: pass zone=... (or "
                          f"market='spot', which picks one)")
    if market == "spot":
        from hpclab.elastic.faults import SpotMarket

        if spot_market is not None and not isinstance(spot_market, SpotMarket):
            raise HpclabError(f"spot_market must be a SpotMarket, got {type(spot_market).__name__}")
        schedule = (spot_market or SpotMarket()).schedule(cat, seed)
    kw = dict(elastic=elastic, catalog=cat, placement=placement, idle_timeout=idle_timeout,
              min_nodes=min_nodes, market=market, rng=rng, capacity=zone_cap, schedule=schedule,
              reclaim_rate=reclaim_rate, boot=boot)
    eng = Engine(jobs, record=record)
    eng.zone_capacity = zone_cap
    eng.max_reruns = check_nonnegative("max_reruns", max_reruns, integer=True)
    slurm_opts = dict(slurm or {})
    if policy == "unified":
        cpu = _make_pool("cpu", cpu_type, cpu_nodes + data_nodes, seg_nodes=cpu_segment, topology=cpu_topology,
                         zone=cpu_zone, **kw)
        gpu = _make_pool("gpu", gpu_type, gpu_nodes, seg_nodes=gpu_segment, topology=gpu_topology,
                         zone=gpu_zone, **kw)
        pools = [cpu, gpu]
        slurm = Slurm(eng, cpu, backfill=backfill, depth=depth, **slurm_opts)
        kube = Kube(eng, {"train": gpu, "infer": gpu, "data": cpu}, depth=depth, strategy=kube_strategy)
        by_kind = {"hpc": cpu, "train": gpu, "infer": gpu, "data": cpu}
    else:
        hpc = _make_pool("hpc-cpu", cpu_type, cpu_nodes, seg_nodes=cpu_segment, topology=cpu_topology,
                         zone=cpu_zone, **kw)
        gpu = _make_pool("ai-gpu", gpu_type, gpu_nodes, seg_nodes=gpu_segment, topology=gpu_topology,
                         zone=gpu_zone, **kw)
        dat = _make_pool("ai-cpu", cpu_type, data_nodes, seg_nodes=cpu_segment, topology=cpu_topology,
                         zone=cpu_zone, **kw)
        pools = [hpc, gpu, dat]
        slurm = Slurm(eng, hpc, backfill=backfill, depth=depth, **slurm_opts)
        kube = Kube(eng, {"train": gpu, "infer": gpu, "data": dat}, depth=depth, strategy=kube_strategy)
        by_kind = {"hpc": hpc, "train": gpu, "infer": gpu, "data": dat}
    router = Router({"hpc": slurm, "train": kube, "infer": kube, "data": kube}, pools)

    # jobs no cluster of this size can ever hold are rejected at submit (as Slurm does)
    kinds = jobs["kind"].to_numpy()
    pods = jobs["pods"].to_numpy()
    slots = jobs["slots"].to_numpy()
    rejected = np.zeros(len(jobs), dtype=bool)
    reason = np.full(len(jobs), "", dtype=object)
    for kind, pool in by_kind.items():
        sel = kinds == kind
        if not sel.any():
            continue
        g = np.where((slots == 0) | (slots >= pool.G), pool.G, slots)
        if kind in GANG_KINDS:
            need_nodes = np.ceil(pods / (pool.G // g)).astype(np.int64)
            big = sel & (need_nodes > pool.max_nodes)
            rejected |= big
            for i in np.flatnonzero(big):
                reason[i] = (f"needs {need_nodes[i]} nodes at once; the {pool.name} pool has at most "
                             f"{pool.max_nodes}")
        wide = sel & (slots > pool.G)
        rejected |= wide
        for i in np.flatnonzero(wide):
            reason[i] = f"asks {slots[i]} slots per pod; a {pool.itype} node has {pool.G}"

    if elastic:
        check_positive("tick", tick)
        from hpclab.elastic.state import PoolLimits

        for pool in pools:
            pool.scaler = _scaler("shortfall" if scaler is None else scaler, idle_timeout, cat)
            pool.event_driven = _event_driven(pool.scaler)
            if pool.event_driven:  # its idle wakes come from its own timeout
                pool.idle_timeout = float(pool.scaler.idle_timeout)
            pool.tick = float(tick)
            pool.market = market
            pool.limits = PoolLimits(types=(pool.itype,), zones=(pool.name,),
                                     min_per_type={pool.itype: pool.min_nodes},
                                     max_per_type={pool.itype: pool.max_nodes})
    t0 = float(jobs["submit"].iloc[0]) if len(jobs) else 0.0
    curve = None if zone_cap is None else zone_cap.curve
    if curve is not None or (zone_cap is not None and zone_cap.noise is not None):
        zone_cap.set_time(t0)  # the factors at the first submit, then an event at each later change
        eng._arm_noise(t0)
    if curve is not None:
        for tc in curve[0].tolist():
            if tc > t0:
                eng.clock.at(tc, EV_CAPACITY, None, -1, 0)
    for pool in pools:
        pool.eng = eng
        pool.clock = eng.clock
        pool.start_fixed(t0, pool.min_nodes if pool.elastic else pool.max_nodes)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"replay ({policy})", unit="job")
    try:
        eng.run_all(router, rejected.tolist(), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    # the replay ends with the last job or the last retirement (not with an idle sweep that
    # retired nothing)
    t_end = t0
    for values in (eng.end, *(p.nend for p in pools)):
        finite = [e for e in values if e == e]  # NaN: not started / not retired
        if finite:
            t_end = max(t_end, max(finite))
    return _result(jobs, eng, pools, rejected, reason, policy, t0, t_end, slurm,
                   dict(policy=policy, elastic=elastic, backfill=backfill, placement=placement,
                        cpu_type=cpu_type, gpu_type=gpu_type, cpu_nodes=cpu_nodes, gpu_nodes=gpu_nodes,
                        data_nodes=data_nodes, depth=depth, idle_timeout=idle_timeout,
                        min_nodes=_show_per_type(min_nodes), boot=_show_per_type(boot) or "catalog",
                        market=market, kube_strategy=kube_strategy,
                        scaler=getattr(pools[0].scaler, "name", str(scaler)) if elastic else None,
                        scaler_triggers=bool(elastic and pools[0].event_driven),
                        tick=tick, zone=None if cpu_zone is None else f"{cpu_zone},{gpu_zone}",
                        reclaim_rate=reclaim_rate, capacity=capacity, spot_capacity=spot_capacity,
                        capacity_curve=None if curve is None else
                        ", ".join(f"{a:g}:{b:g}" for a, b in zip(*(c.tolist() for c in curve))),
                        capacity_noise=capacity_noise,
                        capacity_interval=capacity_interval if capacity_noise > 0 else None),
                   cat, schedule)


def _scaler(spec, idle_timeout, catalog):
    """One policy object per pool (policies such as Hysteresis remember times)."""
    import copy

    from hpclab.elastic.policies import make_policy

    if isinstance(spec, str):
        from hpclab.elastic.policies import resolve_policy

        trig = getattr(resolve_policy(spec), "triggers", None)
        if trig and set(trig) <= _PLATFORM_TRIGGERS:  # asked at them: it keeps its own idle timeout
            return make_policy(spec, idle_timeout=idle_timeout, catalog=catalog)
        return make_policy(spec, hysteresis=True, wait=idle_timeout, cooldown=0.0, catalog=catalog)
    if hasattr(spec, "decide"):
        memo = {id(catalog): catalog}
        inner_cat = getattr(spec, "catalog", None)
        if inner_cat is not None:
            memo[id(inner_cat)] = inner_cat
        return copy.deepcopy(spec, memo)
    if callable(spec):
        p = spec()
        if hasattr(p, "decide"):
            return p
    raise HpclabError(f"scaler must be a policy name, a policy with decide(state) or a function "
                      f"returning one; got {spec!r}")


def _event_driven(policy) -> bool:
    """A policy that declares when it may act (``triggers``) and an ``idle_timeout`` for its
    idle wakes is asked only then; any other is asked at ticks."""
    trig = getattr(policy, "triggers", None)
    return bool(trig) and set(trig) <= _PLATFORM_TRIGGERS and hasattr(policy, "idle_timeout")


#: the triggers a platform pool evaluates (a policy declaring others is asked at ticks)
_PLATFORM_TRIGGERS = frozenset({"shortfall", "idle"})


def _bill(inst: pd.DataFrame, market: str, catalog, schedule=None) -> np.ndarray:
    """Cost of each node: the one meter (per-second billing with the catalog min_charge; spot
    seconds at the market schedule's price path)."""
    if not len(inst):
        return np.zeros(0)
    table = pd.DataFrame({"instance": np.arange(len(inst)), "itype": inst["itype"].to_numpy(),
                          "zone": inst["zone"].to_numpy(), "market": market,
                          "start": inst["launch"].to_numpy(), "end": inst["end"].to_numpy()})
    return bill_instances(table, catalog, market=schedule)["cost"].to_numpy()


def _result(jobs, eng, pools, rejected, reason, policy, t0, t_end, slurm, settings, catalog, schedule=None):
    df = jobs.copy()
    start = np.array(eng.start)
    end = np.array(eng.end)
    df["start"] = start
    df["end"] = end
    df["wait"] = start - df["submit"].to_numpy()
    df["response"] = end - df["submit"].to_numpy()
    df["run"] = df["run_time"].to_numpy() * np.array(eng.factor)
    df["bsld"] = bounded_slowdown(df["wait"], df["run"])
    df["segments"] = np.array(eng.nseg)
    df["slowdown"] = np.array(eng.factor)
    df["backfilled"] = np.array(eng.backfilled)
    df["finished"] = np.array(eng.finished)
    df["status"] = np.where(rejected, "rejected", np.where(
        df["finished"] > 0, "done", np.where(np.array(eng.failed), "failed", "unfinished")))
    df["reason"] = reason
    df["reruns"] = np.array(eng.reruns, dtype=np.int64)
    # a job that runs past its requested time is killed at the limit (as Slurm does)
    df["killed"] = (df["finished"].to_numpy() > 0) & (df["run_time"].to_numpy() > df["req_time"].to_numpy())
    df["reservation"] = np.nan
    if slurm.first_shadow:
        idx = np.fromiter(slurm.first_shadow.keys(), dtype=np.int64)
        df.loc[idx, "reservation"] = np.fromiter(slurm.first_shadow.values(), dtype=float)
    rows = []
    prow = []
    for pool in pools:
        launch, ready, endn = pool.close(t_end)
        k = len(launch)
        rows.append(pd.DataFrame({"pool": [pool.name] * k, "itype": [pool.itype] * k,
                                  "launch": np.array(launch, dtype=float),
                                  "ready": np.array(ready, dtype=float),
                                  "end": np.array(endn, dtype=float),
                                  "zone": [pool.zone or pool.name] * k, "market": [pool.market] * k,
                                  "reason": np.asarray(END_REASONS, dtype=object)[
                                      np.array(pool.nreason, dtype=np.int64)] if k else []}))
    inst = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    inst["end"] = np.maximum(inst["end"], inst["launch"])
    inst["cost"] = _bill(inst, settings["market"], catalog, schedule)
    for pool in pools:
        sel = inst["pool"] == pool.name
        up = np.clip(inst.loc[sel, "end"] - inst.loc[sel, "ready"], 0, None).sum()
        billed = (inst.loc[sel, "end"] - inst.loc[sel, "launch"]).sum()
        prow.append({"pool": pool.name, "itype": pool.itype, "slots": pool.G, "max_nodes": pool.max_nodes,
                     "segments": pool.S, "elastic": pool.elastic, "launched": int(sel.sum()),
                     "node_hours": billed / 3600.0,
                     "utilisation": pool.busy / (up * pool.G) if up > 0 else 0.0,
                     "cost": float(inst.loc[sel, "cost"].sum()),
                     "zone": pool.zone or "", "market": pool.market, "reclaims": pool.n_reclaims,
                     "hard_kills": pool.n_kills, "lost_slot_seconds": pool.lost,
                     "refused": pool.n_refused, "refusal_events": pool.n_refusal_events})
    record = None
    if eng.record is not None:
        record = pd.DataFrame(eng.record, columns=["time", "job", "pool", "node", "slots"])
    return PlatformResult(jobs=df, instances=inst, pools=pd.DataFrame(prow).set_index("pool"),
                          policy=policy, makespan=t_end - t0, settings=settings, record=record,
                          market=schedule)


def _summary(result: PlatformResult) -> xr.Dataset:
    """Metrics of a replay as an ``xarray.Dataset``.

    Dims ``kind`` (hpc, train, infer, data), ``quantile`` (0.5, 0.9, 0.99) and ``pool``.
    Variables: ``jobs``, ``rejected``, ``wait`` and ``bsld`` percentiles, ``wait_mean``,
    ``bsld_mean``, ``gangs``, ``in_one_segment`` (gang jobs whose nodes share one segment),
    ``backfilled``; per pool ``utilisation``, ``node_hours``, ``cost``, ``launched``; and scalars
    ``total_cost`` (USD) and ``makespan`` (s).
    """
    df = result.jobs
    done = df[df["status"] == "done"]
    q = np.array(QUANTILES)
    n_k = len(KINDS)
    wait = np.full((n_k, q.size), np.nan)
    bsld = np.full((n_k, q.size), np.nan)
    wmean = np.full(n_k, np.nan)
    bmean = np.full(n_k, np.nan)
    jobs = np.zeros(n_k, dtype=int)
    rej = np.zeros(n_k, dtype=int)
    gangs = np.zeros(n_k, dtype=int)
    one = np.zeros(n_k, dtype=int)
    bf = np.zeros(n_k, dtype=int)
    for i, k in enumerate(KINDS):
        d = done[done["kind"] == k]
        jobs[i] = len(d)
        rej[i] = int(((df["kind"] == k) & (df["status"] == "rejected")).sum())
        if len(d):
            wait[i] = np.quantile(d["wait"].to_numpy(), q)
            bsld[i] = np.quantile(d["bsld"].to_numpy(), q)
            wmean[i] = d["wait"].mean()
            bmean[i] = d["bsld"].mean()
            bf[i] = int(d["backfilled"].sum())
            if k in GANG_KINDS:
                gangs[i] = len(d)
                one[i] = int((d["segments"] == 1).sum())
    p = result.pools
    ds = xr.Dataset(
        {
            "jobs": ("kind", jobs, {"units": "count", "long_name": "jobs finished"}),
            "rejected": ("kind", rej, {"units": "count", "long_name": "jobs larger than their cluster"}),
            "wait": (("kind", "quantile"), wait, {"units": "s", "long_name": "waiting time"}),
            "wait_mean": ("kind", wmean, {"units": "s", "long_name": "mean waiting time"}),
            "bsld": (("kind", "quantile"), bsld, {"units": "1", "long_name": "bounded slowdown (tau 10 s)"}),
            "bsld_mean": ("kind", bmean, {"units": "1", "long_name": "mean bounded slowdown"}),
            "gangs": ("kind", gangs, {"units": "count", "long_name": "gang jobs finished"}),
            "in_one_segment": ("kind", one, {"units": "count", "long_name": "gang jobs placed in one segment"}),
            "backfilled": ("kind", bf, {"units": "count", "long_name": "jobs started by backfill"}),
            "utilisation": ("pool", p["utilisation"].to_numpy(), {"units": "1",
                            "long_name": "busy slot-seconds / slot-seconds of running nodes"}),
            "node_hours": ("pool", p["node_hours"].to_numpy(), {"units": "h", "long_name": "billed node-hours"}),
            "cost": ("pool", p["cost"].to_numpy(), {"units": "USD"}),
            "launched": ("pool", p["launched"].to_numpy(), {"units": "count", "long_name": "nodes launched"}),
            "reclaims": ("pool", p["reclaims"].to_numpy(), {"units": "count",
                         "long_name": "spot nodes reclaimed (notices)"}),
            "hard_kills": ("pool", p["hard_kills"].to_numpy(), {"units": "count",
                           "long_name": "reclaimed nodes killed with jobs on them"}),
            "lost_slot_seconds": ("pool", p["lost_slot_seconds"].to_numpy(), {"units": "slot s",
                                  "long_name": "work lost to hard kills (GPU-s on GPU pools, vCPU-s on CPU pools)"}),
            "refused": ("pool", p["refused"].to_numpy(), {"units": "count",
                        "long_name": "node launches the zone refused (capacity)"}),
        },
        coords={"kind": list(KINDS), "quantile": q, "pool": list(p.index)},
        attrs={"policy": result.policy, **{k: str(v) for k, v in result.settings.items()}},
    )
    ds["total_cost"] = xr.DataArray(float(p["cost"].sum()), attrs={"units": "USD"})
    ds["rerun_jobs"] = xr.DataArray(int((df["reruns"] > 0).sum()), attrs={
        "units": "count", "long_name": "jobs killed by a reclaim and run again"})
    ds["failed"] = xr.DataArray(int((df["status"] == "failed").sum()), attrs={
        "units": "count", "long_name": "jobs given up after max_reruns reclaims"})
    ds["makespan"] = xr.DataArray(float(result.makespan), attrs={"units": "s"})
    ds["utilisation_total"] = xr.DataArray(
        float(_total_util(result)), attrs={"units": "1", "long_name": "busy / available, all pools (by cost share)"})
    return ds


def _total_util(result):
    p = result.pools
    if p["cost"].sum() <= 0:
        return 0.0
    return float((p["utilisation"] * p["cost"]).sum() / p["cost"].sum())


def replay_each(jobs, settings: dict | None = None, **common) -> xr.Dataset:
    """Replay the same jobs once per setting and compare the results along ``run``
    (:func:`hpclab.result.compare` of the summaries).

    ``settings`` maps a label to keyword arguments of :func:`replay` (default: the separate
    fixed clusters and the unified elastic platform).
    """
    from hpclab.result import compare

    settings = settings or {"separate": {"policy": "separate"}, "unified": {"policy": "unified"}}
    return compare({label: replay(jobs, **{**common, **kw}) for label, kw in settings.items()})


summarise = deprecated("hpclab.platform.replay", "summarise", "PlatformResult.summary()", _summary)
compare = deprecated("hpclab.platform.replay", "compare", "hpclab.platform.replay_each",
                     lambda jobs, scenarios=None, **common:
                     replay_each(jobs, scenarios, **common).rename(run="scenario"))
