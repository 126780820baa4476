"""A burst of short tasks on an ElasticPool that grows from zero, is preempted, and shrinks to
zero: the demo behind ``hpclab pool demo``, the pools notebook and the pool benchmark."""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError, check_nonnegative, check_positive

__all__ = ["burst_task", "expected_result", "run_burst", "BurstRun", "build_policy"]


def burst_task(i: int, seconds: float = 0.002) -> int:
    """One short task: wait ``seconds`` (an I/O-bound stand-in that leaves the shared CPU
    alone), then return a deterministic value of ``i`` (so results can be checked)."""
    if seconds > 0:
        time.sleep(seconds)
    return (i * 2654435761) % 1000003


def expected_result(n: int) -> list[int]:
    return [(i * 2654435761) % 1000003 for i in range(n)]


def build_policy(name: str, *, types, spot_share: float, hysteresis: bool, target_duration: float,
                 deadline: float | None = None, budget: float | None = None):
    """A policy from :mod:`hpclab.elastic.policies` by name, with the knobs the demo exposes."""
    from hpclab.elastic import policies

    params: dict = {"target_duration": target_duration}
    if name in ("spot-first", "global", "global-spot"):
        params["spot_share"] = spot_share
        if name == "global-spot" and spot_share <= 0:
            name = "global"
    elif name == "deadline-budget":
        params.update(deadline=deadline or 3600.0, budget=budget or 10.0,
                      market="spot" if spot_share >= 0.5 else "on-demand")
    elif name in ("target-duration", "single-zone"):
        params["itype"] = types[0]
    return policies.make_policy(name, hysteresis=hysteresis, wait=30.0, cooldown=30.0, **params)


@dataclass
class BurstRun:
    """What a burst did: its results check, timing, event log, bill and counts."""

    n_tasks: int
    correct: bool
    wall_seconds: float
    pool_seconds: float
    preemptions: int
    instances: int
    events: xr.Dataset = field(repr=False)
    bill: xr.Dataset = field(repr=False)

    @property
    def tasks_per_second(self) -> float:
        return self.n_tasks / self.wall_seconds if self.wall_seconds > 0 else math.nan

    @property
    def total_cost(self) -> float:
        return float(self.bill["total_cost"])

    def event_counts(self) -> pd.DataFrame:
        """Events by lifecycle state, and the reasons the pool ended instances."""
        from hpclab.elastic.state import LIFECYCLE

        states = pd.Series(self.events["state"].values).value_counts()
        by_state = pd.DataFrame({"events": [int(states.get(s, 0)) for s in LIFECYCLE]},
                                index=pd.Index(LIFECYCLE, name="state"))
        return by_state

    def end_reasons(self) -> pd.Series:
        ds = self.events
        term = ds["state"].values == "terminated"
        reasons = [str(r).split(":")[0] for r in ds["reason"].values[term]]
        return pd.Series(reasons, dtype=object).value_counts().rename("instances")

    def bill_table(self) -> pd.DataFrame:
        """Cost by type, zone and market (rows with instances only), with a total row."""
        df = self.bill[["cost", "instances", "billed_seconds"]].to_dataframe().reset_index()
        df = df[df["instances"] > 0].reset_index(drop=True)
        df = df.rename(columns={"cost": "cost_usd"})
        total = pd.DataFrame([{"itype": "total", "zone": "", "market": "",
                               "cost_usd": df["cost_usd"].sum(),
                               "instances": df["instances"].sum(),
                               "billed_seconds": df["billed_seconds"].sum()}])
        return pd.concat([df, total], ignore_index=True)

    def summary(self) -> xr.Dataset:
        return xr.Dataset({
            "tasks": ((), self.n_tasks, {"units": "count"}),
            "wall_seconds": ((), self.wall_seconds, {"units": "s"}),
            "pool_seconds": ((), self.pool_seconds, {"units": "s"}),
            "tasks_per_second": ((), self.tasks_per_second, {"units": "1/s"}),
            "preemptions": ((), self.preemptions, {"units": "count"}),
            "instances": ((), self.instances, {"units": "count"}),
            "total_cost": ((), self.total_cost, {"units": "USD"}),
        }, attrs={"correct": int(self.correct)})


