"""A bag of independent tasks: the workload of an elastic pool, on either clock.

Each task is ``work`` reference core-seconds (lognormal or fixed, seeded); a slot of an instance
whose generation has speed factor ``s`` runs it in ``work / s`` pool seconds. On the virtual
clock the tasks are array elements of :func:`hpclab.elastic.simulate.simulate`; on the real clock
each is a Dask task on an :class:`~hpclab.elastic.pool.ElasticPool` (or a pool attached to a
scheduler address) that sleeps ``work / s * time_scale`` wall seconds, so both clocks see the same
pool seconds. Both use the same policy object type, the same slots per instance, the same boots
(fixed ones from ``pool.boot``, else the catalog's) and the one meter.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from hpclab._validate import HpclabError
from hpclab.scenario import MAX_SECONDS, MAX_TASKS, Field

__all__ = ["TaskBag", "sleep_task", "simulate_scenario", "run_virtual"]


def sleep_task(i: int, work: float, speeds: dict, time_scale: float) -> int:
    """Run one task of ``work`` reference core-seconds at this instance's speed (sleeping)."""
    from hpclab.elastic._pool_instance import current_instance_type

    speed = speeds.get(current_instance_type(), 1.0)
    time.sleep(work / speed * time_scale)
    return i


class TaskBag:
    """``kind: tasks`` — see the module docstring."""

    name = "tasks"
    clocks = ("virtual", "real")
    #: the pool keys it reads (the others must keep their defaults): all but the platform's
    #: ``idle_timeout`` (a policy here retires idle instances by its own parameters)
    pool_keys = ("types", "zones", "quota_cores", "min_per_type", "max_per_type", "slots", "boot",
                 "market", "capacity", "spot_capacity", "capacity_noise", "capacity_interval",
                 "reclaim_rate", "spot_market")
    #: the top-level run settings it reads (see hpclab.scenario.RUN_SETTINGS): all of them
    settings = ("seed", "time_scale", "tick", "horizon", "policy")
    fields = {
        "tasks": Field("int", lo=1, hi=MAX_TASKS, help="number of tasks"),
        "duration": Field("str", "lognormal", choices=("fixed", "lognormal")),
        "mean": Field("float", 60.0, lo=0, lo_open=True, hi=MAX_SECONDS,
                      help="mean work per task, reference core-seconds"),
        "sigma": Field("float", 0.5, lo=0, hi=10.0, help="lognormal sigma"),
        "arrival": Field("str", "burst", choices=("burst", "uniform", "poisson")),
        "window": Field("float", 0.0, lo=0, hi=MAX_SECONDS, help="arrival window, pool seconds"),
    }

    @staticmethod
    def check(s) -> None:
        p = s.workload
        if p["arrival"] != "burst" and p["window"] <= 0:
            raise HpclabError(f"{s.source}: workload.window: must be > 0 with arrival "
                              f"{p['arrival']!r}, got {p['window']!r}")
        if not s.pool["types"]:
            raise HpclabError(f"{s.source}: pool.types: a tasks workload needs at least one "
                              "instance type")
        check_pool(s)

    # -- pieces ------------------------------------------------------------------------------
    @staticmethod
    def workload(s):
        from hpclab.elastic.simulate import make_workload

        p = s.workload
        return make_workload(p["tasks"], duration=p["duration"], mean=p["mean"], sigma=p["sigma"],
                             arrival=p["arrival"], window=p["window"], seed=s.seed)

    def run(self, s, *, progress: bool = False, out=None):
        wl = self.workload(s)
        if s.clock == "virtual":
            return run_virtual(s, wl, progress=progress)
        return run_real(s, wl, progress=progress)


