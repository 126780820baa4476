"""The job-level discrete-event engine: pools of nodes, a Slurm-like and a Kubernetes-like queue.

The one event loop of :class:`hpclab.elastic.clock.Clock` (job and pod completions, node boot
completions, idle checks, policy ticks), arrivals read in order from the sorted job table as its
arrival stream, and after each instant's arrivals one scheduling pass per queue. Everything is plain Python lists, deques and counters: a pass touches only the head
of the queue and at most ``depth`` jobs behind it (as Slurm's ``bf_max_job_test``), and a queue is
a deque (jobs leave near its head and arrive at its tail), so a replay's cost grows linearly in
its jobs even when the queues grow without bound.

Pools
    Nodes of one catalog instance type with ``slots`` each (GPUs for GPU types, cores for CPU
    types), grouped into network segments. A *fixed* pool has all its nodes from the start; an
    *elastic* pool launches nodes when queued demand exceeds what is free or booting (they are
    usable after the catalog ``boot_time``) and retires a node idle for ``idle_timeout`` when no
    queued job needs it. Nodes are billed per second from launch to retirement, at least the
    catalog ``min_charge``.

Zones and spot
    A pool in a catalog zone launches only what the zone's capacity grants
    (:class:`hpclab.elastic.capacity.ZoneCapacity`; the rest is refused and asked again when
    capacity frees). Spot nodes get their reclaim times from the run's
    :class:`hpclab.elastic.faults.MarketSchedule` at each grant (the simulator's); a reclaim
    notice retires a booting or idle node at once and stops a busy one taking work; at the hard
    kill (``spot_notice`` later) its jobs are killed and re-queued (a gang loses all its nodes).

Slurm-like queue (HPC gangs of whole nodes)
    Priority, then FIFO; EASY backfill (Lifka 1995; Mu'alem & Feitelson 2001): when the head job
    cannot start, its *reservation* (shadow time) is the earliest time enough nodes are free by
    the requested run times of running jobs (and the boot completions of booting nodes); a later
    job may start now if it fits and either ends (by its request) before the shadow time or uses
    only the nodes the head will not need then (the *extra* nodes).

Kubernetes-like queue (AI pods)
    Priority, then FIFO, no reservations: each pass places what fits. Gangs (training) are placed
    all-or-nothing (as Volcano/Kueue gang scheduling); independent pods (inference, data) one by
    one. Pods are bin-packed: the fullest node that fits (``MostAllocated`` scoring).

Topology-aware placement (:mod:`hpclab.elastic.placement`, below the queues: each queue asks
its pool's placement for nodes)
    ``placement="topology"``: a gang goes into one segment if any has room (the one with the
    least room that fits, best fit), else spreads over the fewest segments; elastic scale-out
    launches new nodes in the segment that already holds the most free and booting nodes.
    ``placement="linear"``: nodes are taken in index order (what a scheduler without topology
    knowledge does) and new nodes land in a random segment with room. A gang spanning segments
    runs ``slowdown`` times longer (:func:`hpclab.network.placement.cross_segment_slowdown`, from
    the network layer's topology: extra hops and oversubscription of the tier it crosses).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence
from types import MappingProxyType

import numpy as np

from hpclab.elastic.capacity import reclaim_excess
from hpclab.elastic.clock import Clock
from hpclab.elastic.policies import Aggregates, ask, attach_aggregates
from hpclab.elastic.state import PoolState, maker

INF = float("inf")
_NOTHING = frozenset()
_NO_REFUSALS = MappingProxyType({})
_aggregates, _pool_state = maker(Aggregates), maker(PoolState)  # per-decision snapshots

# event types; at equal times finishes and boots come before reclaims, those before changes of
# the zones' capacity (a capacity curve), and those before idle checks
EV_FINISH, EV_POD, EV_BOOT, EV_NOTICE, EV_KILL, EV_CAPACITY, EV_IDLE, EV_TICK = 0, 1, 2, 3, 4, 5, 6, 7
# node states; NOTICED: a spot node under reclaim notice (up, takes no new work, killed at the end
# of the notice)
BOOTING, UP, RETIRED, NOTICED = 1, 2, 3, 4
# why a node ended (the task-bag simulator's reasons, hpclab.elastic._simengine.REASONS)
END_RUNNING, END_RETIRED, END_DRAINED, END_KILLED, END_BOOT_RECLAIMED = 0, 1, 2, 3, 4


class _Lazy(Sequence):
    """A snapshot's sequence of a platform pool, built by ``_make`` only when a policy reads it
    (its length comes from the pool's counters)."""

    __slots__ = ("_pool", "_items")

    def __init__(self, pool):
        self._pool = pool
        self._items = None

    def _build(self):
        if self._items is None:
            self._items = self._make()
        return self._items

    def __iter__(self):
        return iter(self._build())

    def __getitem__(self, k):
        return self._build()[k]


class _NodeViews(_Lazy):
    """``PoolState.instances`` of a platform pool: one view per node booting or up."""

    __slots__ = ()

    def _make(self):
        from hpclab.elastic.state import InstanceView

        p = self._pool
        G = p.G
        views = []
        for n in sorted(p.live_nodes):
            up = p.nstate[n] == UP
            noticed = p.nstate[n] == NOTICED
            free = p.nfree[n]
            state = "running" if up else "draining" if noticed else "booting"
            views.append(InstanceView(id=str(n), itype=p.itype, zone=p.name, market=p.market,
                                      state=state, cores=G, launched_at=p.nlaunch[n],
                                      running_tasks=G - free if up or noticed else 0,
                                      idle_since=p.nidle[n] if up and free == G else None,
                                      notice=noticed))
        return tuple(views)

    def __len__(self):
        return len(self._pool.live_nodes)


class _IdleRows(_Lazy):
    """``Aggregates.idle`` of a platform pool: (id, itype, market, slots, idle since) per idle
    node, segment by segment in idle-since order."""

    __slots__ = ()

    def _make(self):
        p = self._pool
        nidle, G, itype, market = p.nidle, p.G, p.itype, p.market
        return tuple([(str(n), itype, market, G, nidle[n]) for lst in p.idle for n in lst])

    def __len__(self):
        return self._pool.n_idle


class Pool:
    """Nodes of one instance type in segments (see the module docstring)."""

    def __init__(self, name, itype, slots, max_nodes, seg_nodes, *, elastic, min_nodes=0,
                 idle_timeout=300.0, boot_time=0.0, price=0.0, min_charge=0.0, placement="topology",
                 slowdown=None, segments_per_pod=1 << 30, rng=None):
        self.name = name
        self.itype = itype
        self.G = int(slots)
        self.max_nodes = int(max_nodes)
        self.C = int(seg_nodes)
        self.S = max(1, -(-self.max_nodes // self.C))
        self.seg_cap = [min(self.C, self.max_nodes - s * self.C) for s in range(self.S)]
        self.elastic = bool(elastic)
        self.min_nodes = int(min_nodes)
        self.idle_timeout = float(idle_timeout)
        self.boot_time = float(boot_time)
        self.price = float(price)
        self.min_charge = float(min_charge)
        from hpclab.elastic.placement import make_placement

        self.placement = make_placement(placement)  # which nodes a job gets, where nodes land
        self.slowdown = slowdown or {}  # kind -> run-time factor per tier (one segment, one pod, pods)
        self.L = int(segments_per_pod)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        # per node
        self.nseg: list[int] = []
        self.nfree: list[int] = []
        self.nstate: list[int] = []
        self.nlaunch: list[float] = []
        self.nready: list[float] = []
        self.nend: list[float] = []
        self.nidle: list[float] = []  # idle since
        self.timer = False  # an idle sweep is pending
        # per segment
        self.idle: list[list[int]] = [[] for _ in range(self.S)]
        self.partial: list[set] = [set() for _ in range(self.S)]
        self.up = [0] * self.S
        self.boot = [0] * self.S
        self.n_up = 0
        self.n_noticed = 0  # up nodes under a reclaim notice (NOTICED)
        self.noticed_free = 0  # free slots on them (they take no new work)
        self.n_boot = 0
        self.n_idle = 0
        self.free_slots = 0
        self.booting: deque = deque()  # (ready time, node), in ready order
        # demand of queued jobs: whole nodes and slots of pods
        self.q_whole = 0
        self.q_slots = 0
        self.busy = 0.0  # slot-seconds used by jobs
        self.version = 0  # bumps whenever capacity is freed or added
        self.draining = False
        # the Slurm-like queue's reservation on this pool (shadow time, extra nodes) while its
        # head waits: pods of the Kubernetes-like queue may then take only guard_extra idle nodes
        self.guard_shadow = INF
        self.guard_extra = 0
        self.eng = None  # the engine (set by it)
        self.clock = None  # the engine's clock (set by the engine)
        # the pool's hpclab.elastic policy: asked at its triggers ("shortfall", "idle") if it
        # declares them (event_driven), else every ``tick`` seconds while there is work
        self.scaler = None
        self.event_driven = False
        self.tick = 60.0
        self.ticking = False
        self.market = "on-demand"
        self.live_nodes: set = set()
        self.quiet_ticks = 0
        self._agg = None  # (serving count, its Aggregates mappings), see pool_state
        self._slots_map = MappingProxyType({itype: self.G})
        # the zone: its capacity limits launches, its spot market reclaims spot nodes (set by
        # the replay; None: no zone, launches always granted, no reclaims)
        self.zone = None
        self.capacity = None  # the run's shared hpclab.elastic.capacity.ZoneCapacity
        self.cores = 0  # catalog cores per node (what zone capacity counts)
        self.spot = False
        self.schedule = None  # the run's hpclab.elastic.faults.MarketSchedule (spot reclaims)
        self.reclaim_rate = 0.0  # mean reclaims per instance-second
        self.notice = 0.0  # seconds from a reclaim notice to the hard kill (catalog spot_notice)
        self.njobs = None  # spot only: per node {job: [start of each of its pods on the node]}
        self.nreason: list[int] = []
        self.refused: dict = {}  # (itype, zone[, "spot"]) -> time of the last refusal
        self.n_reclaims = self.n_kills = self.n_refused = self.n_refusal_events = 0
        self.lost = 0.0  # slot-seconds of work lost to hard kills
        self._refused_at = None  # (capacity version, nodes refused) of the last refusal

    # -- lifecycle ---------------------------------------------------------------------------
    def _new_node(self, t, seg, state):
        n = len(self.nseg)
        self.nseg.append(seg)
        self.nfree.append(0)
        self.nstate.append(state)
        self.nlaunch.append(t)
        self.nready.append(t if state == UP else t + self.boot_time)
        self.nend.append(math.nan)
        self.nidle.append(t)
        self.nreason.append(END_RUNNING)
        if self.njobs is not None:
            self.njobs.append({})
        self.live_nodes.add(n)
        return n

    def start_fixed(self, t, count):
        """Bring ``count`` nodes up at ``t`` with no boot delay (a fixed cluster, or a warm
        minimum), filling segments in order (up to what the zone grants)."""
        if self.capacity is not None:
            count = self._grant(t, count)
        s = 0
        first = len(self.nseg)
        for _ in range(count):
            while self.up[s] + self.boot[s] >= self.seg_cap[s]:
                s += 1
            n = self._new_node(t, s, UP)
            self.up[s] += 1
            self.n_up += 1
            self._set_idle(t, n)
        if self.spot and count > 0:
            self._granted(t, range(first, len(self.nseg)))

    def _set_idle(self, t, n):
        if self.nstate[n] == NOTICED:  # under reclaim notice: it leaves instead
            self._leave(t, n, END_DRAINED)
            return
        s = self.nseg[n]
        self.nfree[n] = self.G
        self.idle[s].append(n)  # each idle list stays in idle-since order
        self.n_idle += 1
        self.free_slots += self.G
        self.version += 1
        self.nidle[n] = t
        if self.elastic and not self.timer and self.event_driven:
            self._arm(t + self.idle_timeout)

    def _arm(self, when):
        """One pending idle sweep per pool."""
        self.timer = True
        self.clock.at(when, EV_IDLE, self, -1, 0)

    def launch(self, t, count):
        """Request ``count`` nodes now; they are usable after the boot time (in a zone, as many
        as it grants: the rest is refused)."""
        if self.capacity is not None:
            count = self._grant(t, count)
            if count <= 0:
                return
        first = len(self.nseg)
        for s, k in self.placement.launch_plan(self, count):
            for _ in range(k):
                n = self._new_node(t, s, BOOTING)
                self.eng.live += 1
                ready = t + self.boot_time
                self.booting.append((ready, n))
                self.clock.at(ready, EV_BOOT, self, n, 0)
            self.boot[s] += k
            self.n_boot += k
        self.version += 1
        if self.spot:
            self._granted(t, range(first, len(self.nseg)))

    # -- zone capacity and the spot market ------------------------------------------------------
    def _grant(self, t, count):
        """Nodes of ``count`` the zone grants (:class:`hpclab.elastic.capacity.ZoneCapacity`); the
        rest is refused and counted. A request no larger than the last refused one is not asked
        again until the zone's capacity of this type frees (its answer would be the same)."""
        if count <= 0:
            return 0
        cap = self.capacity
        ver = cap.version.get((self.zone, self.itype), 0)
        last = self._refused_at
        if last is not None and last[0] == ver and count <= last[1]:
            return 0
        n, why = cap.grant(self.zone, self.itype, self.cores, count, spot=self.spot)
        if n < count:
            self.n_refused += count - n
            self.n_refusal_events += 1
            self.refused[(self.itype, self.zone) if why == "zone" else (self.itype, self.zone, "spot")] = t
            self._refused_at = (ver, count - n)
        elif self.elastic or self.n_up + self.n_boot + n >= self.max_nodes:
            self._refused_at = None  # nothing it asked for is still refused (a fixed pool still
            # short of its size keeps its refusal: refused pools are asked again when cores free)
        return n

    def _granted(self, t, nodes):
        """Spot nodes granted at ``t``: their reclaim times from the run's market schedule (the
        simulator's :class:`hpclab.elastic.faults.MarketSchedule`, in grant order)."""
        nodes = list(nodes)
        when = self.schedule.reclaim_times(self.itype, self.zone, [t] * len(nodes), self.reclaim_rate)
        for n, w in zip(nodes, when.tolist()):
            if w < INF:
                self.clock.at(w, EV_NOTICE, self, n, 0)

    def _gone(self, t, n, reason):
        """Node ``n`` has left (its counters already updated): its end, the zone's cores back,
        and a fixed pool asks for a replacement."""
        self.nstate[n] = RETIRED
        self.nend[n] = t
        self.nreason[n] = reason
        self.live_nodes.discard(n)
        if self.capacity is not None:
            self.capacity.release(self.zone, self.itype, self.cores, spot=self.spot)
            self.eng.wake_refused(t, self.zone, self.itype, skip=self)
        if reason >= END_DRAINED:
            self.version += 1
            if not self.elastic and not self.draining:
                self.launch(t, 1)  # a fixed cluster keeps its size

    def _leave(self, t, n, reason):
        """A node under notice whose last job ended (or was killed) leaves."""
        s = self.nseg[n]
        self.up[s] -= 1
        self.n_up -= 1
        self.n_noticed -= 1
        self.noticed_free -= self.nfree[n]
        self.nfree[n] = 0
        self._gone(t, n, reason)

    def reclaim_notice(self, t, n):
        """The market reclaims node ``n``: a booting node goes at once, an idle one too; a busy one
        takes no new work and is killed ``notice`` seconds later unless its jobs end first."""
        st = self.nstate[n]
        if st == RETIRED or st == NOTICED or self.draining:
            return  # gone already, or the replay is over (nothing left to run)
        self.n_reclaims += 1
        s = self.nseg[n]
        if st == BOOTING:
            self.boot[s] -= 1
            self.n_boot -= 1
            self.booting = deque(b for b in self.booting if b[1] != n)
            self._gone(t, n, END_BOOT_RECLAIMED)
            return
        self.nstate[n] = NOTICED
        self.n_noticed += 1
        self.noticed_free += self.nfree[n]
        if self.nfree[n] == self.G:  # idle
            self.idle[s].remove(n)
            self.n_idle -= 1
            self.free_slots -= self.G
            self._leave(t, n, END_DRAINED)
            return
        self.partial[s].discard(n)
        self.free_slots -= self.nfree[n]
        self.version += 1  # what the queues planned with changed
        self.clock.at(t + self.notice, EV_KILL, self, n, 0)

    def hard_kill(self, t, n):
        """The notice ran out: the jobs still on node ``n`` are killed and re-queued (a gang
        loses every node it holds), then the node leaves."""
        if self.nstate[n] != NOTICED:
            return
        self.n_kills += 1
        jobs = self.njobs[n]
        for j in sorted(jobs):
            if j in jobs:
                self.eng.kill(j, t, self, n)
        if self.nstate[n] == NOTICED:  # pragma: no cover - the last release made it leave
            self._leave(t, n, END_KILLED)
        self.nreason[n] = END_KILLED

    def boot_done(self, t, n):
        if self.nstate[n] != BOOTING:
            return  # reclaimed while booting
        s = self.nseg[n]
        self.nstate[n] = UP
        self.boot[s] -= 1
        self.n_boot -= 1
        self.up[s] += 1
        self.n_up += 1
        if self.booting and self.booting[0][1] == n:
            self.booting.popleft()
        else:  # pragma: no cover - boots complete in launch order
            self.booting = deque(b for b in self.booting if b[1] != n)
        self._set_idle(t, n)

    @property
    def waits_on_refusal(self) -> bool:
        """The zone refused this pool and it has queued work (more capacity may start it)."""
        return self._refused_at is not None and bool(self.q_whole or self.q_slots)

    def _retire_blocked(self):
        return not self.draining and (self.q_whole or self.q_slots) and self.deficit() >= 0

    def idle_check(self, t, _n=-1, _=0):
        """An idle wake of an event-driven policy: ask it (it retires the nodes idle for its
        ``idle_timeout`` that no queued job needs, keeping ``min_nodes``), then arm the next wake
        at the next due time, unless a due node was kept because queued demand needs it (the
        next pass re-arms then, see :meth:`autoscale`)."""
        self.timer = False
        timeout = self.idle_timeout
        nidle = self.nidle
        # its trigger holds (a node is due) and a retirement could be applied
        if (self.n_up + self.n_boot > self.min_nodes and not self._retire_blocked()
                and any(lst and nidle[lst[0]] + timeout <= t for lst in self.idle)):
            self._apply(t, ask(self.scaler, self.pool_state(t)))
        nxt = INF
        for lst in self.idle:
            if lst:
                due = nidle[lst[0]] + timeout
                if due <= t:
                    return
                if due < nxt:
                    nxt = due
        if nxt < INF and self.n_up + self.n_boot > self.min_nodes:
            self._arm(nxt)

    def deficit(self):
        """Nodes the queued demand needs beyond what is free or booting."""
        partial_free = self.free_slots - self.n_idle * self.G
        pods = max(0, self.q_slots - partial_free)
        return self.q_whole + -(-pods // self.G) - self.n_idle - self.n_boot

    def autoscale(self, t):
        """After a scheduling pass: ask an event-driven policy if queued demand has a shortfall
        (and keep an idle wake armed); a ticking policy gets its next tick armed."""
        if not self.elastic:
            return
        if not self.event_driven:
            if not self.ticking:
                self._arm_tick(t + self.tick)
            return
        if not self.timer and self.n_idle and self.n_up + self.n_boot > self.min_nodes:
            due = min(self.nidle[lst[0]] for lst in self.idle if lst) + self.idle_timeout
            self._arm(due if due > t else t + self.idle_timeout)
        if self.deficit() > 0 and self.n_up + self.n_boot < self.max_nodes:
            self._apply(t, ask(self.scaler, self.pool_state(t)))

    # -- a shared policy at ticks ---------------------------------------------------------------
    def _arm_tick(self, when):
        self.ticking = True
        self.clock.at(when, EV_TICK, self, -1, 0)

    def pool_state(self, t):
        """A :class:`hpclab.elastic.state.PoolState` snapshot of this pool: task slots are node
        slots (vCPUs or GPUs), queued = slots asked by queued jobs (whole nodes count all their
        slots), one :class:`InstanceView` per node that is booting or up.

        The snapshot is cheap: the aggregates every policy reads (counts, serving slots, idle
        nodes) come from the pool's counters as :class:`Aggregates`, and the per-node views
        are built only if a policy walks ``state.instances``."""
        G = self.G
        k = self.n_noticed  # up, but under a reclaim notice: not serving
        serving = self.n_up - k + self.n_boot
        agg = self._agg
        if agg is None or agg[0] != serving or agg[4] != k:  # the mappings change only with these counts
            place = (self.itype, self.name, self.market)
            agg = self._agg = (serving, {self.itype: serving} if serving else {},
                               {self.itype: G} if serving or k else {}, {place: serving} if serving else {},
                               k, frozenset({(self.itype, self.name)}) if k and self.spot else _NOTHING)
        summary = _aggregates(agg[1], serving * G, serving * G if self.market == "spot" else 0,
                       agg[2], agg[5], _IdleRows(self), agg[3], self.n_boot * G, self.n_idle * G,
                       (self.n_up - k) * G - self.free_slots)
        eng = self.eng
        # once nothing can change any more (draining), queued jobs that can never run do not
        # hold nodes: the policy sees no queue
        whole = 0 if self.draining else self.q_whole * G
        state = _pool_state(t, 0 if self.draining else whole + self.q_slots,
                     self.n_up * G - self.free_slots - self.noticed_free, _NodeViews(self), self.limits, 0.0,
                     eng.req_sum / eng.n_seen if eng.n_seen else None, 0,
                     # the zone's refusals, under the place the policy's limits name (the pool)
                     {(k[0], self.name) + k[2:]: v for k, v in self.refused.items()} if self.refused
                     else _NO_REFUSALS,
                     self._slots_map, whole)
        return attach_aggregates(state, summary)

    def policy_tick(self, t, _n=-1, _=0):
        """Ask the shared policy for a decision and apply it: launches of this pool's type (capped
        at its maximum), retirements of idle nodes (never while queued jobs need them, as the
        shortfall policy). Re-arms while there is anything to decide."""
        self.ticking = False
        count, retired = self._apply(t, ask(self.scaler, self.pool_state(t)))
        if count > 0 or retired:
            self.quiet_ticks = 0
            self.eng.schedule_all(t)  # reservations see the new boots; queues may use freed state
        else:
            self.quiet_ticks += 1
        busy = self.q_whole or self.q_slots or self.n_boot or self.n_up > self.min_nodes
        if busy and not self.ticking and not (self.draining and self.quiet_ticks > self.idle_timeout / self.tick + 2):
            self._arm_tick(t + self.tick)

    def _apply(self, t, d):
        """Apply a decision: launches of this pool's type (capped at its maximum), retirements
        of idle nodes (never below ``min_nodes``, never while queued jobs need them). Returns
        (nodes launched, nodes retired)."""
        count = retired = 0
        for la in d.launch:
            if la.itype == self.itype:
                count += la.count
        if count > 0:
            count = min(count, self.max_nodes - self.n_up - self.n_boot)
            if count > 0:
                self.launch(t, count)
        for rid in d.retire:
            n = int(rid)
            if self.n_up + self.n_boot <= self.min_nodes or self._retire_blocked():
                break
            if self.nstate[n] == UP and self.nfree[n] == self.G:
                self._retire_idle(t, n)
                retired += 1
        return max(count, 0), retired

    def _retire_idle(self, t, n):
        s = self.nseg[n]
        self.idle[s].remove(n)
        self._mark_retired(t, n, s)  # a node leaving frees nothing: no new pass is due

    def _mark_retired(self, t, n, s):
        """Node ``n`` (idle, in segment ``s``, already taken off its idle list) leaves at ``t``."""
        self.n_idle -= 1
        self.free_slots -= self.G
        self.up[s] -= 1
        self.n_up -= 1
        if self.capacity is None:
            self.nstate[n] = RETIRED
            self.nend[n] = t
            self.nreason[n] = END_RETIRED
            self.live_nodes.discard(n)
        else:
            self._gone(t, n, END_RETIRED)

    def factor(self, kind, plan):
        """Run-time factor of a gang placed on the segments of ``plan`` [(segment, nodes)]:
        crossing segments of one pod (tier 1) or pods (tier 2)."""
        f = self.slowdown.get(kind)
        if f is None or len(plan) < 2:
            return 1.0
        return f[self.placement.tier(self, [s for s, _ in plan])]

    # -- whole nodes and pods: chosen by the placement (hpclab.elastic.placement) -------------
    def release_whole(self, t, nodes):
        for n in nodes:
            self._set_idle(t, n)

    def _idle_ok(self):
        """May a pod take an idle node without delaying the Slurm-like queue's reservation on
        this pool? Only one of the *extra* nodes (which it consumes): the reservation is computed
        from Slurm's own running jobs, so nodes held by pods must be ones the head will not need."""
        if self.guard_extra > 0:
            self.guard_extra -= 1
            return True
        return False

    def _occupy(self, n, g):
        s = self.nseg[n]
        if self.nfree[n] == self.G:
            self.idle[s].remove(n) if self.idle[s][-1] != n else self.idle[s].pop()
            self.n_idle -= 1
        self.nfree[n] -= g
        self.free_slots -= g
        if self.nfree[n] == 0:
            self.partial[s].discard(n)
        else:
            self.partial[s].add(n)

    def release_pod(self, t, n, g):
        s = self.nseg[n]
        if self.nstate[n] == NOTICED:  # under reclaim notice: its slots take no new pod
            self.nfree[n] += g
            self.noticed_free += g
            if self.nfree[n] == self.G:
                self._leave(t, n, END_DRAINED)
            return
        self.nfree[n] += g
        self.free_slots += g
        if self.nfree[n] == self.G:
            self.partial[s].discard(n)
            self.free_slots -= self.G  # _set_idle adds the whole node back
            self._set_idle(t, n)
        else:
            self.partial[s].add(n)
            self.version += 1

    def close(self, t_end):
        """End every node still alive at ``t_end``; return the instance intervals."""
        for n, st in enumerate(self.nstate):
            if st in (UP, BOOTING, NOTICED):
                self.nend[n] = t_end
        return self.nlaunch, self.nready, self.nend


class Slurm:
    """Priority + FIFO queue with backfill on one pool (whole nodes).

    The defaults are EASY backfill at every event (module docstring). The other options model
    a real Slurm (``sched/backfill``) on this point, as measured against Slurm 22.05 on one host
    (``docs/platform.md``, ``data/reference/slurm_replay.csv``):

    limit_unit : float
        Time limits are whole multiples of this many seconds (Slurm: 60, limits are minutes);
        the queue plans (reservations, backfill) and kills at ``ceil(req / limit_unit)``
        units. 0: the requested time as it is.
    bf_interval : float or None
        None: backfill at every event. Else Slurm's split: at each submit and completion only
        the main scheduler runs (priority order, starting jobs from the head while they fit,
        stopping at the first that does not); backfill passes run every ``bf_interval``
        seconds (at its multiples) while jobs wait.
    reserve : {"head", "host"}
        "head": only the head job holds a reservation (EASY). "host": every waiting job a
        backfill pass examines and cannot start reserves the whole pool from its earliest start
        (by the limits of the running jobs) for its limit: Slurm's backfill reserves for every
        pending job it tests, and its reservations are whole nodes, so on one host (a pool of
        one-core nodes standing for its cores) they block the host. A later job then starts
        only if it fits now and ends, by its limit, before every reservation.
    launch_latency : float
        Seconds a job holds its nodes beyond its run time (Slurm: launch and completion of the
        batch script).
    """

    RESERVE = ("head", "host")

    def __init__(self, eng, pool, *, backfill=True, depth=100, limit_unit=0.0, bf_interval=None,
                 reserve="head", launch_latency=0.0):
        from hpclab._validate import check_choice, check_nonnegative, check_positive

        self.eng = eng
        self.pool = pool
        self.backfill = backfill
        self.depth = depth
        # the queue in (-priority, arrival) order, and its keys; deques, since jobs leave near the
        # head (O(position)) and arrive at the tail, so an overloaded queue costs O(1) per job
        self.queue: deque = deque()
        self.qkeys: deque = deque()
        self.ends: list[tuple] = []  # (planned end: start + limit, job) of running jobs, sorted
        self.planned: dict = {}  # job -> its entry's planned end
        self.cache = None  # (pool version, shadow, extra) while the head is blocked
        self.first_shadow = {}  # job -> the first reservation it was given as head
        self.limit_unit = check_nonnegative("limit_unit", limit_unit)
        self.bf_interval = None if bf_interval is None else check_positive("bf_interval",
                                                                           bf_interval)
        self.reserve = check_choice("reserve", reserve, self.RESERVE)
        self.launch_latency = check_nonnegative("launch_latency", launch_latency)
        u = self.limit_unit
        # the time limit each job is planned and killed with
        self.lim = eng.req if u <= 0 else [max(math.ceil(r / u - 1e-9), 1) * u for r in eng.req]
        self._tick_at = INF

    def _enqueue(self, j):
        """Queue job ``j`` in priority, then arrival order; its index in the queue."""
        eng = self.eng
        key = (-eng.prio[j], j)
        self.pool.q_whole += eng.pods[j]
        q = self.queue
        if not q or key > self.qkeys[-1]:
            q.append(j)
            self.qkeys.append(key)
            return len(q) - 1
        idx = bisect_left(self.qkeys, key)
        q.insert(idx, j)
        self.qkeys.insert(idx, key)
        return idx

    def submit(self, j, t):
        idx = self._enqueue(j)
        c = self.cache
        if idx > 0 and c is not None and c[0] == self.pool.version:
            # nothing was freed since the last pass and the head is unchanged: only the newcomer
            # may start, by backfill (at the next backfill pass, with a bf_interval)
            if self.bf_interval is not None:
                self._arm(t)
            elif self.backfill and idx < self.depth:
                self._try_backfill(idx, t, c)
            self.pool.autoscale(t)
            return
        self.schedule(t)

    def _start(self, j, t, plan, idx):
        eng = self.eng
        pool = self.pool
        nodes = pool.placement.take_whole(pool, plan)
        f = pool.factor(eng.kind[j], plan) if len(plan) > 1 else 1.0
        req = self.lim[j] * f
        dur = min(eng.run[j] * f + self.launch_latency, req)
        del self.queue[idx]
        del self.qkeys[idx]
        pool.q_whole -= eng.pods[j]
        insort(self.ends, (t + req, j))
        self.planned[j] = t + req
        eng.started(j, t, dur, nodes, len(plan), f, pool)
        eng.live += 1
        eng.clock.at(t + dur, EV_FINISH, self, j, eng.attempt[j])

    def finish(self, j, t):
        eng = self.eng
        i = bisect_left(self.ends, (self.planned.pop(j), j))
        del self.ends[i]
        eng.released(j, t, self.pool, eng.alloc[j], self.pool.G)
        self.pool.release_whole(t, eng.alloc[j])
        eng.alloc[j] = None

    def kill(self, j, t, requeue=True):
        """A reclaim killed a node of running job ``j``: it loses all its nodes and goes back to
        the queue in its place (priority, then arrival); the next pass may restart it."""
        eng = self.eng
        pool = self.pool
        i = bisect_left(self.ends, (self.planned.pop(j), j))
        del self.ends[i]
        nodes = eng.alloc[j]
        eng.lose(j, t, pool, nodes, pool.G)
        eng.alloc[j] = None
        pool.release_whole(t, nodes)
        if requeue:
            self._enqueue(j)
        self.cache = None

    def _shadow(self, t, need):
        """Earliest time ``need`` nodes are free, and the nodes left over then."""
        pool = self.pool
        self.reachable = True
        avail = pool.n_idle
        ends = self.ends
        boots = pool.booting
        pods = self.eng.pods
        i = k = 0
        ne, nb = len(ends), len(boots)
        last = t
        while avail < need:
            te = ends[i][0] if i < ne else INF
            tb = boots[k][0] if k < nb else INF
            if te == INF and tb == INF:
                # cannot be reached by what runs and boots now (more nodes are yet to be launched):
                # plan at the last release; not a reservation the head can be promised
                self.reachable = False
                return last, 0
            if te <= tb:
                avail += pods[ends[i][1]]
                last = te
                i += 1
            else:
                avail += 1
                last = tb
                k += 1
        return last, avail - need

    def _try_backfill(self, i, t, cache):
        """Start queue[i] now if it fits and does not delay the head's reservation: it ends (by
        its limit, slowed by its placement) before the shadow time, or it uses only extra
        nodes."""
        shadow = cache[1]
        eng = self.eng
        pool = self.pool
        extra = pool.guard_extra
        j = self.queue[i]
        k = eng.pods[j]
        if k > pool.n_idle:
            return False
        req = self.lim[j]
        if t + req <= shadow:  # may end in time (the placement may still slow it down)
            plan = pool.placement.plan_whole(pool, k)
            f = pool.factor(eng.kind[j], plan) if len(plan) > 1 else 1.0
            if t + req * f <= shadow:
                self._start(j, t, plan, i)
                eng.backfilled[j] = True
                self.cache = (pool.version, shadow, extra)
                return True
        elif k > extra:
            return False
        else:
            plan = pool.placement.plan_whole(pool, k)
        if k > extra:
            return False
        self._start(j, t, plan, i)
        eng.backfilled[j] = True
        pool.guard_extra = extra - k
        self.cache = (pool.version, shadow, extra - k)
        return True

    def poll(self, t):
        """A pass if capacity changed since the last one (a completion, a boot)."""
        if self.queue and (self.cache is None or self.cache[0] != self.pool.version):
            self.schedule(t)

    def schedule(self, t):
        """The main scheduler (start from the head while jobs fit), then a backfill pass unless
        backfill runs on its own interval."""
        if self._main(t) and self.backfill and self.bf_interval is None:
            self._backfill(t)

    def policy_tick(self, t, _n=-1, _=0):
        """A backfill pass (every ``bf_interval`` seconds while jobs wait)."""
        if t != self._tick_at:
            return  # superseded by an earlier tick
        self._tick_at = INF
        if self._main(t) and self.backfill:
            self._backfill(t)
        if self.queue:
            self._arm(t)

    def _arm(self, t):
        if not self.backfill:
            return
        nxt = (math.floor(t / self.bf_interval + 1e-9) + 1) * self.bf_interval
        if nxt < self._tick_at:
            self._tick_at = nxt
            self.eng.clock.at(nxt, EV_TICK, self, -1, 0)

    def _main(self, t):
        """Start jobs from the head while they fit; with jobs left, set the head's reservation
        and return True."""
        eng = self.eng
        pool = self.pool
        q = self.queue
        pods = eng.pods
        place = pool.placement
        while q:
            j = q[0]
            plan = place.plan_whole(pool, pods[j])
            if plan is None:
                break
            self._start(j, t, plan, 0)
        if not q:
            self.cache = None
            pool.guard_shadow, pool.guard_extra = INF, 0
            return False
        pool.autoscale(t)
        head = q[0]
        shadow, extra = self._shadow(t, pods[head])
        if head not in self.first_shadow and self.reachable:
            self.first_shadow[head] = shadow
        if self.reserve == "host":
            extra = 0  # the head's reservation holds the whole host
        self.cache = (pool.version, shadow, extra)
        pool.guard_shadow, pool.guard_extra = shadow, extra
        if self.bf_interval is not None:
            self._arm(t)
        return True

    def _backfill(self, t):
        if self.reserve == "host":
            self._backfill_host(t)
            return
        eng = self.eng
        pool = self.pool
        q = self.queue
        pods = eng.pods
        shadow, extra = self.cache[1], self.cache[2]
        lim = self.lim
        depth = self.depth
        n_idle = pool.n_idle
        i = 1
        while i < len(q) and i < depth and n_idle > 0:
            j = q[i]
            k = pods[j]
            # cheap necessary conditions before the full check (which plans the placement)
            if k <= n_idle and (k <= extra or t + lim[j] <= shadow) and self._try_backfill(i, t, self.cache):
                n_idle = pool.n_idle
                extra = pool.guard_extra
                continue
            i += 1

    def _backfill_host(self, t):
        """Every examined job that cannot start reserves the whole pool from its earliest start
        for its limit; a job starts now if it fits and ends before the earliest reservation."""
        eng = self.eng
        pool = self.pool
        q = self.queue
        pods = eng.pods
        lim = self.lim
        first = INF  # earliest start of a reservation (each blocks the pool)
        i = 1  # the head (queue[0]) does not fit: _main started every head that did
        e, _ = self._shadow(t, pods[q[0]])
        if self.reachable:
            first = e
        while i < len(q) and i < self.depth:
            j = q[i]
            k = pods[j]
            if k <= pool.n_idle and t + lim[j] <= first:
                self._start(j, t, pool.placement.plan_whole(pool, k), i)
                eng.backfilled[j] = True
                continue
            if k > pool.n_idle:
                e, _ = self._shadow(t, k)
                if self.reachable and e + lim[j] <= first:
                    first = e  # its reservation comes before every other
            i += 1
        self.cache = (pool.version, first, 0)
        pool.guard_shadow, pool.guard_extra = first, 0


class Kube:
    """Priority + FIFO pod queues (one per pool) with no reservations: gangs all-or-nothing,
    other pods one by one, bin-packed.

    ``strategy="best-effort"`` lets a job that fits start before an earlier one that does not
    (Kueue's ``BestEffortFIFO``, its default; large gangs may starve); ``"strict"`` makes the
    first waiting job of a pool block the later ones (``StrictFIFO``).
    """

    def __init__(self, eng, pools_by_kind, *, depth=100, strategy="best-effort"):
        self.eng = eng
        self.plist = []
        for p in pools_by_kind.values():
            if p not in self.plist:
                self.plist.append(p)
        self.pidx = {kind: self.plist.index(p) for kind, p in pools_by_kind.items()}
        self.depth = depth
        self.strict = strategy == "strict"
        self.queues: list[deque] = [deque() for _ in self.plist]  # as the Slurm-like queue's
        self.qkeys: list[deque] = [deque() for _ in self.plist]
        self.left = {}  # job -> pods not yet started
        self.jp = {}  # job -> pool index
        self.jg = {}  # job -> slots per pod on its pool
        self.seen = [-1] * len(self.plist)  # pool versions at the last pass

    @property
    def queue(self):
        return [j for q in self.queues for j in q]

    def _enqueue(self, j, npods):
        """Queue ``npods`` pods of job ``j`` on its pool's queue (priority, then arrival order);
        the pool index, the pool and the job's index in the queue."""
        eng = self.eng
        pi = self.pidx[eng.kind[j]]
        pool = self.plist[pi]
        s = eng.slots[j]
        g = pool.G if s == 0 or s >= pool.G else s
        self.jp[j] = pi
        self.jg[j] = g
        if g == pool.G:
            pool.q_whole += npods
        else:
            pool.q_slots += npods * g
        self.left[j] = npods
        key = (-eng.prio[j], j)
        q, qk = self.queues[pi], self.qkeys[pi]
        if not q or key > qk[-1]:
            q.append(j)
            qk.append(key)
            return pi, pool, len(q) - 1
        idx = bisect_left(qk, key)
        q.insert(idx, j)
        qk.insert(idx, key)
        return pi, pool, idx

    def submit(self, j, t):
        pi, pool, idx = self._enqueue(j, self.eng.pods[j])
        if self.seen[pi] == pool.version:
            # nothing freed on its pool since the last pass: only the newcomer may start
            if idx < self.depth and (not self.strict or len(self.queues[pi]) == 1):
                self._try(pi, idx, t)
            pool.autoscale(t)
            self.seen[pi] = pool.version
            return
        self._pass(pi, t)

    def _try(self, pi, i, t):
        """Place what fits of the i-th job of pool pi's queue; True if it left the queue."""
        eng = self.eng
        j = self.queues[pi][i]
        pool = self.plist[pi]
        g = self.jg[j]
        if eng.gang[j]:
            got = pool.placement.place_pods(pool, eng.pods[j], g, True)
            if got is None:
                return False
            nodes, segs = got
            nseg = len(segs)
            f = pool.factor(eng.kind[j], [(x, 0) for x in segs]) if nseg > 1 else 1.0
            dur = min(eng.run[j] * f, eng.req[j] * f)
            self._dequeue(pi, i, j, pool, g, len(nodes))
            eng.started(j, t, dur, nodes, nseg, f, pool, g)
            eng.live += 1
            eng.clock.at(t + dur, EV_FINISH, self, j, eng.attempt[j])
            return True
        left = self.left[j]
        nodes, _ = pool.placement.place_pods(pool, left, g, False)
        if not nodes:
            return False
        dur = min(eng.run[j], eng.req[j])
        k = len(nodes)
        eng.pod_started(j, t, dur, nodes, pool, g)
        eng.live += k
        for n in nodes:
            eng.clock.at(t + dur, EV_POD, self, j, n)
        if k == left:
            self._dequeue(pi, i, j, pool, g, k)
            return True
        self.left[j] = left - k
        if g == pool.G:
            pool.q_whole -= k
        else:
            pool.q_slots -= k * g
        return False

    def _dequeue(self, pi, i, j, pool, g, npods):
        del self.queues[pi][i]
        del self.qkeys[pi][i]
        del self.left[j]
        if g == pool.G:
            pool.q_whole -= npods
        else:
            pool.q_slots -= npods * g

    def finish(self, j, t):
        eng = self.eng
        pool = self.plist[self.jp[j]]
        g = self.jg[j]
        nodes = eng.alloc[j]
        eng.released(j, t, pool, nodes, g)
        if g == pool.G:
            pool.release_whole(t, nodes)
        else:
            for n in nodes:
                pool.release_pod(t, n, g)
        eng.alloc[j] = None
        del self.jp[j], self.jg[j]

    def kill(self, j, t, requeue=True):
        """A reclaim killed a node of running gang ``j``: every pod goes back to the queue."""
        eng = self.eng
        pool = self.plist[self.jp[j]]
        g = self.jg[j]
        nodes = eng.alloc[j]
        eng.lose(j, t, pool, nodes, g)
        eng.alloc[j] = None
        if g == pool.G:
            pool.release_whole(t, nodes)
        else:
            for n in nodes:
                pool.release_pod(t, n, g)
        if requeue:
            self._enqueue(j, eng.pods[j])
        else:
            del self.jp[j], self.jg[j]

    def kill_pods(self, j, t, pool, n, requeue=True):
        """A reclaim killed node ``n``: the pods of independent-pod job ``j`` on it are lost and
        queued again (the job's other pods run on)."""
        eng = self.eng
        g = self.jg[j]
        starts = pool.njobs[n][j]
        c = len(starts)
        dur = min(eng.run[j], eng.req[j])
        pool.lost += sum(t - s for s in starts) * g
        pool.busy -= sum(s + dur - t for s in starts) * g
        eng.dead_pods.add((j, n))  # their completion events are void
        eng.live -= c
        eng.released(j, t, pool, [n] * c, g)
        if g == pool.G:
            pool.release_whole(t, [n])
        else:
            for _ in range(c):
                pool.release_pod(t, n, g)
        if not requeue:
            return
        if j in self.left:  # some of its pods still wait
            self.left[j] += c
            if g == pool.G:
                pool.q_whole += c
            else:
                pool.q_slots += c * g
        else:
            self._enqueue(j, c)

    def pod_finish(self, j, n, t):
        eng = self.eng
        pool = self.plist[self.jp[j]]
        g = self.jg[j]
        eng.released(j, t, pool, [n], g)
        if g == pool.G:
            pool.release_whole(t, [n])
        else:
            pool.release_pod(t, n, g)
        eng.pod_done(j, t)
        if eng.pods_done[j] == eng.pods[j]:
            del self.jp[j], self.jg[j]

    def poll(self, t):
        for pi, p in enumerate(self.plist):
            if self.queues[pi] and self.seen[pi] != p.version:
                self._pass(pi, t)

    def schedule(self, t):
        for pi in range(len(self.plist)):
            self._pass(pi, t)

    def _pass(self, pi, t):
        eng = self.eng
        pool = self.plist[pi]
        q = self.queues[pi]
        g = self.jg
        left = self.left
        gang = eng.gang
        depth = self.depth
        strict = self.strict
        free = pool.free_slots
        i = 0
        while i < len(q) and i < depth and free > 0:
            j = q[i]
            need = g[j] * left[j] if gang[j] else g[j]
            if free >= need and self._try(pi, i, t):
                free = pool.free_slots
                continue
            if strict:
                break
            i += 1
        pool.autoscale(t)
        self.seen[pi] = pool.version


class Router:
    """Sends each job to the queue for its kind (HPC to the Slurm-like queue, AI to the
    Kubernetes-like one)."""

    def __init__(self, routes, pools):
        self.routes = dict(routes)
        self.pools = list(pools)
        self.unique = []
        for q in self.routes.values():
            if q not in self.unique:
                self.unique.append(q)

    def __getitem__(self, kind):
        return self.routes[kind]


class Engine:
    """Replays a job table on pools and queues; see :func:`hpclab.platform.replay`."""

    def __init__(self, jobs, record=False):
        n = len(jobs)
        self.n = n
        self.submit = jobs["submit"].to_numpy(dtype=float).tolist()
        self.run = jobs["run_time"].to_numpy(dtype=float).tolist()
        self.req = jobs["req_time"].to_numpy(dtype=float).tolist()
        self.pods = jobs["pods"].to_numpy(dtype=np.int64).tolist()
        self.slots = jobs["slots"].to_numpy(dtype=np.int64).tolist()
        self.prio = jobs["priority"].to_numpy(dtype=np.int64).tolist()
        self.kind = jobs["kind"].astype(str).tolist()
        self.gang = [k in ("hpc", "train") for k in self.kind]
        self.start = [math.nan] * n
        self.end = [math.nan] * n
        self.nseg = [0] * n
        self.factor = [1.0] * n
        self.est_end = [math.nan] * n
        self.backfilled = [False] * n
        self.finished = [0] * n
        self.pods_done = [0] * n
        self.alloc: list = [None] * n
        self.attempt = [0] * n  # runs of a gang started (a killed run's completion is void)
        self.reruns = [0] * n  # times a reclaim killed the job (or pods of it) and it was re-queued
        self.dead_pods: set = set()  # (job, node) of pods killed by a reclaim
        self.failed = [False] * n  # killed more than max_reruns times: given up
        self.max_reruns = 6
        self._draining = False
        self.clock = Clock()
        self.record = [] if record else None
        self.t = 0.0
        self.live = 0  # completions and boots still in the heap
        self.req_sum = 0.0  # requested seconds of the jobs submitted so far (for policy snapshots)
        self.n_seen = 0
        self.routes = None
        self.zone_capacity = None  # the run's ZoneCapacity (its curve's changes are events)
        self._noise_at = None  # the time of the shortage process's next interval event, if armed

    def schedule_all(self, t):
        """A pass of every queue (after a policy launched nodes: reservations see the boots)."""
        for q in self.routes.unique:
            q.poll(t)

    def _set_draining(self, value: bool) -> None:
        """The replay is over (nothing can run any more: the pools show no queue and take no
        reclaims) or, after a wake that launched nodes, running again."""
        self._draining = value
        for p in self.routes.pools:
            p.draining = value
        if not value:  # running again: the shortage process goes on
            self._arm_noise(self.clock.now)

    def wake_refused(self, t, zone=None, itype=None, skip=None):
        """Cores of ``zone`` and ``itype`` (None: every zone, every type) may be free again: each
        other pool there that the zone refused asks again now (nothing else may run a pass on its
        queue)."""
        for p in self.routes.pools:
            if p is skip or p._refused_at is None or (zone is not None and p.zone != zone) \
                    or (itype is not None and p.itype != itype):
                continue
            booting = p.n_boot
            if p.elastic:
                p.autoscale(t)
            else:
                p.launch(t, p.max_nodes - p.n_up - p.n_boot)
            if p.n_boot > booting and self._draining:  # there is work again
                self._set_draining(False)

    def capacity_change(self, t, _a=None, _b=-1, _c=0):
        """The run's capacity curve changes the zones' capacity at ``t``
        (:class:`hpclab.elastic.capacity.ZoneCapacity`). A drop: where a zone's cores in use of a
        type now exceed it (or its spot share), spot nodes there get a reclaim notice, newest
        first (launch order among equals, as the task-bag simulator), until it fits. A rise:
        refused pools ask again. Once the replay is over (draining) only a rise that may start a
        queue left waiting on a refused pool changes anything."""
        cap = self.zone_capacity
        if _a == "noise":
            self._noise_at = None
        try:
            if not cap.set_time(t):
                return
            rise = cap.rose
            pools = [p for p in self.routes.pools if p.capacity is cap]
            if self._draining:
                if not (rise and any(p.waits_on_refusal for p in pools)):
                    return  # nothing can run any more: nodes are not reclaimed after the end
                self._set_draining(False)  # a queue may run again; the next pass drains again if not
            if rise:
                self.wake_refused(t)
            if cap.fell:
                self._reclaim_over(t, cap, pools)
        finally:
            if _a == "noise":
                self._arm_noise(t)

    def _arm_noise(self, t):
        """The shortage process's next interval is an event while the replay can still change:
        not draining, or a queue waits on a refused pool whose zone is short now (its factor
        below 1, so a later interval may give it more). Once every such zone is at full
        capacity, queued jobs that still do not fit never will, and the replay ends."""
        cap = self.zone_capacity
        if cap is None or cap.noise is None or self._noise_at is not None:
            return
        if self._draining and not any(self._may_start(p, cap, t) for p in self.routes.pools
                                      if p.capacity is cap and (p.zone, p.itype) in cap.cells):
            return
        self._noise_at = (cap.noise.step(t) + 1) * cap.noise.interval
        self.clock.at(self._noise_at, EV_CAPACITY, "noise", -1, 0)

    @staticmethod
    def _may_start(p, cap, t):
        """After the last job: pool ``p`` waits on a refusal with queued work whose shortfall the
        zone's full capacity could grant, and its zone is short now (so a later interval of the
        shortage may start the work; work larger than the full capacity never starts)."""
        if not p.waits_on_refusal:
            return False
        if cap.noise.factor(t)[cap.cells[p.zone, p.itype]] >= 1.0:
            return False
        need = min(p.deficit(), p.max_nodes - p.n_up - p.n_boot) if p.elastic else p.max_nodes - p.n_up - p.n_boot
        room = (cap.full(p.zone, p.itype) - cap.in_use.get((p.zone, p.itype), 0)) // p.cores
        return 0 < need <= room

    def _reclaim_over(self, t, cap, pools):
        """Where a zone's cores in use of a type exceed its capacity (or its spot share): reclaim
        notices to spot nodes there, newest first, until it fits."""
        for zone, itype in cap.over():
            mine = [p for p in pools if p.zone == zone and p.itype == itype]
            leaving = sum(p.cores for p in mine for n in p.live_nodes if p.nstate[n] == NOTICED)
            excess = reclaim_excess(cap.in_use[zone, itype], cap.spot_use.get((zone, itype), 0), leaving,
                                    cap.capacity(zone, itype), cap.spot_capacity)
            cand = sorted((-p.nlaunch[n], k, n) for k, p in enumerate(mine) if p.spot
                          for n in p.live_nodes if p.nstate[n] in (BOOTING, UP))
            for _, k, n in cand:
                if excess <= 0:
                    break
                mine[k].reclaim_notice(t, n)
                excess -= mine[k].cores

    def started(self, j, t, dur, nodes, nseg, f, pool, g=None):
        self.start[j] = t
        self.end[j] = t + dur
        self.est_end[j] = t + self.req[j] * f
        self.nseg[j] = nseg
        self.factor[j] = f
        self.alloc[j] = nodes
        g = pool.G if g is None else g
        pool.busy += dur * g * len(nodes)
        if pool.njobs is not None:
            self._track(j, t, pool, nodes)
        if self.record is not None:
            for n in nodes:
                self.record.append((t, j, pool.name, n, g))

    def pod_started(self, j, t, dur, nodes, pool, g):
        if math.isnan(self.start[j]):
            self.start[j] = t
        e = t + dur
        if math.isnan(self.end[j]) or e > self.end[j]:
            self.end[j] = e
        pool.busy += dur * g * len(nodes)
        if pool.njobs is not None:
            self._track(j, t, pool, nodes)
        if self.record is not None:
            for n in nodes:
                self.record.append((t, j, pool.name, n, g))

    def released(self, j, t, pool, nodes, g):
        if pool.njobs is not None:
            njobs = pool.njobs
            for n in nodes:  # one entry per pod; the earliest pod of a job on a node ends first
                lst = njobs[n][j]
                del lst[0]
                if not lst:
                    del njobs[n][j]
        if self.record is not None:
            for n in nodes:
                self.record.append((t, j, pool.name, n, -g))

    @staticmethod
    def _track(j, t, pool, nodes):
        """Spot pools: which jobs run on each node (one start per pod), for reclaims."""
        njobs = pool.njobs
        for n in nodes:
            njobs[n].setdefault(j, []).append(t)

    def kill(self, j, t, pool, n):
        """A reclaim's hard kill of node ``n`` hits job ``j``: the queue that runs it re-queues
        the whole gang, or the job's pods on that node."""
        q = self.routes[self.kind[j]]
        requeue = self.reruns[j] < self.max_reruns
        if requeue:
            self.reruns[j] += 1
        else:
            self.failed[j] = True
        if self.gang[j]:
            q.kill(j, t, requeue)
        else:
            q.kill_pods(j, t, pool, n, requeue)

    def lose(self, j, t, pool, nodes, g):
        """Gang ``j``'s run ends at ``t`` by a kill: its work so far is lost, its completion void."""
        k = len(nodes)
        pool.lost += (t - self.start[j]) * g * k
        pool.busy -= (self.end[j] - t) * g * k
        self.attempt[j] += 1
        self.live -= 1  # its completion event no longer counts
        self.released(j, t, pool, nodes, g)
        self.start[j] = self.end[j] = math.nan

    def pod_done(self, j, t):
        self.pods_done[j] += 1
        if self.pods_done[j] == self.pods[j]:
            self.finished[j] += 1

    def run_all(self, routes, rejected, progress=None):
        """Replay every job: ``routes`` is a :class:`Router`; ``rejected[j]`` jobs are skipped."""
        n = self.n
        tick = max(1, n // 100)
        self.routes = routes
        self._draining = False
        self._arrived = 0
        clock = self.clock

        def finish(t, obj, j, attempt):
            if attempt != self.attempt[j]:
                return  # the run a reclaim killed
            self.live -= 1
            obj.finish(j, t)
            self.finished[j] += 1

        def pod(t, obj, j, node):
            if self.dead_pods and (j, node) in self.dead_pods:
                return  # killed by a reclaim
            self.live -= 1
            obj.pod_finish(j, node, t)

        def boot(t, pool, node, _):
            self.live -= 1
            pool.boot_done(t, node)

        clock.on(EV_FINISH, finish)
        clock.on(EV_CAPACITY, self.capacity_change)
        clock.on(EV_POD, pod)
        clock.on(EV_BOOT, boot)
        clock.on(EV_NOTICE, lambda t, pool, node, _x: pool.reclaim_notice(t, node))
        clock.on(EV_KILL, lambda t, pool, node, _x: pool.hard_kill(t, node))
        clock.on(EV_IDLE, lambda t, pool, _n, _x: pool.idle_check(t))
        clock.on(EV_TICK, lambda t, pool, _n, _x: pool.policy_tick(t))

        def arrive(a, t):
            if not rejected[a]:
                self.req_sum += self.req[a]
                self.n_seen += 1
                routes[self.kind[a]].submit(a, t)
            self._arrived = a + 1
            if progress is not None and self._arrived % tick == 0:
                progress.update(tick)

        def after_arrivals(t):
            # a pass for every queue whose pools freed or gained capacity
            for q in routes.unique:
                q.poll(t)
            if self._arrived >= n and not self.live and not self._draining:
                # nothing can change any more: idle nodes retire when due, queued jobs (if any)
                # stay unfinished
                self._set_draining(True)

        clock.run(arrivals=self.submit, on_arrival=arrive, after_arrivals=after_arrivals,
                  arrival_kind=EV_IDLE)
        self.t = clock.now
        if progress is not None:
            progress.update(n - progress.n)
        return self.t