def run_burst(n_tasks: int = 2000, task_seconds: float = 0.2, *,
              policy: str = "spot-first", types=("ecs.c8i.8xlarge",), zones=("cn-hangzhou-h",),
              spot_share: float = 0.5, preemptions: int = 2, fault_rate: float = 0.0,
              notice: float | None = None, max_instances: int = 2, threads: int = 1,
              time_scale: float = 0.01, target_duration: float = 5.0, hysteresis: bool = True,
              processes: bool = False, interval: float = 0.1, seed: int = 0,
              progress: bool = False, on_update=None, drain_timeout: float = 60.0,
              pool_kwargs: dict | None = None, scheduler: str | None = None,
              scenario=None) -> BurstRun:
    """Run ``n_tasks`` short tasks on a pool that starts empty; return what happened.

    The pool grows as its policy says, gets ``preemptions`` spot reclaims (with ``notice`` pool
    seconds of notice) when a third, two thirds ... of the tasks are done (or as soon after as a
    spot instance runs; none if the policy never uses spot), plus random reclaims
    at ``fault_rate`` per spot instance-hour, and shrinks to zero when the work is done.
    ``notice=None`` gives each reclaim the catalog's ``spot_notice`` of its type.

    Parameters
    ----------
    n_tasks, task_seconds : int, float
        The burst: tasks of ``task_seconds`` pool seconds each (``task_seconds * time_scale``
        wall seconds), as on every clock of hpclab (``simulate.real_burst`` and the scenarios'
        ``tasks`` workload too).
    policy : str
        A name of :data:`hpclab.elastic.policies.POLICY_NAMES`.
    types, zones : sequence of str
        The instance mix and zones the pool may use.
    spot_share : float
        Share of the capacity on spot (for spot-aware policies).
    max_instances, threads : int
        At most ``max_instances`` instances of each type, ``threads`` task slots each.
    on_update : callable, optional
        Called with the pool about every ``interval`` wall seconds while work runs (live views).
    progress : bool
        Show Dask's progress bar for the work.
    scheduler : str, optional
        Run the burst on the workers of a running Dask scheduler instead (an
        :class:`~hpclab.elastic.AttachedPool`: each worker billed as one instance of
        ``types[0]`` in ``zones[0]``); they are checked first (:func:`preflight`). The pool
        cannot add workers to it and does not retire or reclaim them: no policy, no reclaims.
    scenario : hpclab.Scenario or path, optional
        Take the burst, the pool, the policy and the clock from a scenario file instead
        (``kind: tasks`` with ``duration: fixed`` and ``arrival: burst``; e.g.
        ``data/scenarios/burst_spot.yaml``, which also runs on the virtual clock): its cluster
        section chooses where the pool runs. Only ``preemptions``, ``notice``, ``progress``,
        ``on_update``, ``drain_timeout`` and ``pool_kwargs`` are then taken from here.
    """
    if scenario is not None:
        given = {k: v for k, v in dict(
            n_tasks=n_tasks, task_seconds=task_seconds, policy=policy, types=types, zones=zones,
            spot_share=spot_share, fault_rate=fault_rate, max_instances=max_instances,
            threads=threads, time_scale=time_scale, target_duration=target_duration,
            hysteresis=hysteresis, processes=processes, interval=interval, seed=seed,
            scheduler=scheduler).items() if v != _DEFAULTS[k]}
        if given:
            raise HpclabError(f"run_burst: scenario= describes the burst, pool and policy; "
                              f"{', '.join(sorted(given))} must be left out (edit the scenario)")
        return _burst_of_scenario(scenario, preemptions=preemptions, notice=notice,
                                  progress=progress, on_update=on_update,
                                  drain_timeout=drain_timeout, pool_kwargs=pool_kwargs)
    from distributed import Client

    from hpclab.elastic.faults import SpotFaults
    from hpclab.elastic.pool import ElasticPool
    from hpclab.elastic.state import PoolLimits

    n_tasks = check_positive("n_tasks", n_tasks, integer=True)
    check_nonnegative("task_seconds", task_seconds)
    preemptions = check_nonnegative("preemptions", preemptions, integer=True)
    max_instances = check_positive("max_instances", max_instances, integer=True)
    threads = check_positive("threads", threads, integer=True)
    check_nonnegative("spot_share", spot_share)
    check_nonnegative("fault_rate (spot reclaims per instance-hour)", fault_rate)
    if spot_share > 1:
        raise HpclabError(f"spot_share must be in [0, 1], got {spot_share!r}")
    types = (types,) if isinstance(types, str) else tuple(types)
    zones = (zones,) if isinstance(zones, str) else tuple(zones)
    if not types:
        raise HpclabError("types must name at least one instance type")
    limits = PoolLimits(types=types, zones=zones, max_per_type={t: max_instances for t in types},
                        quota_cores=max_instances * threads * len(types))
    pol = build_policy(policy, types=types, spot_share=spot_share, hysteresis=hysteresis,
                       target_duration=target_duration)
    faults = SpotFaults(rate=fault_rate, notice=notice, seed=seed) if fault_rate > 0 else None
    kwargs = dict(limits=limits, threads=threads, time_scale=time_scale, policy=pol,
                  interval=interval, faults=faults, seed=seed, processes=processes,
                  silence_logs=logging.CRITICAL)  # reclaims make workers log lost peers
    kwargs.update(pool_kwargs or {})
    if scheduler is not None:
        from hpclab.elastic._pool_attach import AttachedPool, connect

        if preemptions or fault_rate:
            raise HpclabError("a burst on a running scheduler takes no reclaims (its workers "
                              "are not the pool's to end): give preemptions=0, fault_rate=0")
        # reachable, and its workers have this hpclab: the one client, which then runs the burst
        attached = connect(scheduler)
        pool_cm = AttachedPool(scheduler, itype=types[0], zone=zones[0], time_scale=time_scale,
                               interval=interval, seed=seed)
    else:
        attached, pool_cm = None, ElasticPool(**kwargs)
    with attached or contextlib.nullcontext(), pool_cm as pool, \
            contextlib.nullcontext(attached) if attached is not None else Client(pool) as client:
        ran = _burst_loop(pool, client, n_tasks, task_seconds, time_scale=time_scale,
                          preemptions=preemptions, notice=notice, interval=interval,
                          progress=progress, on_update=on_update, drain_timeout=drain_timeout,
                          wait_empty=scheduler is None)
    return _burst_result(pool, n_tasks, ran, on_update)


