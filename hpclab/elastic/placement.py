"""Placement: which nodes of a segmented pool a job gets, and where new nodes land.

A piece below the queues: a queue on the virtual clock (the platform's Slurm-like EASY backfill,
its Kubernetes-like bin-packing, a plain FIFO) asks its pool's placement for nodes, and the pool
asks it where to launch. Any object with the methods of :class:`Placement` may stand in
(``replay(placement=...)``); :func:`make_placement` turns a name into one.

The pool it works on (:class:`hpclab.platform.engine.Pool`) is a *segmented node store*: ``S``
segments (the hosts under one leaf switch, :mod:`hpclab.network.placement`), per segment a list
``idle[s]`` of idle nodes (in idle-since order) and a set ``partial[s]`` of partly used ones;
per node ``nfree[n]`` free slots of ``G``; counters ``n_idle``, ``free_slots``; per segment its
capacity ``seg_cap[s]``, nodes ``up[s]`` and ``boot[s]``; ``L`` segments per pod of the
topology; a seeded ``rng``. A placement only chooses; the pool's methods ``_occupy`` and
``_idle_ok`` change its counters.

``topology`` (:class:`Topology`)
    A gang goes into one segment if any has room (the one with the least room that fits, best
    fit), else spreads over the fewest segments, largest first; new nodes land in the segment
    that already holds the most idle and booting nodes; pods are bin-packed on the fullest node
    that fits (Kubernetes ``MostAllocated``), partly used nodes before idle ones.
``linear`` (:class:`Linear`)
    What a scheduler without topology knowledge does: nodes in index order, new nodes in a random
    segment with room (seeded), pods bin-packed in segment order.
"""

from __future__ import annotations

from hpclab._validate import HpclabError

__all__ = ["Placement", "Topology", "Linear", "make_placement", "PLACEMENTS"]

INF = float("inf")