def check_pool(s) -> None:
    """What a task-bag pool must hold at load (for the tasks and screening kinds): the policy's
    place parameters within the pool (:meth:`Scenario.check_policy_limits`), and ``pool.market``
    only where it is read, by a pool attached to a cluster (its one instance type, zone and
    market); on this machine's pool and on the virtual clock each launch of the policy names its
    market, so another value there would change nothing."""
    s.check_policy_limits()
    if s.pool["market"] != "on-demand" and s.cluster["kind"] == "local":
        raise HpclabError(f"{s.source}: pool.market: is read only by a pool attached to a cluster "
                          f"(cluster.kind: address or file); here the policy's launches name their market "
                          f"(e.g. policy.params.market, spot_share), got {s.pool['market']!r}")


def slots_of(s, cat) -> dict:
    """Task slots per instance type: the scenario's, else the catalog's physical cores."""
    return {t: int(s.pool["slots"].get(t, cat.instance(t).cores)) for t in s.pool["types"]}


def simulate_scenario(s, wl=None, *, policy=None, progress: bool = False, catalog=None, **kw):
    """The virtual-clock run of scenario ``s`` as the simulator's own
    :class:`~hpclab.elastic.simulate.SimResult` (what the views of :mod:`hpclab.viz.simulate`
    draw): workload ``wl`` (default: the scenario's tasks) on the scenario's pool, tick, seed and
    policy. ``kw`` go to :func:`~hpclab.elastic.simulate.simulate` (e.g. ``reclaim_scale``)."""
    from hpclab.catalog import resolve
    from hpclab.elastic.simulate import simulate

    cat = resolve(catalog)
    if wl is None:
        wl = TaskBag.workload(s)
    limits = s.limits(catalog=cat)
    slots = slots_of(s, cat)
    pol = policy or s.make_policy("target-duration", catalog=cat)
    return simulate(pol, wl, limits, catalog=cat, tick=s.tick, horizon=s.horizon,
                    seed=s.seed, slots=slots, capacity=s.pool["capacity"],
                    spot_capacity=s.pool["spot_capacity"], reclaim_rate=s.pool["reclaim_rate"],
                    capacity_noise=s.pool["capacity_noise"], capacity_interval=s.pool["capacity_interval"],
                    boot=s.pool["boot"] or None, progress=progress, market=s.spot_market(), **kw)


def run_virtual(s, wl, *, policy=None, progress: bool = False, data=None, extra=None, units=None):
    """Run workload ``wl`` on the scenario's pool on the virtual clock; a :class:`Result`."""
    from hpclab.catalog import resolve
    from hpclab.result import from_simulation

    cat = resolve()
    sim = simulate_scenario(s, wl, policy=policy, progress=progress, catalog=cat)
    data = {"tasks": sim.tasks, **(data or {})}
    return from_simulation(s, sim, catalog=cat, data=data, extra=extra, units=units)


