"""A plain per-task SimPy model of the virtual-clock scenario (the baseline for bench_simulate).

The same scenario as :func:`hpclab.elastic.simulate.simulate`, written the textbook way: every
task slot is a SimPy process taking tasks from a FIFO ``Store``; instances boot (lognormal with
the catalog's mean and sd), a policy process ticks and calls the *same* policy object on a
``PoolState`` of ``InstanceView`` objects; spot instances get Poisson reclaim notices and a hard
kill ``spot_notice`` later that interrupts running tasks and puts them back at the front of the
queue; zone capacity refuses requests beyond it. Billing uses the same meter.

Run alone: ``python benchmarks/simpy_baseline.py --cores 10000 --tasks 100000``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import simpy

from hpclab import catalog as _catalog
from hpclab.elastic.billing import bill
from hpclab.elastic.state import MARKETS, InstanceView, PoolState


class _Inst:
    __slots__ = ("id", "itype", "zone", "market", "cores", "slots", "grant", "ready", "end", "state",
                 "notice", "procs", "busy", "idle_since", "speed")


def run_simpy(policy, workload, limits, *, catalog=None, tick=60.0, horizon=86400.0, seed=0,
              reclaim_scale=1.0, linger=3600.0):
    cat = catalog or _catalog.default()
    env = simpy.Environment()
    # FIFO by submission order; requeued (killed) tasks go first (priority 0)
    queue = simpy.PriorityStore(env)
    ss = np.random.SeedSequence([int(seed), 0x51AC])
    rng_boot, rng_reclaim = (np.random.default_rng(s) for s in ss.spawn(3)[:2])
    recs = {t: cat.instance(t) for t in limits.types}
    speed = {t: cat.generation(r.generation).speed_factor for t, r in recs.items()}
    cap = {(z, t): float(cat.zone(z).capacity.get(t, 0)) for z in limits.zones for t in limits.types}
    use = {k: 0.0 for k in cap}
    insts: list[_Inst] = []
    refused: dict = {}
    stats = {"events": 0, "done": 0, "redone": 0.0, "kills": 0, "notices": 0, "refusals": 0,
             "last_end": 0.0, "dur_sum": 0.0}
    work = workload.work
    arrival = workload.arrival

    def arrivals():
        for j in range(work.size):
            dt = arrival[j] - env.now
            if dt > 0:
                yield env.timeout(dt)
            queue.put(simpy.PriorityItem((1, j), j))
            stats["events"] += 1

    def slot(inst: _Inst, k: int):
        yield env.timeout(inst.ready - env.now)
        if inst.state == "booting":
            inst.state = "running"
            inst.idle_since = env.now
        while inst.state == "running":
            req = queue.get()
            try:
                item = yield req
            except simpy.Interrupt:
                req.cancel()
                return
            j = item.item
            inst.busy += 1
            inst.idle_since = None
            start = env.now
            try:
                yield env.timeout(work[j] / inst.speed)
            except simpy.Interrupt:
                stats["redone"] += (env.now - start) * inst.speed
                queue.put(simpy.PriorityItem((0, j), j))
                return
            stats["events"] += 2
            stats["done"] += 1
            stats["dur_sum"] += env.now - start
            stats["last_end"] = env.now
            inst.busy -= 1
            if inst.busy == 0:
                inst.idle_since = env.now
        if inst.busy == 0 and inst.state == "draining":
            terminate(inst)

    def terminate(inst: _Inst):
        if inst.state == "terminated":
            return
        inst.state = "terminated"
        inst.end = env.now
        use[(inst.zone, inst.itype)] -= inst.cores
        stats["events"] += 1

    def drain(inst: _Inst, deadline=None):
        if inst.state in ("terminated", "draining"):
            return
        if inst.state == "booting":
            terminate(inst)
            for p in inst.procs:
                if p.is_alive:
                    p.interrupt()
            return
        inst.state = "draining"
        for p in inst.procs:  # idle slots stop waiting for work
            if p.is_alive and p.target is not None and not isinstance(p.target, simpy.Timeout):
                p.interrupt()
        if inst.busy == 0:
            terminate(inst)
        elif deadline is not None:
            env.process(killer(inst, deadline))

    def killer(inst, deadline):
        yield env.timeout(deadline - env.now)
        if inst.state != "terminated":
            stats["kills"] += 1
            for p in inst.procs:
                if p.is_alive:
                    p.interrupt()
            terminate(inst)

    def reclaimer(inst, when):
        yield env.timeout(when - env.now)
        if inst.state not in ("terminated",) and not inst.notice:
            inst.notice = True
            stats["notices"] += 1
            refused[(inst.itype, inst.zone, "spot")] = env.now
            drain(inst, env.now + recs[inst.itype].spot_notice)

    def launch(itype, zone, market, count):
        r = recs[itype]
        fit = int((cap[(zone, itype)] - use[(zone, itype)]) // r.cores)
        n = min(count, max(fit, 0))
        if n < count:
            refused[(itype, zone)] = env.now
            stats["refusals"] += count - n
        serving = sum(i.slots for i in insts if i.state in ("booting", "running"))
        if limits.quota_cores is not None:
            n = min(n, max(0, (limits.quota_cores - serving) // r.cores))
        for _ in range(n):
            inst = _Inst()
            inst.id, inst.itype, inst.zone, inst.market = f"i{len(insts)}", itype, zone, market
            inst.cores = inst.slots = r.cores
            inst.grant = env.now
            m, sd = r.boot_time, r.boot_time_sd
            s2 = math.log1p((sd / m) ** 2)
            inst.ready = env.now + math.exp(math.log(m) - s2 / 2 + math.sqrt(s2) * rng_boot.standard_normal())
            inst.end = math.nan
            inst.state, inst.notice, inst.busy, inst.idle_since = "booting", False, 0, None
            inst.speed = speed[itype]
            use[(zone, itype)] += r.cores
            inst.procs = [env.process(slot(inst, k)) for k in range(inst.slots)]
            insts.append(inst)
            stats["events"] += 1
            if market == "spot":
                rate = cat.zone(zone).spot_reclaim_rate * reclaim_scale
                if rate > 0:
                    env.process(reclaimer(inst, env.now + rng_reclaim.exponential(1 / rate)))

    def ticker():
        while True:
            views = tuple(InstanceView(i.id, i.itype, i.zone, i.market,
                                       "draining" if i.state == "draining" else i.state, i.slots, i.grant,
                                       i.busy, i.idle_since if i.state == "running" and i.busy == 0 else None,
                                       i.notice)
                          for i in insts if i.state != "terminated")
            running = sum(i.busy for i in insts if i.state != "terminated")
            queued = len(queue.items)
            state = PoolState(time=env.now, queued=queued, running=running, instances=views, limits=limits,
                              mean_task_seconds=stats["dur_sum"] / stats["done"] if stats["done"] else None,
                              done=stats["done"], refused=dict(refused))
            d = policy.decide(state)
            by_id = {i.id: i for i in insts}
            for rid in d.retire:
                drain(by_id[rid])
            for l in d.launch:
                launch(l.itype, l.zone, l.market, l.count)
            stats["events"] += 1
            if stats["done"] >= work.size:
                alive = any(i.state != "terminated" for i in insts)
                if not alive or env.now - stats["last_end"] >= linger:
                    return
            yield env.timeout(tick)

    if hasattr(policy, "reset"):
        policy.reset()
    env.process(arrivals())
    done_proc = env.process(ticker())
    t0 = time.perf_counter()
    env.run(until=simpy.AnyOf(env, [done_proc, env.timeout(horizon)]))
    wall = time.perf_counter() - t0
    T = env.now
    table = {"instance": [i.id for i in insts], "itype": [i.itype for i in insts],
             "zone": [i.zone for i in insts], "market": [i.market for i in insts],
             "start": [i.grant for i in insts], "end": [i.end for i in insts]}
    cost = float(bill(table, cat, until=T)["total_cost"]) if insts else 0.0
    return {"completed": stats["done"], "makespan_s": stats["last_end"] - float(arrival.min()),
            "cost_usd": cost, "instances": len(insts), "work_redone": stats["redone"],
            "reclaims": stats["notices"], "refusals": stats["refusals"], "events": stats["events"],
            "wall_s": wall, "events_per_s": stats["events"] / wall, "end_time_s": T}


def main(argv=None):
    from hpclab.elastic.policies import make_policy
    from hpclab.elastic.simulate import campaign_limits, make_workload

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=100_000)
    args = ap.parse_args(argv)
    cat = _catalog.default()
    wl = make_workload(args.tasks, duration="lognormal", mean=5400.0, sigma=0.5, arrival="uniform",
                       window=12 * 3600.0, seed=0)
    pol = make_policy("global-spot", hysteresis=True, target_duration=3600.0, catalog=cat)
    print(run_simpy(pol, wl, campaign_limits(args.cores, catalog=cat), catalog=cat))


if __name__ == "__main__":
    main()