_DEFAULTS = {k: p.default for k, p in inspect.signature(run_burst).parameters.items()}
#: the ElasticPool keywords that real_pool takes from a scenario
_POOL_KEYS_FROM_SCENARIO = {"limits", "catalog", "time_scale", "processes", "policy", "interval", "seed",
                            "threads", "faults", "silence_logs", "preload", "boot"}


def _burst_of_scenario(scenario, *, preemptions, notice, progress, on_update, drain_timeout,
                       pool_kwargs) -> BurstRun:
    """:func:`run_burst` of a scenario: its tasks on its pool (:func:`hpclab.workloads.tasks.real_pool`:
    this machine, a scheduler address or a cluster spec file), under its policy."""
    from hpclab.catalog import resolve
    from hpclab.scenario import Scenario
    from hpclab.workloads.tasks import real_pool, slots_of

    s = scenario if isinstance(scenario, Scenario) else Scenario.load(scenario)
    w = s.workload
    if w.get("kind") != "tasks" or w["duration"] != "fixed" or w["arrival"] != "burst":
        raise HpclabError(f"{s.source}: workload: a burst is kind: tasks with duration: fixed and "
                          f"arrival: burst, got kind {w.get('kind')}, duration {w.get('duration')}, "
                          f"arrival {w.get('arrival')}")
    preemptions = check_nonnegative("preemptions", preemptions, integer=True)
    spec = s.cluster_spec()
    if spec is not None:  # a scheduler address or a cluster spec file: not this pool's to reclaim
        if preemptions:
            raise HpclabError(f"{s.source}: cluster.kind: a burst on a cluster of kind {spec.kind} takes no "
                              f"scripted reclaims (its workers are not the pool's to end): give preemptions=0")
        if pool_kwargs:
            raise HpclabError(f"{s.source}: cluster.kind: pool_kwargs are for a local pool, "
                              f"not a cluster of kind {spec.kind}")
    taken = sorted(set(pool_kwargs or {}) & _POOL_KEYS_FROM_SCENARIO)
    if taken:
        raise HpclabError(f"run_burst: pool_kwargs: {', '.join(taken)} come from the scenario "
                          f"(edit its pool or cluster section)")
    cat = resolve()
    limits = s.limits(catalog=cat)
    policy = s.make_policy("target-duration", catalog=cat)
    with real_pool(s, limits, slots_of(s, cat), policy, cat, preload=(burst_task.__module__,),
                   pool_kwargs=pool_kwargs) as (pool, client):
        ran = _burst_loop(pool, client, int(w["tasks"]), float(w["mean"]), time_scale=s.time_scale,
                          preemptions=preemptions, notice=notice, interval=s.cluster["interval"],
                          progress=progress, on_update=on_update, drain_timeout=drain_timeout,
                          # workers at a scheduler address stay: the pool does not end them
                          wait_empty=spec is None or spec.jobqueue)
    return _burst_result(pool, int(w["tasks"]), ran, on_update)