class Placement:
    """Topology-aware placement (the module docstring's ``topology``); subclass to change it."""

    name = "topology"

    # -- whole nodes -----------------------------------------------------------------------------
    def plan_whole(self, pool, k):
        """Segments to take ``k`` idle nodes from: a list of (segment, count), or None."""
        if k > pool.n_idle:
            return None
        idle = pool.idle
        best, best_len = -1, 1 << 60
        for s in range(pool.S):
            m = len(idle[s])
            if k <= m < best_len:
                best, best_len = s, m
        if best >= 0:
            return [(best, k)]
        return self._spread(idle, sorted(range(pool.S), key=lambda s: -len(idle[s])), k)

    @staticmethod
    def _spread(idle, order, k):
        plan, left = [], k
        for s in order:
            m = len(idle[s])
            if m:
                take = m if m < left else left
                plan.append((s, take))
                left -= take
                if not left:
                    break
        return plan

    def take(self, lst, k):
        """The ``k`` nodes to take from the idle list ``lst`` of a segment (removed from it):
        the most recently idle."""
        got = lst[-k:]
        del lst[-k:]
        return got

    def take_whole(self, pool, plan):
        """Take the idle nodes of ``plan`` for a job; the nodes."""
        nodes = []
        nfree = pool.nfree
        for s, k in plan:
            got = self.take(pool.idle[s], k)
            nodes.extend(got)
            for n in got:
                nfree[n] = 0
        k = len(nodes)
        pool.n_idle -= k
        pool.free_slots -= k * pool.G
        return nodes

    def tier(self, pool, segments):
        """0 inside one segment, 1 across segments of one pod, 2 across pods."""
        if len(segments) < 2:
            return 0
        L = pool.L
        pod = segments[0] // L
        for s in segments:
            if s // L != pod:
                return 2
        return 1

    # -- new nodes -------------------------------------------------------------------------------
    def launch_plan(self, pool, count):
        """Where ``count`` new nodes land: a list of (segment, nodes), within each segment's room."""
        room = [pool.seg_cap[s] - pool.up[s] - pool.boot[s] for s in range(pool.S)]
        order = sorted(range(pool.S), key=lambda s: (-(len(pool.idle[s]) + pool.boot[s]), s))
        out, left = [], count
        for s in order:
            if left <= 0:
                break
            if room[s] > 0:
                k = min(left, room[s])
                out.append((s, k))
                left -= k
        return out

    # -- pods ------------------------------------------------------------------------------------
    def pod_capacity(self, pool, s, g):
        """Pods of ``g`` slots that segment ``s`` can still take."""
        nfree = pool.nfree
        return sum(nfree[n] // g for n in pool.partial[s]) + len(pool.idle[s]) * (pool.G // g)

    def gang_segments(self, pool, caps, count):
        """The segment order for a gang of ``count`` pods, given each segment's capacity."""
        segs = range(pool.S)
        fit = [s for s in segs if caps[s] >= count]
        return [min(fit, key=lambda s: caps[s])] if fit else sorted(segs, key=lambda s: -caps[s])

    def place_pods(self, pool, count, g, gang):
        """Nodes for ``count`` pods of ``g`` slots (one entry per pod), bin-packed, and the
        segments they use; for a gang all or None, preferring one segment; else as many as fit
        (possibly none). While the Slurm-like queue's head waits for nodes of this pool,
        independent pods take idle nodes only as its reservation allows (``pool._idle_ok``);
        partly used nodes they may always fill."""
        if g >= pool.G:  # whole-node pods
            if gang:
                plan = self.plan_whole(pool, count)
                return None if plan is None else (self.take_whole(pool, plan), [s for s, _ in plan])
            k = min(count, pool.n_idle)
            if k and pool.guard_shadow < INF:
                k = min(k, pool.guard_extra)
                pool.guard_extra -= k
            if not k:
                return [], []
            plan = self.plan_whole(pool, k)
            return self.take_whole(pool, plan), [s for s, _ in plan]
        if pool.free_slots < (count * g if gang else g):
            return (None if gang else ([], []))
        segs = range(pool.S)
        if gang:
            caps = [self.pod_capacity(pool, s, g) for s in segs]
            if sum(caps) < count:
                return None
            order = self.gang_segments(pool, caps, count)
        else:
            order = list(segs)
        nodes = []
        used = set()
        left = count
        guarded = not gang and pool.guard_shadow < INF
        nfree = pool.nfree
        for s in order:
            if not left:
                break
            # fullest partial nodes first, then idle nodes
            cand = sorted((n for n in pool.partial[s] if nfree[n] >= g), key=lambda n: nfree[n])
            for n in cand:
                while left and nfree[n] >= g:
                    pool._occupy(n, g)
                    nodes.append(n)
                    used.add(s)
                    left -= 1
                if not left:
                    break
            idle = pool.idle[s]
            while left and idle:
                if guarded and not pool._idle_ok():
                    break
                n = idle[-1]
                while left and nfree[n] >= g:
                    pool._occupy(n, g)
                    nodes.append(n)
                    used.add(s)
                    left -= 1
        return nodes, list(used)


Topology = Placement


class Linear(Placement):
    """Placement without topology knowledge (the module docstring's ``linear``)."""

    name = "linear"

    def plan_whole(self, pool, k):
        if k > pool.n_idle:
            return None
        return self._spread(pool.idle, range(pool.S), k)

    def take(self, lst, k):
        got = sorted(lst)[:k]  # the lowest-numbered idle nodes
        taken = set(got)
        lst[:] = [n for n in lst if n not in taken]
        return got

    def launch_plan(self, pool, count):
        room = [pool.seg_cap[s] - pool.up[s] - pool.boot[s] for s in range(pool.S)]
        out = []
        for _ in range(count):
            cand = [s for s in range(pool.S) if room[s] > 0]
            if not cand:
                break
            s = cand[int(pool.rng.integers(len(cand)))]
            out.append((s, 1))
            room[s] -= 1
        return out

    def gang_segments(self, pool, caps, count):
        return list(range(pool.S))


PLACEMENTS = {"topology": Topology, "linear": Linear}


def make_placement(spec) -> Placement:
    """A placement from a name (``topology``, ``linear``) or an object with the methods of
    :class:`Placement` (passed through)."""
    if isinstance(spec, str):
        if spec not in PLACEMENTS:
            raise HpclabError(f"placement must be one of {', '.join(PLACEMENTS)} or a Placement, got {spec!r}")
        return PLACEMENTS[spec]()
    need = ("plan_whole", "take_whole", "place_pods", "launch_plan", "tier")
    if all(callable(getattr(spec, m, None)) for m in need):
        return spec
    raise HpclabError(f"placement must be one of {', '.join(PLACEMENTS)} or an object with "
                      f"{', '.join(need)}; got {spec!r}")
