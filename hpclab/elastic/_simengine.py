"""The virtual-clock engine behind :func:`hpclab.elastic.simulate.simulate`.

Control events (policy ticks, spot notices and hard kills, drains, capacity changes) go through
the one event loop of :class:`hpclab.elastic.clock.Clock`; tasks do not. Between two control events the set of open task slots is fixed, and the
engine assigns queued tasks to slots in vectorised batches that are *exact* greedy first-in
first-out list scheduling (each task, in submission order, goes to the slot that frees first):

- the candidate slots (open, free before the next control event) are sorted by the time they
  free, ``f``, ties by slot index (the order a heap of ``(free, slot)`` pops them in); the next
  tasks in the queue are paired with them in order; task ``k`` starts at
  ``s_k = max(f_k, ready_k)`` and ends at ``e_k = s_k + work_k / speed_k``;
- the pairing is what one-at-a-time greedy scheduling would do as long as no slot of the batch
  frees again before (or with) a later slot of the batch taking its task:
  ``min(e_0..e_{k-1}) > f_k``; the batch is cut at the first ``k`` where that fails (and where
  ``s_k`` reaches the next control event), the slots that took a task are merged back into the
  sorted order, and the loop goes on from there.

So a task is a few array elements, never a Python object or event, and every attempt is recorded
(task, slot, start, end, completed or killed) so that "every task completes exactly once" can be
checked on the result.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from time import perf_counter

import numpy as np

from hpclab._validate import HpclabError
from hpclab.elastic.billing import charge, unit_price
from hpclab.elastic.capacity import (ShortageNoise, curve_factor, grantable, reclaim_excess, run_streams,
                                     spot_limit)
from hpclab.elastic.clock import STOP, Clock
from hpclab.elastic.policies import Aggregates, ask, attach_aggregates
from hpclab.elastic.state import MARKETS, InstanceView, PoolState, maker

# event kinds (ties at one time run in this order: drains and kills before the policy looks)
_END, _KILL, _NOTICE, _CAPACITY, _TICK = 0, 1, 2, 3, 4
# why an instance ended
REASONS = ("running at end", "retired by policy", "drained after notice", "spot reclaimed (hard kill)",
           "reclaimed while booting", "cancelled while booting")
_STATE_NAMES = ("booting", "running", "draining")
_aggregates, _pool_state = maker(Aggregates), maker(PoolState)  # per-tick snapshots

#: the policy triggers this clock evaluates (see _quiet and the policy contract)
SIM_TRIGGERS = frozenset({"room", "demand", "idle", "refused"})
#: quiet ticks run as one stretch (see Engine._coast) at most this many at a time, the slots
#: advanced in steps of about this many slots freeing
COAST_TICKS, COAST_STEP_SLOTS = 4096, 4096
#: a stretch while tasks wait starts about this many tasks at most
COAST_TASKS = 1 << 18
#: the mean task time is exact at every tick for this many completions, then refreshed every
#: MEAN_REFRESH_TICKS ticks (it has converged; ticks stay O(1) in the number of tasks)
MEAN_EXACT_COMPLETIONS, MEAN_REFRESH_TICKS = 10_000, 30


class _Grow:
    """Named numpy arrays that grow by doubling."""

    def __init__(self, spec: dict[str, tuple], capacity: int = 1024):
        self._spec = spec
        self.n = 0
        self.cap = capacity
        for name, (dtype, fill) in spec.items():
            setattr(self, name, np.full(capacity, fill, dtype=dtype))

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= self.cap:
            return
        cap = max(need, 2 * self.cap)
        for name, (dtype, fill) in self._spec.items():
            old = getattr(self, name)
            new = np.full(cap, fill, dtype=dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
        self.cap = cap


class _Views(Sequence):
    """``PoolState.instances`` built lazily: the per-instance arrays only when the instances are
    first looked at, an :class:`InstanceView` only when one is asked for (the shipped policies
    read the snapshot's aggregates and never ask)."""

    def __init__(self, eng, idx, T):
        self._eng, self._idx, self._T = eng, idx, T
        self._code = None
        self._cache: dict[int, InstanceView] = {}

    def _arrays(self):
        if self._code is None:
            self._code, self._running, self._idle = self._eng.instance_arrays(self._idx, self._T)
        return self._code, self._running, self._idle

    def __len__(self):
        return int(self._idx.size)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return tuple(self[j] for j in range(*k.indices(len(self))))
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        v = self._cache.get(k)
        if v is None:
            code, running, idle_a = self._arrays()
            e, i = self._eng, int(self._idx[k])
            state = _STATE_NAMES[code[k]]
            idle = float(idle_a[k]) if state == "running" and running[k] == 0 else None
            v = InstanceView(id=f"i{i}", itype=e.types[e.inst.itype[i]], zone=e.zones[e.inst.zone[i]],
                             market=MARKETS[e.inst.market[i]], state=state, cores=int(e.inst.nslots[i]),
                             launched_at=float(e.inst.grant[i]), running_tasks=int(running[k]),
                             idle_since=idle, notice=bool(e.inst.notice[i]))
            self._cache[k] = v
        return v

    def __iter__(self):
        return (self[k] for k in range(len(self)))


def _upto(ticks, values, side: str) -> np.ndarray:
    """For each of the sorted ``ticks``, how many ``values`` (in any order) are <= it (``side``
    "left") or < it ("right"): O(len(values) log len(ticks)), no sort of the values."""
    idx = np.searchsorted(ticks, values, side=side)
    return np.cumsum(np.bincount(idx, minlength=ticks.size + 1)[: ticks.size])


def _segments(ufunc, values, starts, lengths):
    """``ufunc.reduce`` over ``values[starts[k]:starts[k]+lengths[k]]`` for each k (non-empty
    segments; ``values`` has at least one element past the last segment)."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64 if ufunc is np.add else float)
    idx = np.empty(2 * starts.size, dtype=np.int64)
    idx[0::2] = starts
    idx[1::2] = starts + lengths
    kw = {"dtype": np.int64} if ufunc is np.add else {}
    return ufunc.reduceat(values, idx, **kw)[0::2]


class Engine:
    def __init__(self, policy, workload, limits, cat, *, tick, horizon, seed, slots, capacity,
                 capacity_curve, capacity_noise, capacity_interval, spot_capacity, reclaim_scale,
                 reclaim_rate, linger, progress, record_every, boot=None, market=None):
        self.policy, self.limits, self.cat = policy, limits, cat
        self.tick, self.horizon, self.linger = tick, horizon, linger
        self.progress, self.record_every = progress, record_every
        self.types = tuple(limits.types)
        self.zones = tuple(limits.zones)
        nt, nz = len(self.types), len(self.zones)
        recs = [cat.instance(t) for t in self.types]
        zrecs = [cat.zone(z) for z in self.zones]
        self.t_cores = np.array([r.cores for r in recs], dtype=np.int64)  # catalog physical cores
        self.t_slots = np.array([int(slots.get(t, r.cores)) for t, r in zip(self.types, recs)], dtype=np.int64)
        self.t_speed = np.array([cat.generation(r.generation).speed_factor for r in recs])
        self.t_boot = np.array([r.boot_time for r in recs])
        self.t_boot_sd = np.array([r.boot_time_sd for r in recs])
        for t, b in (boot or {}).items():  # fixed boots (e.g. measured on a real run)
            k = self.types.index(t)
            self.t_boot[k], self.t_boot_sd[k] = b, 0.0
        self.t_notice = np.array([r.spot_notice for r in recs])
        self.t_price = np.array([[unit_price(r, m) for m in MARKETS] for r in recs])  # USD/s
        self.t_minc = np.array([r.min_charge for r in recs])
        self.slots_map = {t: int(s) for t, s in zip(self.types, self.t_slots)}
        self._slots_list = self.t_slots.tolist()
        self._cores_list = [float(c) for c in self.t_cores.tolist()]
        self._live_stride = nt * nz
        self._place_keys = tuple((t, z, m) for t in self.types for z in self.zones for m in MARKETS)
        self._tindex = {t: k for k, t in enumerate(self.types)}
        self._zindex = {z: k for k, z in enumerate(self.zones)}
        base = np.array([[z.capacity.get(t, 0) for t in self.types] for z in zrecs], dtype=float)
        self.cap_base = base * capacity[:, None]
        self.z_reclaim = (np.array([z.spot_reclaim_rate for z in zrecs]) * reclaim_scale
                          if reclaim_rate is None else np.full(nz, float(reclaim_rate)))
        self.spot_capacity = spot_capacity
        self._seed, self._streams = seed, None  # the seeded streams, made when first drawn from
        if market is None:
            from hpclab.elastic.faults import SpotMarket

            market = SpotMarket()
        self.market = market.schedule(cat, int(seed))  # spot reclaims and prices, per market
        self.t_price[:, 1] *= self.market.price_factor  # the running meter pays the spot option too
        # capacity multiplier: user curve x seeded noise, piecewise constant
        self.curve = capacity_curve
        self.noise = ShortageNoise(capacity_noise, (nz, nt), self._stream(2), capacity_interval) \
            if capacity_noise > 0 else None
        self.cap_now = self._capacity(0.0)
        self.in_use = np.zeros((nz, nt))
        self.spot_use = np.zeros((nz, nt))
        # workload
        self.work = np.asarray(workload.work, dtype=float)
        self.arrival = np.asarray(workload.arrival, dtype=float)
        self._last_arrival = float(self.arrival[-1]) if self.arrival.size else -math.inf
        self.ntasks = self.work.size
        self._mean_work = float(self.work.sum()) / self.ntasks if self.ntasks else 1.0
        self.t_start = np.full(self.ntasks, np.nan)
        self.t_end = np.full(self.ntasks, np.nan)
        self.t_slot = np.full(self.ntasks, -1, dtype=np.int64)
        self.t_attempt = np.full(self.ntasks, -1, dtype=np.int64)
        self.ptr = 0
        self.rq = _Grow({"task": (np.int64, -1), "ready": (float, np.nan)}, 256)
        self.rq_pos = 0
        self.att = _Grow({"task": (np.int64, -1), "slot": (np.int64, -1), "start": (float, np.nan),
                          "end": (float, np.nan), "killed": (bool, False)},
                         max(1024, self.ntasks + self.ntasks // 8))
        self.inst = _Grow({"itype": (np.int16, 0), "zone": (np.int16, 0), "market": (np.int8, 0),
                           "grant": (float, np.nan), "ready": (float, np.nan), "end": (float, np.inf),
                           "drain": (float, np.nan), "notice_t": (float, np.nan),
                           "notice": (bool, False), "draining": (bool, False), "slot0": (np.int64, 0),
                           "nslots": (np.int64, 0), "reason": (np.int8, 0),
                           "free_max": (float, np.nan), "price": (float, 0.0), "minc": (float, 0.0)},
                          1024)  # free_max: when every slot is free; price (USD/s), minc: its meter
        self.slot = _Grow({"free": (float, np.inf), "busy_until": (float, -np.inf),
                           "task": (np.int64, -1), "open": (bool, False),
                           "speed": (float, 1.0), "inst": (np.int64, -1)}, 4096)
        self.refused: dict = {}
        self.n_refused = self.n_refusal_events = self.n_notices = self.n_kills = 0
        self.n_quota_clipped = self.limit_violations = 0
        self.work_redone = 0.0
        self.clock = Clock()
        self.events = 0
        self.pend_task = np.zeros(0, dtype=np.int64)
        self.pend_start = np.zeros(0)
        self.pend_chunks: list = []
        self._npend = 0  # entries in pend_task and pend_chunks (an upper bound on completions to come)
        self._pend_end = None  # pend_task's ends when it is sorted by them (see _update_mean)
        self._pend_cum = None  # (kills then, running sums of their times in us), see _update_mean
        self._mean_calls = 0  # ticks so far (the mean's refresh schedule, see _update_mean)
        self._alive_cache = None  # (version, alive instances, their meter arrays), see _alive
        self._counts_cache = self._room_cache = self._idle_cache = None  # see _counts, _room, _idle_mask
        # the policy's triggers, if it declares them and this clock can tell when they hold: at a
        # tick where none holds its decision would be empty, so it is not asked (see _quiet)
        trig = getattr(policy, "triggers", None)
        self._triggers = frozenset(trig) if trig and set(trig) <= SIM_TRIGGERS else None
        self._idle_after = float(getattr(policy, "idle_timeout", 0.0) or 0.0)
        big = np.iinfo(np.int64).max
        self._t_max = np.array([limits.max_per_type.get(t, big) for t in self.types],
                               dtype=np.int64)
        self._t_min = np.array([limits.min_per_type.get(t, 0) for t in self.types], dtype=np.int64)
        self._t_max_list, self._t_min_list = self._t_max.tolist(), self._t_min.tolist()
        self._asked_refusals = -1  # refusal events when the policy was last asked
        self.asks = 0
        self.coasted = 0  # ticks run in stretches of quiet ticks (see _coast)
        self.undone = 0  # stretches cut back at a tick a task end or boot lands on exactly
        # incremental aggregates: serving instances per type, serving slots, cost bookkeeping
        self.serv_count = np.zeros(len(self.types), dtype=np.int64)
        self.serv_slots = 0
        self.alive_slots = 0  # the account quota counts every instance not terminated
        self.serv_spot_slots = 0
        self.n_draining = 0  # instances draining, not yet terminated
        self._ready_max = -math.inf  # the latest ready time of any instance granted
        self.serv_place = np.zeros((nt, nz, len(MARKETS)), dtype=np.int64)  # serving, per place
        self.alive_count = np.zeros(nt, dtype=np.int64)  # instances not terminated, per type
        self.noticed_count = np.zeros((nt, nz), dtype=np.int64)  # alive spot under notice
        self.n_noticed = 0  # its total
        self._agg_version = 0  # bumped whenever the counters above change
        self._agg_cache = None  # (version, Aggregates parts) reused while nothing changed
        # the record's instance counts, kept as counters (see _state_counts): alive instances by
        # (state code, type, zone) and the cores of the running ones by market, each instance's
        # code as counted (-1 once ended), the instances by ready time (the booting ones become
        # running as the records pass it), and what the tick's decision granted and ended
        self._live = [0] * (3 * nt * nz)
        self._live_cores = [0.0] * len(MARKETS)
        self._code_of: list[int] = []
        self._place_of: list[int] = []  # type * zones + zone
        self._boots: list[tuple[float, int]] = []  # (ready, instance), sorted from _boot_pos on
        self._boot_pos = 0
        self._live_version = 0
        self._live_arrays = None  # (version, counts, cores) built for the record
        self._tick_new: list[int] = []  # granted since the tick's snapshot
        self._tick_gone: list[tuple[int, int]] = []  # (instance, state code) ended since it
        self.peak_cores = 0.0  # the most running cores of any record
        self.closed_cost = 0.0  # billed cost of terminated instances (the meter, at termination)
        # completed task times, summed exactly in whole microseconds (integers: the sum does not
        # depend on how completions are grouped into refreshes, so skipping asks changes nothing)
        self.done_us = 0
        self.done_n = 0
        self.rec: dict[str, list] = {k: [] for k in ("time", "inst", "cores", "queued", "running",
                                                      "done", "cost", "refused")}

    def _stream(self, k: int):
        """The run's ``k``-th seeded random stream (0 boots, 1 reclaims, 2 capacity shortage)."""
        if self._streams is None:
            self._streams = run_streams(self._seed)
        return self._streams[k]

    # -- capacity ------------------------------------------------------------------------------
    def _capacity(self, t: float) -> np.ndarray:
        cap = self.cap_base.copy()
        if self.curve is not None:
            cap *= curve_factor(self.curve, t)
        if self.noise is not None:
            cap *= self.noise.factor(t)
        return np.floor(cap + 1e-9)

    # -- events ----------------------------------------------------------------------------------
    def push(self, t: float, kind: int, arg: int = -1) -> None:
        self.clock.at(t, kind, arg)

    # -- tasks ------------------------------------------------------------------------------------
    def advance(self, T: float) -> None:
        """Assign queued tasks to slots for every start before ``T`` (exact greedy FIFO).

        The open slots freeing before ``T`` are sorted once by (free time, index), the order a
        heap of ``(free, slot)`` pops them in; each batch pairs the next tasks with that order's
        prefix, and the slots that took a task go back into the order by merging (their ends,
        sorted, with the rest, already sorted), so that no pass looks at every slot again."""
        sl = self.slot
        last = self._last_arrival
        # tasks arrived before T (all of them once the last has arrived)
        arrived = self.ntasks if last < T else int(np.searchsorted(self.arrival, T, side="left"))
        avail = self.rq.n - self.rq_pos + arrived - self.ptr
        if avail <= 0:
            return
        free = sl.free[: sl.n]
        cand = np.flatnonzero(sl.open[: sl.n] & (free < T))
        if cand.size == 0:
            return
        if cand.size > avail:  # more free slots than tasks: only the ``avail`` the heap pops first
            fc = free[cand]
            kth = np.partition(fc, avail - 1)[avail - 1]
            lo, eq = cand[fc < kth], cand[fc == kth]  # ties at the cut by slot index, as the heap
            cand = np.sort(np.concatenate([lo, eq[: avail - lo.size]]))
        order = cand[np.argsort(free[cand], kind="stable")]  # ties by slot index (cand is sorted)
        fo = free[order]
        speed = sl.speed
        guess = 256  # the batch is first paired over about twice the last batch's length
        while True:
            r = self.rq.n - self.rq_pos
            avail = r + arrived - self.ptr
            whole = min(order.size, avail)
            if whole <= 0:
                break
            B = min(whole, guess)
            while True:
                kr = min(r, B)
                ptr = self.ptr
                if kr == 0:  # only new tasks: one contiguous range (slices, no copies)
                    tasks = None
                    ready = self.arrival[ptr:ptr + B]
                    work = self.work[ptr:ptr + B]
                else:
                    tasks = np.empty(B, dtype=np.int64)
                    ready = np.empty(B)
                    tasks[:kr] = self.rq.task[self.rq_pos:self.rq_pos + kr]
                    ready[:kr] = self.rq.ready[self.rq_pos:self.rq_pos + kr]
                    tasks[kr:] = np.arange(ptr, ptr + B - kr)
                    ready[kr:] = self.arrival[ptr:ptr + B - kr]
                    work = self.work[tasks]
                ob, f = order[:B], fo[:B]
                start = np.maximum(f, ready)
                end = start + work / speed[ob]
                j = B
                if B > 1:  # the pairing holds while no slot of the batch frees again before (or
                    # with, a tie goes by slot index) the next slot of the order
                    bad = np.flatnonzero(np.minimum.accumulate(end[:-1]) <= f[1:])
                    if bad.size:
                        j = int(bad[0]) + 1
                late = np.flatnonzero(start[:j] >= T)
                if late.size:  # task j cannot start before T on any slot (nor the ones after it)
                    j = int(late[0])
                if j < B or B == whole:
                    break
                B = whole  # no cut in the guess: pair the whole order
            if j == 0:
                break
            guess = max(64, 2 * j)
            o, st, en = ob[:j], start[:j], end[:j]
            # the tasks started: a slice of the task arrays when they are all new
            tk = np.arange(ptr, ptr + j) if tasks is None else tasks[:j]
            at = slice(ptr, ptr + j) if tasks is None else tk
            sl.free[o] = en
            np.maximum.at(self.inst.free_max, sl.inst[o], en)
            sl.task[o] = tk
            self.t_start[at] = st
            self.t_end[at] = en
            self.t_slot[at] = o
            a = self.att
            a.reserve(j)
            rows = slice(a.n, a.n + j)
            a.task[rows], a.slot[rows], a.start[rows], a.end[rows] = tk, o, st, en
            self.t_attempt[at] = np.arange(a.n, a.n + j)
            a.n += j
            sl.busy_until[o] = en
            self.pend_chunks.append((tk, st))
            self._npend += j
            used_rq = min(kr, j)
            self.rq_pos += used_rq
            self.ptr += j - used_rq
            if late.size:
                break
            # the order of the slots left: the rest, and the slots that took a task merged back
            back = en < T
            rest, frest = order[j:], fo[j:]
            if not back.any():
                order, fo = rest, frest
                continue
            ob, eb = o[back], en[back]
            srt = np.argsort(eb, kind="stable")
            keys = np.concatenate([frest, eb[srt]])
            idx = np.concatenate([rest, ob[srt]])
            mrg = np.argsort(keys, kind="stable")  # two sorted runs: a linear merge
            fo, order = keys[mrg], idx[mrg]
            if fo.size > 1:  # an exact tie with a slot that took a task: by slot index
                tie = fo[1:] == fo[:-1]
                if tie.any():
                    moved = mrg >= rest.size
                    if (tie & (moved[1:] | moved[:-1])).any():
                        lex = np.lexsort((order, fo))
                        fo, order = fo[lex], order[lex]

    # -- instances ----------------------------------------------------------------------------------
    def grant(self, t: float, it: int, iz: int, market: int, count: int) -> int:
        """Grant up to ``count`` instances; returns how many the zone had capacity for."""
        cores = self.t_cores[it]
        n, why = grantable(count, self.cap_now[iz, it], self.in_use[iz, it], cores,
                           spot=market == 1, spot_capacity=self.spot_capacity, spot_use=self.spot_use[iz, it])
        key = None if why is None else (self.types[it], self.zones[iz]) if why == "zone" else \
            (self.types[it], self.zones[iz], "spot")
        if key is not None:  # the cloud said no (the policy sees it in state.refused)
            self.refused[key] = t
            self.n_refused += count - n
            self.n_refusal_events += 1
        q = self.limits.quota_cores
        if q is not None:  # the account quota (draining instances included): clipped, not refused
            room = max(int((q - self.alive_slots) // self.t_slots[it]), 0)
            if room < n:
                self.n_quota_clipped += n - room
                n = room
        if n <= 0:
            return 0
        ins, sl = self.inst, self.slot
        ins.reserve(n)
        ns = int(self.t_slots[it])
        sl.reserve(n * ns)
        ids = np.arange(ins.n, ins.n + n)
        mean, sd = self.t_boot[it], self.t_boot_sd[it]
        if sd > 0:  # lognormal with the catalog's mean and standard deviation
            s2 = math.log1p((sd / mean) ** 2)
            boot = np.exp(math.log(mean) - s2 / 2 + math.sqrt(s2) * self._stream(0).standard_normal(n))
        else:
            boot = np.full(n, mean)
        ins.itype[ids], ins.zone[ids], ins.market[ids] = it, iz, market
        ins.grant[ids] = t
        ins.price[ids], ins.minc[ids] = self.t_price[it, market], self.t_minc[it]
        ins.ready[ids] = t + boot
        ins.slot0[ids] = sl.n + np.arange(n) * ns
        ins.nslots[ids] = ns
        ins.free_max[ids] = t + boot
        self._ready_max = max(self._ready_max, float(ins.ready[ids].max()))
        ins.n += n
        place, i0 = it * len(self.zones) + iz, len(self._place_of)  # i0: ids[0]
        self._code_of.extend([0] * n)
        self._place_of.extend([place] * n)
        self._live[place] += n  # booting (code 0) until a record passes its ready time
        boots = self._boots
        for i, r in zip(range(i0, i0 + n), (t + boot).tolist()):
            if boots and r < boots[-1][0]:
                bisect.insort(boots, (r, i), lo=self._boot_pos)
            else:
                boots.append((r, i))
        self._tick_new.extend(range(i0, i0 + n))
        self._live_version += 1
        sids = np.arange(sl.n, sl.n + n * ns)
        sl.free[sids] = np.repeat(t + boot, ns)
        sl.open[sids] = True
        sl.speed[sids] = self.t_speed[it]
        sl.inst[sids] = np.repeat(ids, ns)
        sl.task[sids] = -1
        sl.n += n * ns
        self.in_use[iz, it] += n * cores
        self.serv_count[it] += n
        self.serv_slots += n * ns
        self.alive_slots += n * ns
        self.serv_place[it, iz, market] += n
        self.alive_count[it] += n
        self._agg_version += 1
        if market == 1:
            self.serv_spot_slots += n * ns
            self.spot_use[iz, it] += n * cores
            when = self.market.reclaim_times(self.types[it], self.zones[iz], np.full(n, t),
                                             float(self.z_reclaim[iz]))
            for i, w in zip(ids, when):
                if w < self.horizon:
                    self.push(float(w), _NOTICE, int(i))
        return n

    def _stop_serving(self, i: int) -> None:
        ins = self.inst
        it, mk = ins.itype[i], ins.market[i]
        self.serv_count[it] -= 1
        self.serv_slots -= int(ins.nslots[i])
        self.serv_place[it, ins.zone[i], mk] -= 1
        if mk == 1:
            self.serv_spot_slots -= int(ins.nslots[i])
        self._agg_version += 1

    def _slots_of(self, i: int) -> slice:
        s0 = int(self.inst.slot0[i])
        return slice(s0, s0 + int(self.inst.nslots[i]))

    def terminate(self, i: int, t: float, reason: int) -> None:
        ins = self.inst
        if ins.end[i] != np.inf:
            return
        draining = bool(ins.draining[i])
        if draining:
            self.n_draining -= 1
        else:
            self._stop_serving(i)
        ins.end[i] = t
        ins.reason[i] = reason
        it, iz, mk, ns = int(ins.itype[i]), int(ins.zone[i]), int(ins.market[i]), int(ins.nslots[i])
        cores = self._cores_list[it]
        self._live_at(t)  # its counted code is then its state at t
        c = self._code_of[i]
        self._count(i, c, -1, self._live, self._live_cores)
        self._code_of[i] = -1
        self._tick_gone.append((i, c))
        self._live_version += 1
        self.alive_slots -= ns
        self.alive_count[it] -= 1
        if mk == 1 and ins.notice[i]:
            self.noticed_count[it, iz] -= 1
            self.n_noticed -= 1
        self._agg_version += 1
        if not draining:  # (a draining instance's slots closed when it began to drain)
            self.slot.open[self._slots_of(i)] = False
        self.closed_cost += charge(t - float(ins.grant[i]), float(ins.price[i]), float(ins.minc[i]))
        self.in_use[iz, it] -= cores
        if mk == 1:
            self.spot_use[iz, it] -= cores
        self.events += 1

    def drain(self, i: int, t: float, deadline: float | None, reason: int) -> None:
        """Stop giving ``i`` tasks; end it when its tasks finish (or kill it at ``deadline``)."""
        ins = self.inst
        if ins.end[i] != np.inf:
            return
        if ins.ready[i] > t:  # still booting: nothing to drain
            self.terminate(i, t, 4 if deadline is not None else 5)
            return
        s = self._slots_of(i)
        self.slot.open[s] = False
        if not ins.draining[i]:
            self._stop_serving(i)
            ins.draining[i] = True
            self.n_draining += 1
            ins.drain[i] = t
            self._count(i, self._code_of[i], -1, self._live, self._live_cores)
            self._count(i, 2, 1, self._live, self._live_cores)
            self._code_of[i] = 2
            self._live_version += 1
        if ins.free_max[i] <= t:  # every slot free (free_max bounds their free times)
            drained = t
        else:
            busy = self.slot.task[s] >= 0
            drained = max(t, float(self.slot.free[s][busy].max())) if busy.any() else t
        if drained <= t:
            self.terminate(i, t, reason)
        elif deadline is not None and drained > deadline:
            self.push(deadline, _KILL, i)
        else:
            self.push(drained, _END, i)
        self.events += 1

    def kill(self, i: int, t: float) -> None:
        ins, sl = self.inst, self.slot
        if ins.end[i] != np.inf:
            return
        s = self._slots_of(i)
        idx = np.arange(s.start, s.stop)
        victims = idx[(sl.task[s] >= 0) & (sl.free[s] > t)]
        if victims.size:
            tk = sl.task[victims]
            self.work_redone += float(((t - self.t_start[tk]) * sl.speed[victims]).sum())
            rows = self.t_attempt[tk]
            self.att.end[rows] = t
            self.att.killed[rows] = True
            self.t_start[tk] = np.nan
            self.t_end[tk] = np.nan
            self.t_slot[tk] = -1
            self.rq.reserve(tk.size)
            self.rq.task[self.rq.n:self.rq.n + tk.size] = tk
            self.rq.ready[self.rq.n:self.rq.n + tk.size] = t
            self.rq.n += tk.size
            sl.free[victims] = t
            sl.busy_until[victims] = t
            sl.task[victims] = -1
        self.n_kills += 1
        self.terminate(i, t, 3)

    def notice(self, i: int, t: float) -> None:
        ins = self.inst
        if ins.end[i] != np.inf or ins.notice[i]:
            return
        ins.notice[i] = True
        ins.notice_t[i] = t
        self.n_notices += 1
        if ins.market[i] == 1:
            self.noticed_count[ins.itype[i], ins.zone[i]] += 1
            self.n_noticed += 1
            self._agg_version += 1
        self.drain(i, t, t + float(self.t_notice[ins.itype[i]]), 2)

    def capacity_change(self, t: float) -> None:
        self.cap_now = self._capacity(t)
        ins = self.inst
        over = np.argwhere(self.in_use > self.cap_now)
        spot_over = np.argwhere(self.spot_use > spot_limit(self.cap_now, self.spot_capacity))
        for iz, it in {tuple(x) for x in np.vstack([over, spot_over])}:
            cand = np.flatnonzero((ins.end[: ins.n] == np.inf) & (ins.zone[: ins.n] == iz)
                                  & (ins.itype[: ins.n] == it) & (ins.market[: ins.n] == 1)
                                  & ~ins.notice[: ins.n])
            cand = cand[np.argsort(-ins.grant[cand], kind="stable")]  # newest first
            alive_spot = ((ins.end[: ins.n] == np.inf) & (ins.zone[: ins.n] == iz)
                          & (ins.itype[: ins.n] == it) & (ins.market[: ins.n] == 1))
            leaving = int((alive_spot & ins.notice[: ins.n]).sum()) * self.t_cores[it]
            excess = reclaim_excess(self.in_use[iz, it], self.spot_use[iz, it], leaving, self.cap_now[iz, it],
                                    self.spot_capacity)
            for i in cand:
                if excess <= 0:
                    break
                self.notice(int(i), t)
                excess -= self.t_cores[it]

    # -- policy tick ------------------------------------------------------------------------------
    def _aggregates(self):
        """The snapshot's instance aggregates that change only when an instance is granted,
        stops serving, is noticed or ends (kept as counters; rebuilt as mappings only then)."""
        c = self._agg_cache
        if c is not None and c[0] == self._agg_version:
            return c[1]
        types, zones = self.types, self.zones
        count = {types[k]: v for k, v in enumerate(self.serv_count.tolist()) if v}
        seen = {types[k]: self._slots_list[k] for k, v in enumerate(self.alive_count.tolist()) if v}
        nz = len(zones)
        noticed = frozenset((types[k // nz], zones[k % nz]) for k in np.flatnonzero(self.noticed_count).tolist()) \
            if self.n_noticed else frozenset()
        keys = self._place_keys  # (type, zone, market) in serv_place's flat order
        places = {keys[k]: v for k, v in enumerate(self.serv_place.ravel().tolist()) if v}
        parts = (count, int(self.serv_slots), int(self.serv_spot_slots), seen, noticed, places)
        self._agg_cache = (self._agg_version, parts)
        return parts

    def _codes(self, alive, T: float, ready=None) -> np.ndarray:
        """State code of each alive instance at ``T``: 0 booting, 1 running, 2 draining (``ready``:
        their ready times, if at hand)."""
        ins = self.inst
        if ready is None:
            ready = ins.ready[alive]
        return np.where(ins.draining[alive], 2, np.where(ready > T, 0, 1)).astype(np.int8)

    def instance_arrays(self, alive, T: float):
        """Per alive instance: state code (0 booting, 1 running, 2 draining), running tasks and
        the time its last slot freed (for :class:`_Views`)."""
        code = self._codes(alive, T)
        return code, self._running(alive, T), self.inst.free_max[alive]

    def _running(self, which, T: float) -> np.ndarray:
        """Slots running a task at ``T`` on each of the instances ``which``."""
        ins, sl = self.inst, self.slot
        sl.reserve(1)  # a sentinel past the last slot for reduceat
        busy = sl.busy_until[: sl.n + 1] > T
        return _segments(np.add, busy.view(np.uint8), ins.slot0[which], ins.nslots[which])

    def _alive(self) -> np.ndarray:
        """Indices of the instances not terminated (reused while the aggregates' version, which
        every grant and termination bumps, is unchanged), with their meter arrays."""
        c = self._alive_cache
        if c is not None and c[0] == self._agg_version:
            return c[1]
        ins = self.inst
        alive = np.flatnonzero(ins.end[: ins.n] == np.inf)
        self._alive_cache = (self._agg_version, alive, (ins.grant[alive], ins.price[alive], ins.minc[alive]))
        return alive

    def _counts(self, T: float) -> tuple[int, int, int]:
        """(queued, running, done) tasks at ``T`` (reused within a tick: the busy slots change
        only with an assignment, an undo or a kill, which change the key)."""
        key = (T, self.att.n, self.n_kills, self.ptr, self.rq_pos, self.rq.n)
        c = self._counts_cache
        if c is not None and c[0] == key:
            return c[1]
        sl = self.slot
        nbusy = int(np.count_nonzero(sl.busy_until[: sl.n] > T))
        r = self.rq.n - self.rq_pos
        arrived = self.ntasks if self._last_arrival <= T else int(np.searchsorted(self.arrival, T, side="right"))
        queued = r + arrived - self.ptr
        out = (queued, nbusy, self.ptr - r - nbusy)
        self._counts_cache = (key, out)
        return out

    def _room(self) -> tuple[bool, bool]:
        """Whether the limits (``max_per_type``, the core quota) leave room for one more
        instance of some type, and whether a type has fewer serving instances than its minimum
        (both change only with the aggregates' version)."""
        c = self._room_cache
        if c is not None and c[0] == self._agg_version:
            return c[1]
        q = self.limits.quota_cores
        left = math.inf if q is None else q - self.serv_slots
        count = self.serv_count.tolist()  # a few types: lists beat arrays here
        out = (any(c < hi and s <= left for c, hi, s in zip(count, self._t_max_list, self._slots_list)),
               any(c < lo for c, lo in zip(count, self._t_min_list)))
        self._room_cache = (self._agg_version, out)
        return out

    def _quiet(self, T: float) -> bool:
        """The policy declares triggers and none of them holds at ``T`` (so its decision would be
        empty): ``"room"``, the limits leave room for one more instance of some type;
        ``"demand"``, there is room and the tasks held (queued and running) exceed the serving
        slots, or a type has fewer serving instances than its minimum; ``"idle"``, an instance
        has been idle for the policy's ``idle_timeout`` (0 if it has none); ``"refused"``, a
        refusal came since it was last asked."""
        trig = self._triggers
        if trig is None:
            return False
        if "refused" in trig and self.n_refusal_events != self._asked_refusals:
            return False
        room, below_min = self._room()
        if "room" in trig and room:
            return False
        if "demand" in trig and room:
            if below_min:
                return False
            queued, running, _ = self._counts(T)
            if queued + running > self.serv_slots:
                return False
        if "idle" in trig and self._idle_mask(self._alive(), T, self._idle_after).any():
            return False
        return True

    def _idle_mask(self, alive, T: float, after: float = 0.0) -> np.ndarray:
        """Which of the ``alive`` instances are idle at ``T`` (for at least ``after`` seconds):
        running, not draining, every slot free (free_max >= ready, so not booting). Reused
        within a tick (free_max changes with an assignment or an undo, draining with the
        aggregates' version)."""
        key = (T, after, self._agg_version, self.att.n, self.n_kills)
        c = self._idle_cache
        if c is not None and c[0] == key and c[1] is alive:
            return c[2]
        ins = self.inst
        since = ins.free_max[alive]
        mask = (since + after if after else since) <= T
        if self.n_draining:
            mask &= ~ins.draining[alive]
        self._idle_cache = (key, alive, mask)
        return mask

    def snapshot(self, T: float):
        ins = self.inst
        alive = self._alive()
        queued, nbusy, done = self._counts(T)
        idle_i = alive[self._idle_mask(alive, T)]
        if idle_i.size:
            types = self.types
            idle = tuple((f"i{i}", types[t], MARKETS[m], c, f) for i, t, m, c, f in
                         zip(idle_i.tolist(), ins.itype[idle_i].tolist(), ins.market[idle_i].tolist(),
                             ins.nslots[idle_i].tolist(), ins.free_max[idle_i].tolist()))
        else:
            idle = ()
        count, serving, spot, seen, noticed, places = self._aggregates()
        booting = 0
        if self._ready_max > T:  # some instance may still be booting
            b = ins.ready[alive] > T
            booting = int(ins.nslots[alive[b & ~ins.draining[alive]]].sum()) if b.any() else 0
        # busy slots on serving instances: all busy slots but those of draining instances (under
        # a notice or retired while busy), which are not serving
        busy_cores = nbusy
        if self.n_draining:
            draining = alive[ins.draining[alive]]
            busy_cores -= int(self._running(draining, T).sum())
        summary = _aggregates(count, serving, spot, seen, noticed, idle, places, booting,
                              int(ins.nslots[idle_i].sum()) if idle_i.size else 0, busy_cores)
        self._update_mean(T)
        mean = self.done_us / self.done_n / 1e6 if self.done_n else None
        state = _pool_state(float(T), int(queued), nbusy, _Views(self, alive, T), self.limits,
                     self.spent(T), mean, int(done), dict(self.refused), self.slots_map, 0)
        return attach_aggregates(state, summary)

    def _update_mean(self, T: float, done: int | None = None) -> None:
        # exact mean of completed task times; refreshed every tick for the first 10,000
        # completions, then every 30th tick (it has converged; this keeps ticks O(1) in tasks).
        # Called at every tick: at a tick where the policy is not asked (see _quiet) with
        # ``done``, the tasks done by then, it is skipped while they are fewer than 10,000 (the
        # mean is then exact at the next ask whenever it is computed), so the refreshes fall
        # where they would with an ask at every tick
        self._mean_calls += 1
        if done is not None and done < MEAN_EXACT_COMPLETIONS:
            return
        if self.done_n >= MEAN_EXACT_COMPLETIONS and self._mean_calls % MEAN_REFRESH_TICKS:
            return
        new = bool(self.pend_chunks)
        if new:
            self.pend_task = np.concatenate([self.pend_task] + [c[0] for c in self.pend_chunks])
            self.pend_start = np.concatenate([self.pend_start] + [c[1] for c in self.pend_chunks])
            self.pend_chunks = []
            self._pend_end = self._pend_cum = None
        if self.pend_task.size == 0:
            self._npend = 0
            return
        if not new and self._pend_end is None and self.done_n < MEAN_EXACT_COMPLETIONS:
            # nothing started since the last refresh (the queue is empty, say): sorted by end
            # once, later refreshes take the prefix that has ended (a task killed since was
            # restarted, or not, with another start: its entry is dropped when reached)
            order = np.argsort(self.t_end[self.pend_task], kind="stable")
            self.pend_task, self.pend_start = self.pend_task[order], self.pend_start[order]
            self._pend_end = self.t_end[self.pend_task]
            # and their times in whole microseconds, summed from the front (while no kill ends
            # an attempt, every entry is one that will complete: a refresh is a difference)
            st = self.t_start[self.pend_task]
            if bool((st == self.pend_start).all()):
                us = np.rint((self._pend_end - st) * 1e6).astype(np.int64)
                self._pend_cum = (self.n_kills, np.concatenate([[0], np.cumsum(us)]))
        if self._pend_end is not None:
            k = int(np.searchsorted(self._pend_end, T, side="right"))
            cum = self._pend_cum
            if k and cum is not None and cum[0] == self.n_kills:
                self.done_us += int(cum[1][k] - cum[1][0])
                self.done_n += k
                self._pend_cum = (cum[0], cum[1][k:])
                self.pend_task, self.pend_start = self.pend_task[k:], self.pend_start[k:]
                self._pend_end = self._pend_end[k:]
                self._npend = self.pend_task.size
            elif k:
                self._pend_cum = None
                head = self.pend_task[:k]
                st, en = self.t_start[head], self.t_end[head]
                fin = st == self.pend_start[:k]
                self._add_done(st[fin], en[fin])
                self.pend_task, self.pend_start = self.pend_task[k:], self.pend_start[k:]
                self._pend_end = self._pend_end[k:]
                self._npend = self.pend_task.size
            return
        st = self.t_start[self.pend_task]
        en = self.t_end[self.pend_task]
        same = st == self.pend_start
        fin = same & (en <= T)
        if fin.any():
            self._add_done(st[fin], en[fin])
        keep = same & ~fin
        self.pend_task, self.pend_start = self.pend_task[keep], self.pend_start[keep]
        self._npend = self.pend_task.size

    def _add_done(self, st, en) -> None:
        """Count completed attempts (starts ``st``, ends ``en``) into the exact mean: their times
        in whole microseconds, rounded half to even (a few at a time in Python, which is cheaper
        there than the arrays)."""
        us = (en - st) * 1e6
        self.done_us += sum(map(round, us.tolist())) if us.size <= 64 else int(np.rint(us).astype(np.int64).sum())
        self.done_n += us.size

    def spent(self, T: float) -> float:
        """Billed cost of ended instances (kept as they end) + the meter of the live ones."""
        self._alive()
        grant, price, minc = self._alive_cache[2]
        return float(self.closed_cost + charge(T - grant, price, minc).sum())

    def apply(self, T: float, decision) -> None:
        ins = self.inst
        for rid in decision.retire:
            try:
                i = int(str(rid)[1:])
            except ValueError:
                continue
            if 0 <= i < ins.n and ins.end[i] == np.inf and not ins.draining[i]:
                self.drain(i, T, None, 1)
        tindex, zindex = self._tindex, self._zindex
        for launch in decision.launch:
            if launch.itype not in tindex or launch.zone not in zindex:
                raise HpclabError(f"policy {getattr(self.policy, 'name', self.policy)!r} launched "
                                  f"{launch.itype} in {launch.zone}, outside the pool's limits "
                                  f"(types {', '.join(self.types)}; zones {', '.join(self.zones)})")
            if launch.market not in MARKETS:
                raise HpclabError(f"market must be one of {', '.join(MARKETS)}; got {launch.market!r}")
            if launch.count > 0:
                self.grant(T, tindex[launch.itype], zindex[launch.zone],
                           MARKETS.index(launch.market), int(launch.count))

    def check_limits(self) -> None:
        cnt = self.serv_count
        for k, t in enumerate(self.types):
            hi = self.limits.max_per_type.get(t)
            if hi is not None and cnt[k] > hi:
                self.limit_violations += 1
                return
        q = self.limits.quota_cores
        if q is not None and self.serv_slots > q:
            self.limit_violations += 1

    def _live_at(self, T: float) -> None:
        """Count the booting instances whose ready time ``T`` has reached as running."""
        boots, k = self._boots, self._boot_pos
        if k < len(boots) and boots[k][0] <= T:
            code, live, cores = self._code_of, self._live, self._live_cores
            while k < len(boots) and boots[k][0] <= T:
                i = boots[k][1]
                k += 1
                if code[i] == 0:
                    code[i] = 1
                    self._count(i, 0, -1, live, cores)
                    self._count(i, 1, 1, live, cores)
            self._live_version += 1
            if k > 4096 and 2 * k > len(boots):
                del boots[:k]
                k = 0
            self._boot_pos = k

    def _count(self, i: int, code: int, by: int, live: list, cores: list) -> None:
        """Add ``by`` (1 or -1) times instance ``i`` in state ``code`` to the counts ``live`` (by
        code, type and zone) and, if running, its cores to the running cores ``cores`` (by market)."""
        live[code * self._live_stride + self._place_of[i]] += by
        if code == 1:
            cores[self.inst.market[i]] += by * self._cores_list[self.inst.itype[i]]

    def _next_ready(self) -> float:
        """The earliest ready time not yet passed (the record's counts hold until then)."""
        k = self._boot_pos
        return self._boots[k][0] if k < len(self._boots) else math.inf

    def _state_counts(self, T: float):
        """Instances by state, type and zone, and running cores by market, at ``T`` (for
        :meth:`record`): the instances alive at the tick's snapshot, in their state now (after
        the decision applied: an instance it retired counts as draining, one it granted not
        at all); from the counters that grants, drains and ends keep, the booting instances
        becoming running as the records pass their ready times. The arrays are reused while
        the counters do not change."""
        self._live_at(T)
        c = self._live_arrays
        new, gone = self._tick_new, self._tick_gone
        if c is not None and c[0] == self._live_version and not new and not gone:
            return c[1], c[2]
        live, cores = self._live, self._live_cores
        if new or gone:
            live, cores = list(live), list(cores)
            for i, k in gone:
                self._count(i, k, 1, live, cores)
            for i in new:
                self._count(i, self._code_of[i], -1, live, cores)
        nt, nz = len(self.types), len(self.zones)
        out = np.array(live, dtype=np.int64).reshape(3, nt, nz), np.array(cores, dtype=float)
        self.peak_cores = max(self.peak_cores, sum(cores))
        if not new and not gone:
            self._live_arrays = (self._live_version,) + out
        return out

    def record(self, T: float, queued: int, nbusy: int, done: int, spent: float) -> None:
        counts, cores = self._state_counts(T)
        self.rec["inst"].append(counts)
        self.rec["cores"].append(cores)
        self.rec["time"].append(T)
        self.rec["queued"].append(queued)
        self.rec["running"].append(nbusy)
        self.rec["done"].append(done)
        self.rec["cost"].append(spent)
        self.rec["refused"].append(self.n_refused)

    # -- event handlers (the clock calls them in time order) ---------------------------------------
    def _on_end(self, t, i):
        self.events += 1
        if self.inst.end[i] == np.inf:
            self.terminate(i, t, 2 if self.inst.notice[i] else 1)

    def _on_kill(self, t, i):
        self.events += 1
        self.kill(i, t)

    def _on_notice(self, t, i):
        self.events += 1
        self.notice(i, t)

    def _on_capacity(self, t, _):
        self.events += 1
        self.capacity_change(t)

    def _on_tick(self, t, _):
        self.events += 1
        self._tick_new.clear()  # what the tick's decision grants and ends (see _state_counts)
        self._tick_gone.clear()
        recording = self._nticks % self.record_every == 0
        quiet = self._quiet(t)
        if quiet:  # its decision would be empty: not asked
            queued, running, done = self._counts(t)
            self._update_mean(t, done)
            self.check_limits()
            if recording:
                self.record(t, queued, running, done, self.spent(t))
        else:
            state = self.snapshot(t)
            decision = ask(self.policy, state)
            self.asks += 1
            self._asked_refusals = self.n_refusal_events
            self.apply(t, decision)
            self.check_limits()
            done = state.done
            if recording:
                self.record(t, state.queued, state.running, done, state.spent)
        self._nticks += 1
        if quiet and done < self.ntasks:
            t, done = self._coast(t, done)
        bar = self._bar
        if bar is not None and done > self._last_done:
            bar.update(done - self._last_done)
            self._last_done = done
        if done >= self.ntasks:
            alive = bool(np.any(self.inst.end[: self.inst.n] == np.inf))
            finished = float(np.nanmax(self.t_end)) if self.ntasks else 0.0
            if not alive or t - finished >= self.linger:
                self._end_time = t
                return STOP
        nxt = t + self.tick
        if nxt > self.horizon:
            self._end_time = self.horizon
            self.advance(self.horizon)
            return STOP
        self.push(nxt, _TICK)
        return None

    def _coast(self, T: float, done: int) -> tuple[float, int]:
        """Run the quiet ticks after ``T`` as one stretch; returns the last tick run and its done
        count (``T``, ``done``: none).

        After a quiet tick, with every task arrived and no control event before the next ticks,
        the following ticks stay quiet until an instance goes idle or the last task ends: the
        limits, the serving slots and the refusals change only at events and asks, and the tasks
        held only fall. So the slots are advanced once to the last tick of the stretch (the
        greedy assignment does not depend on where it is cut) and each tick's record is read
        from the attempts that assignment made: queued (the tasks not started before it),
        running (attempts that span it), done, and the meter. A tick where the queue is empty
        and an instance has been idle for the policy's ``idle_timeout`` ends the stretch; while
        the queue holds tasks an instance can be idle only if all its slots free exactly at the
        tick, so a tick that some task end or boot lands on exactly ends it too (the assignment
        made past it is then undone and redone up to the tick before). The run is the one tick
        by tick gives, series for series (tests/test_simulate.py)."""
        trig, tick = self._triggers, self.tick
        if self._last_arrival >= T + tick:
            return T, done
        E, H = self.clock.next_time(), self.horizon
        sl, a, rq = self.slot, self.att, self.rq
        ptr0, rq0, a0 = self.ptr, self.rq_pos, a.n
        avail = (rq.n - rq0) + (self.ntasks - ptr0)  # tasks not started at T
        idle_after = self._idle_after
        watch_idle = "idle" in trig
        saved = None
        if watch_idle and idle_after == 0 and avail > 0:  # a tie could end the stretch early
            n, ni = sl.n, self.inst.n
            rq_ids = rq.task[rq0:rq.n].copy()
            saved = (sl.free[:n].copy(), sl.task[:n].copy(), sl.busy_until[:n].copy(),
                     self.inst.free_max[:ni].copy(), len(self.pend_chunks), self._npend, rq_ids,
                     self.t_attempt[rq_ids].copy())
        inflight = sl.busy_until[: sl.n]
        inflight = inflight[inflight > T]  # ends of the tasks running at T
        alive = self._alive()
        ins = self.inst
        keep = ~ins.draining[alive]

        def first_idle():  # when the first serving instance has been idle for idle_after
            since = ins.free_max[alive][keep]
            return float((since + idle_after if idle_after else since).min()) if since.size else math.inf

        if avail == 0:  # nothing starts any more: the stretch ends at the first idle or last end
            last = float(inflight.max()) if inflight.size else T  # then every task is done
            stop_at = min(last, first_idle()) if watch_idle else last
            ts, t = [], T
            while len(ts) < COAST_TICKS:
                t = t + tick  # the additions tick by tick makes
                if t >= E or t > H or t >= stop_at:
                    break
                ts.append(t)
            m = len(ts)
            if m == 0:
                return T, done
            ticks = np.array(ts)
            running = inflight.size - _upto(ticks, inflight, "left")
            queued = np.zeros(m, dtype=np.int64)
            dones = self.ntasks - running
        else:
            m = self._coast_busy(T, E, H, avail, inflight, alive, first_idle, watch_idle, saved)
            if m == 0:
                return T, done
            ticks, queued, running, dones = m
            m = ticks.size
        self.events += m
        self.coasted += m
        violations = self.limit_violations
        self.check_limits()  # the limits and the serving counts do not change in the stretch
        self.limit_violations += (self.limit_violations - violations) * (m - 1)
        if int(dones[-1]) < MEAN_EXACT_COMPLETIONS:  # skipped at every tick (see _update_mean)
            self._mean_calls += m
        else:
            for k in range(m):
                self._update_mean(float(ticks[k]), int(dones[k]))
        rec = np.flatnonzero((self._nticks + np.arange(m)) % self.record_every == 0)
        self._nticks += m
        if rec.size:
            grant, price, minc = self._alive_cache[2]
            rows = max(1, (1 << 18) // max(grant.size, 1))
            cost = np.concatenate([charge(ticks[rec[c:c + rows], None] - grant[None, :], price, minc).sum(axis=1)
                                   for c in range(0, rec.size, rows)]) + self.closed_cost
            r = self.rec
            at, k = ticks[rec], 0
            while k < rec.size:  # the instance counts change only where a boot ends
                counts, cores = self._state_counts(float(at[k]))
                j = max(k + 1, int(np.searchsorted(at, self._next_ready(), side="left")))
                r["inst"].extend([counts] * (j - k))
                r["cores"].extend([cores] * (j - k))
                k = j
            r["time"].extend(at.tolist())
            r["queued"].extend(queued[rec].tolist())
            r["running"].extend(running[rec].tolist())
            r["done"].extend(dones[rec].tolist())
            r["cost"].extend(cost.tolist())
            r["refused"].extend([self.n_refused] * rec.size)
        return float(ticks[m - 1]), int(dones[m - 1])

    def _coast_busy(self, T, E, H, avail, inflight, alive, first_idle, watch_idle, saved):
        """The stretch of :meth:`_coast` while tasks wait: ``(ticks, queued, running, done)`` of
        its ticks, or 0 (none). The slots are advanced to its last tick, grown until it ends."""
        tick, a, rq, ins = self.tick, self.att, self.rq, self.inst
        ptr0, rq0, a0 = self.ptr, self.rq_pos, a.n
        idle_after = self._idle_after
        # a first guess of its length: until the waiting work is spread over the open slots
        work = float(self.work[ptr0:].sum()) + float(self.work[rq.task[rq0:rq.n]].sum())
        sl = self.slot
        cap = float(sl.speed[: sl.n][sl.open[: sl.n]].sum())
        # ... and at most about COAST_TASKS tasks started (the stretch's arrays stay small)
        most = max(8, int(COAST_TASKS * self._mean_work / (cap * tick))) if cap > 0 else COAST_TICKS
        n = int(min(COAST_TICKS, most, max(8, 1.1 * work / cap / tick + 2))) if cap > 0 else 64
        done_to = -1  # the last tick advanced to
        while True:
            ticks = np.cumsum(np.r_[T, np.full(n, tick)])[1:]  # the additions tick by tick makes
            K = min(int(np.searchsorted(ticks, E, side="left")), int(np.searchsorted(ticks, H, side="right")))
            if K < 2:  # (only the first pass: K does not fall as n grows)
                return 0
            ticks = ticks[:K]
            # advanced in steps of about COAST_STEP_SLOTS slots freeing (one step for a small
            # pool): a pass over the slots costs their number, whatever the step
            step = max(1, int(COAST_STEP_SLOTS * self._mean_work / (cap * tick))) if cap > 0 else K
            for k in list(range(done_to + step, K - 1, step)) + [K - 1]:
                self.advance(float(ticks[k]))
            done_to = K - 1
            a1 = a.n
            st, en = a.start[a0:a1], a.end[a0:a1]
            # where each task end (and each end of the tasks running at T) falls among the ticks
            at_en, at_in = np.searchsorted(ticks, en), np.searchsorted(ticks, inflight)

            def upto(at):  # how many of the values placed at ``at`` are <= each tick
                return np.cumsum(np.bincount(at, minlength=K + 1)[:K])

            if st.size < 2 or bool((st[1:] >= st[:-1]).all()):  # FIFO: the starts are in order
                started = np.searchsorted(st, ticks, side="left")  # tasks started before each tick
            else:
                started = _upto(ticks, st, "right")
            # attempts with start < t < end: started before it, less those ended by it (and the
            # zero-length ones at it, which are neither running nor started before it)
            running = (inflight.size - upto(at_in)) + started - upto(at_en)
            zero = st[st == en]
            if zero.size:
                running += _upto(ticks, zero, "left") - _upto(ticks, zero, "right")
            queued = avail - started
            dones = ptr0 - (rq.n - rq0) + started - running
            stop = dones >= self.ntasks
            if watch_idle:
                empty = queued == 0
                if empty.any():  # free_max is final once every task started
                    stop |= empty & (ticks >= first_idle())
                if idle_after == 0 and not empty.all():  # ticks a task end or a boot lands on
                    ready = ins.ready[alive]
                    for ends, at in ((inflight, at_in), (en, at_en), (ready, np.searchsorted(ticks, ready))):
                        at = np.minimum(at, K - 1)
                        hit = at[ticks[at] == ends]
                        stop[hit] |= ~empty[hit]
            if stop.any() or K < n or n >= min(COAST_TICKS, most):
                break
            n = min(COAST_TICKS, most, 4 * n)
        m = int(np.argmax(stop)) if stop.any() else K
        if saved is not None and m < K and started[m] < a1 - a0:
            self._undo(saved, ptr0, rq0, a0)  # a tie: undo the assignment past the tick before it
            self.undone += 1
            if m > 0:
                self.advance(float(ticks[m - 1]))
        if m == 0:
            return 0
        return ticks[:m], queued[:m], running[:m], dones[:m]

    def _undo(self, saved, ptr0: int, rq0: int, a0: int) -> None:
        """Undo the assignments :meth:`advance` made since ``saved`` was taken (see _coast)."""
        free, task, busy, free_max, nchunks, npend, rq_ids, rq_att = saved
        sl, a = self.slot, self.att
        n = free.size
        sl.free[:n], sl.task[:n], sl.busy_until[:n] = free, task, busy
        self.inst.free_max[: free_max.size] = free_max
        tk = a.task[a0:a.n]
        self.t_start[tk] = np.nan
        self.t_end[tk] = np.nan
        self.t_slot[tk] = -1
        self.t_attempt[tk] = -1
        self.t_attempt[rq_ids] = rq_att
        a.n, self.ptr, self.rq_pos = a0, ptr0, rq0
        del self.pend_chunks[nchunks:]
        self._npend = npend

    # -- main loop ----------------------------------------------------------------------------------
    def run(self):
        wall0 = perf_counter()
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        self.push(0.0, _TICK)
        if self.curve is not None:
            for t in self.curve[0]:
                if 0 < t < self.horizon:
                    self.push(float(t), _CAPACITY)
        if self.noise is not None:
            k = 1
            while k * self.noise.interval < self.horizon:
                self.push(k * self.noise.interval, _CAPACITY)
                k += 1
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.ntasks, unit="task", desc="virtual clock", leave=False)
        self._bar, self._last_done, self._nticks, self._end_time = bar, 0, 0, None
        clock = self.clock
        clock.on(_END, self._on_end)
        clock.on(_KILL, self._on_kill)
        clock.on(_NOTICE, self._on_notice)
        clock.on(_CAPACITY, self._on_capacity)
        clock.on(_TICK, self._on_tick)
        try:
            how = clock.run(until=self.horizon, before=self.advance)
        finally:
            if bar is not None:
                bar.close()
        end_time = self.horizon if how == "horizon" else self._end_time
        nticks = self._nticks
        if end_time is None:
            end_time = self.horizon
        self.end_time = float(end_time)
        self.nticks = nticks
        self.wall = perf_counter() - wall0
        return self
