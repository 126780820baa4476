"""Two hand-written models of the campaign scenario of issue 12, the baselines of
``bench_campaign.py``: a well-written SimPy model and a bare ``heapq`` scheduler.

The scenario: ``N`` tasks submitted at t = 0, lognormal work (mean 1,800 s, sigma 0.5; one array
for every model); one instance type (ecs.c8a.8xlarge: 16 slots, its generation's speed factor)
in one zone with ample capacity; a quota of ``C`` cores; a fixed 95 s boot; the target-duration
policy (target 3,600 s, unknown task time 0.5 s) asked every 60 s, no hysteresis, no spot;
per-second billing (the one meter).

SimPy: one process per task slot that takes the next task from a shared counter (one SimPy
timeout per task) and one policy process ticking every 60 s, calling the *same* policy object
on a :class:`~hpclab.elastic.state.PoolState`. heapq: the same events on one heap (a slot's
next free time, the ticks), no framework.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from hpclab.elastic.billing import charge, unit_price
from hpclab.elastic.state import InstanceView, PoolState

ITYPE, ZONE = "ecs.c8a.8xlarge", "cn-hangzhou-h"
BOOT, TICK = 95.0, 60.0


class _Inst:
    __slots__ = ("id", "grant", "ready", "end", "busy", "idle_since", "retiring", "procs")

    def __init__(self, k, t):
        self.id, self.grant, self.ready, self.end = f"i{k}", t, t + BOOT, math.inf
        self.busy, self.idle_since, self.retiring, self.procs = 0, t + BOOT, False, 0


class _Model:
    """What both baselines share: the pool, the policy's view of it and the bill."""

    def __init__(self, policy, work, limits, cat):
        self.policy, self.work, self.limits, self.cat = policy, work, limits, cat
        rec = cat.instance(ITYPE)
        self.slots = rec.cores
        self.speed = cat.generation(rec.generation).speed_factor
        self.price, self.minc = unit_price(rec, "on-demand"), rec.min_charge
        self.insts: list[_Inst] = []
        self.next_task = 0
        self.done = 0
        self.running = 0
        self.dur_sum = 0.0
        self.last_end = 0.0

    def state(self, t):
        views = tuple(InstanceView(id=i.id, itype=ITYPE, zone=ZONE, market="on-demand",
                                   state="booting" if t < i.ready else "running", cores=self.slots,
                                   launched_at=i.grant, running_tasks=i.busy,
                                   idle_since=i.idle_since if (t >= i.ready and i.busy == 0) else None)
                      for i in self.insts if i.end == math.inf and not i.retiring)
        return PoolState(time=t, queued=len(self.work) - self.next_task, running=self.running,
                         instances=views, limits=self.limits, done=self.done,
                         mean_task_seconds=self.dur_sum / self.done if self.done else None,
                         slots={ITYPE: self.slots})

    def decide(self, t):
        d = self.policy.decide(self.state(t))
        launched = []
        for la in d.launch:
            for _ in range(la.count):
                alive = sum(1 for i in self.insts if i.end == math.inf)
                if (alive + 1) * self.slots > self.limits.quota_cores:
                    break
                inst = _Inst(len(self.insts), t)
                self.insts.append(inst)
                launched.append(inst)
        by_id = {i.id: i for i in self.insts}
        for rid in d.retire:
            i = by_id.get(rid)
            if i is not None and i.end == math.inf and i.busy == 0 and t >= i.ready:
                i.retiring = True
                i.end = t
        return launched

    def finished(self, t):
        return self.done == len(self.work) and all(i.end < math.inf for i in self.insts)

    def summary(self, t_end):
        grant = np.array([i.grant for i in self.insts])
        end = np.array([min(i.end, t_end) for i in self.insts])
        return {"makespan_s": self.last_end, "cost_usd": float(np.sum(charge(end - grant, self.price, self.minc))),
                "instances": len(self.insts), "tasks_done": self.done}


def run_simpy(policy, work, limits, cat):
    import simpy

    env = simpy.Environment()
    m = _Model(policy, work, limits, cat)

    def slot(inst):
        yield env.timeout(inst.ready - env.now)
        while not inst.retiring and m.next_task < len(work):
            j = m.next_task
            m.next_task += 1
            inst.busy += 1
            m.running += 1
            d = work[j] / m.speed
            yield env.timeout(d)
            inst.busy -= 1
            m.running -= 1
            m.done += 1
            m.dur_sum += d
            m.last_end = env.now
            if inst.busy == 0:
                inst.idle_since = env.now

    def ticker():
        while True:
            for inst in m.decide(env.now):
                for _ in range(m.slots):
                    env.process(slot(inst))
            if m.finished(env.now):
                return
            yield env.timeout(TICK)

    env.process(ticker())
    env.run()
    return m.summary(env.now)


def run_heapq(policy, work, limits, cat):
    m = _Model(policy, work, limits, cat)
    heap = [(0.0, 1, 0, None, 0.0)]  # (time, kind 0 = a slot frees / 1 = tick, seq, instance, task time)
    seq = 1
    n = len(work)
    t = 0.0
    while heap:
        t, kind, _, inst, d = heapq.heappop(heap)
        if kind == 0:
            if d > 0:  # a task ends
                inst.busy -= 1
                m.running -= 1
                m.done += 1
                m.dur_sum += d
                m.last_end = t
                if inst.busy == 0:
                    inst.idle_since = t
            if not inst.retiring and m.next_task < n:
                d = work[m.next_task] / m.speed
                m.next_task += 1
                inst.busy += 1
                m.running += 1
                seq += 1
                heapq.heappush(heap, (t + d, 0, seq, inst, d))
        else:
            for new in m.decide(t):
                for _ in range(m.slots):
                    seq += 1
                    heapq.heappush(heap, (new.ready, 0, seq, new, 0.0))
            if m.finished(t):
                return m.summary(t)
            seq += 1
            heapq.heappush(heap, (t + TICK, 1, seq, None, 0.0))
    return m.summary(t)