@contextlib.contextmanager
def real_pool(s, limits, slots, policy, cat, needs=(), preload=(), pool_kwargs=None):
    """``(pool, client)`` for a scenario's real run: an ElasticPool of emulated instances on this
    machine, or the same accounting attached to the scenario's cluster (:meth:`Scenario.cluster_spec`):
    a scheduler address, whose workers are first checked for this hpclab and the packages in
    ``needs`` (one line and exit 2 within seconds) through the one client that then runs the
    work, or a dask-jobqueue cluster from a spec file, started here and grown from zero by the
    policy (one batch job per instance). The emulated instances import the modules in
    ``preload`` while they boot (the task functions' modules: a first task then does not pay
    this machine's import, which ``time_scale`` would magnify); ``pool_kwargs`` go to the local
    :class:`~hpclab.elastic.pool.ElasticPool` (e.g. ``dashboard_address``). Everything is closed
    at the end."""
    import logging

    from distributed import Client

    from hpclab.elastic.pool import AttachedPool, ElasticPool

    if s.pool["capacity_noise"]:
        raise HpclabError(f"{s.source}: pool.capacity_noise: the real clock has no modelled shortage "
                          f"(the virtual clock draws it), got {s.pool['capacity_noise']!r}")
    c = s.cluster
    spec = s.cluster_spec()
    with contextlib.ExitStack() as stack:
        client = None
        if spec is None:
            pool = stack.enter_context(ElasticPool(
                limits=limits, catalog=cat, time_scale=s.time_scale, processes=c["processes"],
                policy=policy, interval=c["interval"], seed=s.seed, threads=slots,
                faults=s.spot_faults(), silence_logs=logging.CRITICAL, preload=preload,
                boot=s.pool["boot"] or None, capacity=s.pool["capacity"],
                spot_capacity=s.pool["spot_capacity"], **(pool_kwargs or {})))
        else:
            if len(limits.types) != 1 or len(limits.zones) != 1:
                raise HpclabError(f"{s.source}: pool.types: a pool attached to a cluster ({spec.kind}) "
                                  f"is one instance type in one zone, got {len(limits.types)} types "
                                  f"and {len(limits.zones)} zones")
            if spec.jobqueue:
                target = stack.enter_context(spec.start())
            else:  # reachable, its workers can run the work: the client that then runs it
                client = stack.enter_context(spec.client(needs))
                target = spec.address
            pool = stack.enter_context(AttachedPool(
                target, itype=limits.types[0], zone=limits.zones[0], market=s.pool["market"],
                policy=policy, interval=c["interval"], time_scale=s.time_scale, seed=s.seed,
                catalog=cat, max_instances=limits.max_per_type.get(limits.types[0]),
                capacity=s.pool["capacity"], spot_capacity=s.pool["spot_capacity"]))
        if client is None:
            client = stack.enter_context(Client(pool))
        yield pool, client


def run_real(s, wl, *, progress: bool = False):
    """Run workload ``wl`` on a real pool: tasks submitted at their arrival times (pool seconds),
    sleeping their work at the instance's speed; the pool scales from zero and back to zero."""
    from distributed import fire_and_forget

    from hpclab.catalog import resolve
    from hpclab.result import from_pool

    cat = resolve()
    limits = s.limits(catalog=cat)
    slots = slots_of(s, cat)
    speeds = {t: cat.generation(cat.instance(t).generation).speed_factor for t in limits.types}
    policy = s.make_policy("target-duration", catalog=cat)
    timeout = s.cluster["timeout"]
    n = int(wl.work.size)
    with real_pool(s, limits, slots, policy, cat, preload=(sleep_task.__module__,)) as (pool, client):
        wall0 = time.perf_counter()
        pool_t0 = pool.now()
        order = np.argsort(wl.arrival, kind="stable")
        arrivals = wl.arrival[order]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="task", desc="real pool", leave=False)
        k, done, finished_at = 0, 0, float("nan")
        try:
            while True:
                now = pool.now() - pool_t0
                j = int(np.searchsorted(arrivals, now, side="right"))
                if j > k:  # submit what has arrived, in arrival order
                    idx = order[k:j]
                    futs = client.map(sleep_task, idx.tolist(), wl.work[idx].tolist(), speeds=speeds,
                                      time_scale=s.time_scale, pure=False)
                    # results are not kept: no instance holds a result the policy would have to
                    # move before retiring it (the pool counts what is done)
                    fire_and_forget(futs)
                    del futs
                    k = j
                new = pool.snapshot().done
                if bar is not None and new > done:
                    bar.update(new - done)
                done = new
                if done >= n:
                    finished_at = pool.now() - pool_t0
                    break
                if time.perf_counter() - wall0 > timeout:
                    raise TimeoutError
                time.sleep(0.02)
            pool.wait_for(lambda p: len(p.alive()) == 0,
                          timeout=max(timeout - (time.perf_counter() - wall0), 1.0))
        except TimeoutError:
            raise HpclabError(f"{s.source}: the real run did not finish and scale back to zero within "
                              f"cluster.timeout = {timeout:g} wall seconds ({done} of {n} tasks done)") from None
        finally:
            if bar is not None:
                bar.close()
        until = pool.now()
        wall = time.perf_counter() - wall0
        return from_pool(s, pool, until=until, tasks=n, tasks_done=int(done),
                         makespan_s=finished_at - float(wl.arrival.min()), wall_s=wall)