def _burst_loop(pool, client, n_tasks, task_seconds, *, time_scale, preemptions, notice, interval,
                progress, on_update, drain_timeout, wait_empty):
    """Run the burst on an open pool: its tasks, the scripted reclaims when a third, two thirds...
    are done, the live updates; then wait for the pool to empty. (results, wall s, pool s)."""
    thresholds = [n_tasks * (k + 1) / (preemptions + 1) for k in range(preemptions)]
    done_count = [0]
    stop = threading.Event()
    injected: list[str] = []
    pool.drain_timeout = drain_timeout

    def watcher():
        pending = list(thresholds)
        while not stop.is_set():
            if pending and done_count[0] >= pending[0]:
                spot = [r for r in pool.alive() if r.market == "spot" and r.state == "running"
                        and not r.notice]
                if spot:
                    try:
                        pool.sync(pool.notice_async, spot[0].id, notice)
                        injected.append(spot[0].id)
                    except Exception:  # the instance left meanwhile: try the next tick
                        pass
                    else:
                        pending.pop(0)
                # else: wait for a spot instance to run (none ever, with an on-demand policy)
            if on_update is not None:
                try:
                    on_update(pool)
                except Exception:
                    pass
            stop.wait(interval)

    thread = threading.Thread(target=watcher, name="hpclab-burst", daemon=True)
    t0 = time.perf_counter()
    futures = client.map(burst_task, range(n_tasks), seconds=task_seconds * time_scale,
                         key=[f"burst-{i}" for i in range(n_tasks)])
    def count(_future):
        done_count[0] += 1

    for fut in futures:
        fut.add_done_callback(count)
    del fut  # the loop variable would keep the last result (and its instance) alive
    thread.start()
    try:
        if progress:
            from distributed import progress as dask_progress

            bar = dask_progress(futures)
            if bar is not None:  # in a notebook progress() returns its widget: show it
                from IPython.display import display

                display(bar)
        results = client.gather(futures)
        wall = time.perf_counter() - t0
        del futures
        try:
            if wait_empty:  # an attached cluster keeps its workers
                pool.wait_for(lambda p: not p.alive(), drain_timeout)
        except TimeoutError:
            pass
    finally:
        stop.set()
        thread.join(timeout=5)
    if on_update is not None:
        on_update(pool)
    pool_seconds = pool.now()
    return results, wall, pool_seconds


def _burst_result(pool, n_tasks, ran, on_update) -> BurstRun:
    """What the burst did, read from the closed pool."""
    results, wall, pool_seconds = ran
    if on_update is not None:
        on_update(pool)
    events = pool.events()
    reasons = events["reason"].values[events["state"].values == "draining"]
    return BurstRun(n_tasks=n_tasks, correct=results == expected_result(n_tasks),
                    wall_seconds=wall, pool_seconds=pool_seconds,
                    preemptions=int(np.sum(reasons == "spot-notice")),
                    instances=len(pool.records), events=events, bill=pool.bill())
