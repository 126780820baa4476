"""Autoscaling policies: pure objects that turn a :class:`~hpclab.elastic.state.PoolState` into a
:class:`~hpclab.elastic.state.Decision`.

The same objects drive the real :class:`ElasticPool` (through a ``distributed.deploy.Adaptive``
subclass) and the virtual-clock simulator (:mod:`hpclab.elastic.simulate`); neither knows which
clock it runs on.

Sizing (all policies but :class:`DeadlineBudget`) follows Dask's ``Scheduler.adaptive_target``
(``distributed/scheduler.py``): the pool should finish the work it holds within
``target_duration``::

    work   = (queued + running) * mean_task_seconds          # slot-seconds
    target = min(ceil(work / target_duration), queued + running)   # slots (cores)

bounded by :class:`~hpclab.elastic.state.PoolLimits` (types, zones, min/max instances per type,
``quota_cores``). When the target is below the serving capacity, idle instances are retired,
most expensive per unit of work first. ``mean_task_seconds`` defaults to Dask's
``distributed.scheduler.unknown-task-duration`` (0.5 s) when the pool does not know it yet.

*Serving* capacity is every instance requested, booting or running that has no spot notice;
``max_per_type`` and ``quota_cores`` bound serving capacity (an instance draining after a notice
is being replaced). Capacity is counted in task slots (``InstanceView.cores``); a new instance of a
type gives ``state.slots[itype]`` slots, else as many as the pool's instances of that type, else
the catalog's physical cores.

Placement:

- :class:`SingleZone` (``"single-zone"``) and :class:`TargetDuration` (``"target-duration"``, the
  Dask-like policy): one type in one zone, the baseline.
- :class:`SpotFirst` (``"spot-first"``): spot in the user's order of types and zones, skipping
  places that refused capacity or reclaimed spot recently, on-demand for the rest.
- :class:`GlobalPlacement` (``"global"``, ``"global-spot"``): every type in every allowed zone,
  cheapest per unit of work first, ``price / (cores * speed_factor)`` with the generation's speed
  factor from the catalog; after a refusal it looks elsewhere (the E-HPC Instant idea of scheduling
  across all zones and CPU generations).

Refusals (every policy; it matters for those that rank many places): a place that refused within
``refusal_memory`` is skipped; after that, while the pool holds as many instances there as when
the refusal came, it is presumed still full and asked only after every other place (oldest
refusal first) and for one instance (a probe), so that re-probing full cheap places cannot stop
the pool from reaching the places further down the list or the on-demand fallback.
- :class:`DeadlineBudget` (``"deadline-budget"``): as many slots as finish the work by a deadline,
  no more than a budget allows.
- :class:`Hysteresis` wraps any policy: it retires only instances idle for longer than ``wait``
  and waits ``cooldown`` between scale-downs (and after a scale-up), which avoids the thrash of
  workers killed just before more work arrives (reported against Dask's adaptive mode:
  dask/distributed issues #1604 "Adaptive can seek to scale up and down simultaneously" and
  #3863 "workers being immediately retired and recreated", dask/dask-kubernetes #633).
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from hpclab._deprecated import ALIASES, deprecated, warn
from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive
from hpclab.elastic.billing import unit_price
from hpclab.elastic.state import MARKETS, Decision, InstanceView, Launch, PoolState, maker

__all__ = ["TargetDuration", "SingleZone", "SpotFirst", "GlobalPlacement", "DeadlineBudget",
           "Shortfall", "Hysteresis", "make_policy", "POLICY_NAMES", "register_policy", "policy_names",
           "resolve_policy", "check_limits", "ENTRY_POINT_GROUP", "price_per_work", "Aggregates",
           "aggregate", "attach_aggregates"]

#: Dask's ``distributed.scheduler.unknown-task-duration`` (distributed.yaml): 500 ms
DASK_UNKNOWN_TASK_SECONDS = 0.5
#: Dask's ``Adaptive(target_duration="5s")`` default
DASK_TARGET_DURATION = 5.0

_SERVING = ("requested", "booting", "running")


def _catalog(catalog):
    from hpclab.catalog import resolve

    return resolve(catalog)


def price_per_work(itype: str, market: str = "on-demand", catalog=None) -> float:
    """USD per second per unit of work rate: ``price / (cores * speed_factor)``.

    ``cores`` is the catalog's physical cores and ``speed_factor`` the per-core speed of the type's
    CPU generation relative to the reference generation (catalog ``generations``).
    """
    cat = _catalog(catalog)
    check_choice("market", market, MARKETS)
    inst = cat.instance(itype)
    speed = cat.generation(inst.generation).speed_factor
    price = unit_price(inst, market)
    return price / (inst.cores * speed)


def _serving(i: InstanceView) -> bool:
    return i.state in _SERVING and not i.notice


@dataclass(frozen=True)
class Aggregates:
    """What every policy reads from a snapshot's instances, gathered in one pass.

    A clock that already holds these aggregates (the simulator keeps them as arrays) may attach
    them with :func:`attach_aggregates`, so that policies need not walk thousands of
    :class:`InstanceView` objects at each tick; :meth:`of` is the reference computation.
    """

    count: Mapping[str, int]  # serving instances per type
    serving_cores: int  # slots of serving instances
    spot_cores: int  # slots of serving spot instances
    slots: Mapping[str, int]  # slots of one instance, per type seen in the pool
    noticed: frozenset  # (itype, zone) of spot instances under a reclaim notice
    idle: tuple  # (id, itype, market, cores, idle_since) of running, idle instances without notice
    #: serving instances per (itype, zone, market)
    places: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    booting_cores: int = 0  # slots of serving instances still booting
    idle_cores: int = 0  # slots of the ``idle`` instances
    #: slots running a task on serving instances (not those under notice or draining); all three
    #: clocks count them; None (a snapshot built by hand without them): ``PoolState.running``
    #: stands for it
    busy_cores: int | None = None

    @classmethod
    def of(cls, state: PoolState) -> "Aggregates":
        count: dict[str, int] = {}
        slots: dict[str, int] = {}
        serving = spot = booting = idle_cores = busy = 0
        noticed, idle = set(), []
        places: dict[tuple[str, str, str], int] = {}
        for i in state.instances:
            if i.itype not in slots and i.cores > 0:
                slots[i.itype] = int(i.cores)
            if i.notice:
                if i.market == "spot":
                    noticed.add((i.itype, i.zone))
                continue
            if i.state in _SERVING:
                count[i.itype] = count.get(i.itype, 0) + 1
                places[i.itype, i.zone, i.market] = places.get((i.itype, i.zone, i.market), 0) + 1
                serving += i.cores
                if i.market == "spot":
                    spot += i.cores
                if i.state != "running":
                    booting += i.cores
                elif i.running_tasks == 0:
                    idle.append((i.id, i.itype, i.market, int(i.cores), i.idle_since))
                    idle_cores += i.cores
                else:
                    busy += i.running_tasks
        return cls(count, serving, spot, slots, frozenset(noticed), tuple(idle), places, booting, idle_cores,
                   busy)


_SUMMARY_ATTR = "_hpclab_policy_summary"
_launch, _decision = maker(Launch), maker(Decision)  # the shortfall rule's hot path


def ask(policy, state: PoolState) -> Decision:
    """``policy.decide(state)`` as every clock asks it: an exception the policy raises (a bug in a
    user's policy) becomes one line naming the policy, the pool time and the error, chained to
    the original (``raise ... from``, so the traceback is kept for a debugger), and what it
    returns must be a :class:`Decision`."""
    try:
        d = policy.decide(state)
    except HpclabError:
        raise
    except Exception as exc:
        name = getattr(policy, "name", type(policy).__name__)
        raise HpclabError(f"policy {name!r} failed at pool time {state.time:g} s: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split()) or '(no message)'}") from exc
    if not isinstance(d, Decision):
        name = getattr(policy, "name", type(policy).__name__)
        raise HpclabError(f"policy {name!r} returned {type(d).__name__} from decide(state), not a Decision")
    return d


def attach_aggregates(state: PoolState, summary: Aggregates) -> PoolState:
    """Attach precomputed aggregates to ``state`` (must equal ``Aggregates.of(state)``)."""
    object.__setattr__(state, _SUMMARY_ATTR, summary)
    return state


def aggregate(state: PoolState) -> Aggregates:
    """The snapshot's :class:`Aggregates` (computed once per snapshot, then cached on it)."""
    s = state.__dict__.get(_SUMMARY_ATTR)
    if s is None:
        s = Aggregates.of(state)
        object.__setattr__(state, _SUMMARY_ATTR, s)
    return s


summarise = deprecated("hpclab.elastic.policies", "summarise", "hpclab.elastic.policies.aggregate",
                       aggregate)
attach_summary = deprecated("hpclab.elastic.policies", "attach_summary",
                            "hpclab.elastic.policies.attach_aggregates", attach_aggregates)


ALIASES.append(("hpclab.elastic.policies", "StateSummary", "hpclab.elastic.policies.Aggregates"))


def __getattr__(name):  # the deprecated StateSummary, one release
    if name == "StateSummary":
        warn("hpclab.elastic.policies.StateSummary", "hpclab.elastic.policies.Aggregates")
        return Aggregates
    raise AttributeError(f"module 'hpclab.elastic.policies' has no attribute {name!r}")


def _slots(state: PoolState, itype: str, cat) -> int:
    slots = getattr(state, "slots", None) or {}
    if slots.get(itype):
        return int(slots[itype])
    seen = aggregate(state).slots.get(itype)
    if seen:
        return int(seen)
    return int(cat.instance(itype).cores)


class _Triggers:
    """A policy class's ``triggers`` (the states in which its decision may be non-empty), stated
    for its own :meth:`decide`: a subclass that overrides one of ``methods`` gets None (a clock
    then asks it at every tick) unless it states triggers itself, since what it decides is no
    longer what they were stated for."""

    def __init__(self, names, *methods):
        self.names, self.methods = frozenset(names), methods

    def __set_name__(self, owner, name):
        self.owner = owner

    def __get__(self, obj, cls=None):
        cls = type(obj) if cls is None else cls
        if any(getattr(cls, m) is not getattr(self.owner, m) for m in self.methods):
            return None
        return self.names


def _recent(state: PoolState, key: tuple, memory: float) -> bool:
    t = state.refused.get(key) if state.refused else None
    return t is not None and state.time - t < memory


class _Base:
    """Shared sizing (Dask's adaptive target), limits, filling and retiring."""

    name = "base"

    def __init__(self, *, target_duration: float = DASK_TARGET_DURATION,
                 default_task_seconds: float = DASK_UNKNOWN_TASK_SECONDS,
                 refusal_memory: float = 300.0, catalog=None):
        self.target_duration = check_positive("target_duration", target_duration)
        self.default_task_seconds = check_positive("default_task_seconds", default_task_seconds)
        self.refusal_memory = check_nonnegative("refusal_memory", refusal_memory)
        self.catalog = _catalog(catalog)
        self._full: dict[tuple, tuple[float, int]] = {}  # refusal key -> (time, our count there)
        self._probed = 0

    # -- policy protocol ---------------------------------------------------------------------
    def decide(self, state: PoolState) -> Decision:
        self._check_state(state)
        self._learn_refusals(state)
        target = self.target_cores(state)
        return self._act(state, target)

    def reset(self) -> None:
        """Forget anything remembered from earlier snapshots (a new run starts)."""
        self._full.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- sizing ------------------------------------------------------------------------------
    def _task_seconds(self, state: PoolState) -> float:
        m = state.mean_task_seconds
        return float(m) if m is not None and m > 0 and math.isfinite(m) else self.default_task_seconds

    def target_cores(self, state: PoolState) -> int:
        """Dask's adaptive target: slots that finish the held work in ``target_duration``."""
        tasks = state.queued + state.running
        if tasks <= 0:
            return 0
        work = tasks * self._task_seconds(state)
        return max(1, min(math.ceil(work / self.target_duration - 1e-9), tasks))

    # -- placement (subclasses) ---------------------------------------------------------------
    def candidates(self, state: PoolState) -> list[tuple[str, str, str]]:
        """(itype, zone, market) in order of preference."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------
    def _check_state(self, state: PoolState) -> None:
        if state.queued < 0 or state.running < 0:
            raise HpclabError(f"queued and running must be >= 0, got {state.queued}, {state.running}")

    def _blocked(self, state: PoolState, itype: str, zone: str, market: str) -> bool:
        return (_recent(state, (itype, zone), self.refusal_memory)
                or _recent(state, (itype, zone, market), self.refusal_memory))

    def _act(self, state: PoolState, target: int) -> Decision:
        plan = _Plan(state, self.catalog)
        launches = plan.ensure_minimum(self._min_candidates(state)) if state.limits.min_per_type else []
        need = target - plan.serving_cores
        if need > 0:
            launches += self._fill(state, plan, need)
        retire = ()
        if need < 0:
            retire = plan.retire_idle(-need)
        retire = tuple(retire) + tuple(plan.over_max())
        reason = f"{self.name}: target {target} slots, serving {plan.serving_cores_before}"
        return _decision(tuple(launches), tuple(dict.fromkeys(retire)), reason)

    def _fill(self, state: PoolState, plan: "_Plan", need: int) -> list[Launch]:
        return self._fill_from(state, plan, need, self.candidates(state))

    def _fill_from(self, state, plan, need, cands):
        # A place that refused within ``refusal_memory`` is skipped. One that refused earlier and
        # where our count did not change since is presumed still full: it is asked only after
        # every other place (oldest refusal first) and for one instance (a probe), so that full
        # cheap places cannot take the whole tick while other places, or the on-demand
        # fallback, have room; a granted probe makes the place a candidate again.
        fresh, later = [], []
        for c in cands:
            if self._blocked(state, *c):
                continue
            full = self._presumed_full(state, *c)
            if full is None:
                fresh.append((c, False))
            else:
                later.append((full, (c, True)))
        out = []
        for (itype, zone, market), probe in fresh + [c for _, c in sorted(later, key=lambda x: x[0])]:
            if need <= 0 or plan.full():
                break
            launch = plan.launch(itype, zone, market, min(need, plan.slots(itype)) if probe else need)
            if launch is not None:
                out.append(launch)
                need -= launch.count * plan.slots(itype)
                if probe:
                    self._probed += launch.count * plan.slots(itype)
        return out


    @staticmethod
    def _held(summary: Aggregates, key: tuple) -> int:
        """Our serving instances at a refusal key's place: ``(itype, zone)`` counts every market,
        ``(itype, zone, "spot")`` spot only."""
        if len(key) == 3:
            return summary.places.get(key, 0)
        return sum(summary.places.get((key[0], key[1], m), 0) for m in MARKETS)

    def _learn_refusals(self, state: PoolState) -> None:
        """For each refusal not seen before: when it came and how many instances we held there."""
        summary = aggregate(state)
        for key, t in (state.refused or {}).items():
            seen = self._full.get(key)
            if seen is None or seen[0] != t:
                self._full[key] = (t, self._held(summary, key))

    def _presumed_full(self, state: PoolState, itype: str, zone: str, market: str) -> float | None:
        """Time of a refusal here after which our count here did not change (None: not known
        full; fewer means we released some, more means a probe was granted)."""
        summary = aggregate(state)
        keys = [(itype, zone)] + ([(itype, zone, "spot")] if market == "spot" else [])
        when = None
        for k in keys:
            seen = self._full.get(k)
            if seen is not None and self._held(summary, k) == seen[1]:
                when = seen[0] if when is None else max(when, seen[0])
        return when

    def _min_candidates(self, state: PoolState) -> list[tuple[str, str, str]]:
        return [c for c in self.candidates(state) if not self._blocked(state, *c)] or \
            self.candidates(state)


_PPW: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Plan:
    """Book-keeping while a decision is built: serving counts, limits, planned launches."""

    def __init__(self, state: PoolState, cat):
        self.state, self.cat = state, cat
        self.limits = state.limits
        self._slots: dict[str, int] = {}
        self.summary = aggregate(state)
        self.count = {t: 0 for t in self.limits.types}
        self.count.update(self.summary.count)
        self.serving_cores = self.summary.serving_cores
        self.serving_cores_before = self.serving_cores

    def slots(self, itype: str) -> int:
        if itype not in self._slots:
            self._slots[itype] = _slots(self.state, itype, self.cat)
        return self._slots[itype]

    def full(self) -> bool:
        """The core quota leaves no room for one more instance of any type."""
        q = self.limits.quota_cores
        return q is not None and q - self.serving_cores < min(self.slots(t) for t in self.limits.types)

    def headroom(self, itype: str) -> int:
        """Instances of ``itype`` that may still be launched."""
        if itype not in self.limits.types:
            return 0
        hi = self.limits.max_per_type.get(itype)
        room = math.inf if hi is None else hi - self.count.get(itype, 0)
        if self.limits.quota_cores is not None:
            room = min(room, (self.limits.quota_cores - self.serving_cores) // self.slots(itype))
        return max(0, int(room)) if room != math.inf else 10**12

    def launch(self, itype: str, zone: str, market: str, need_cores: int) -> Launch | None:
        if zone not in self.limits.zones:
            return None
        s = self.slots(itype)
        n = min(math.ceil(need_cores / s), self.headroom(itype))
        if n <= 0:
            return None
        self.count[itype] = self.count.get(itype, 0) + n
        self.serving_cores += n * s
        return _launch(itype, zone, market, int(n))

    def ensure_minimum(self, candidates) -> list[Launch]:
        out = []
        for itype, lo in self.limits.min_per_type.items():
            missing = lo - self.count.get(itype, 0)
            if missing <= 0:
                continue
            places = [c for c in candidates if c[0] == itype] or \
                [(itype, self.limits.zones[0], "on-demand")]
            _, zone, market = places[0]
            launch = self.launch(itype, zone, market, missing * self.slots(itype))
            if launch is not None:
                out.append(launch)
        return out

    def retire_idle(self, excess_cores: int) -> list[str]:
        """Idle running instances whose slots fit in ``excess_cores``, costliest per work first."""
        try:  # price per work by (itype, market), kept per catalog (its records are immutable)
            ppw = _PPW.setdefault(self.cat, {})
        except TypeError:  # a catalog that takes no weak references: per decision
            ppw = {}
        now = self.state.time

        def key(row):
            iid, itype, market, _, idle_since = row
            if (itype, market) not in ppw:
                ppw[itype, market] = price_per_work(itype, market, self.cat)
            return (-ppw[itype, market], idle_since if idle_since is not None else now, iid)

        out = []
        for iid, itype, market, cores, _ in sorted(self.summary.idle, key=key):
            if excess_cores <= 0:
                break
            if cores <= excess_cores and self.count.get(itype, 0) > self.limits.min_per_type.get(itype, 0):
                out.append(iid)
                excess_cores -= cores
                self.count[itype] -= 1
                self.serving_cores -= cores
        return out

    def over_max(self) -> list[str]:
        """Idle instances of types no longer allowed or above their maximum."""
        out = []
        for itype, n in list(self.count.items()):
            hi = self.limits.max_per_type.get(itype) if itype in self.limits.types else 0
            if hi is None or n <= hi:
                continue
            idle = sorted(row[0] for row in self.summary.idle if row[1] == itype)
            for iid in idle[: n - hi]:
                out.append(iid)
                self.count[itype] -= 1
        return out


def _pick(value, allowed, field):
    """``value`` (a policy's ``itype`` or ``zone`` parameter) if the pool's limits allow it, the
    first allowed one if it is None, else a one-line error naming the parameter."""
    if value is None:
        return allowed[0]
    if value not in allowed:
        what = "types" if field in ("itype", "types") else "zones"
        raise HpclabError(f"{field}: must be one of the pool's {what} ({', '.join(allowed)}); "
                          f"got {value!r}")
    return value


def _check_place(policy, limits) -> None:
    """The ``itype`` and ``zone`` parameters of ``policy`` must be among the pool's (the
    ``check_limits`` method of the policies that take them; see :func:`check_limits`)."""
    _pick(policy.itype, limits.types, "itype")
    _pick(policy.zone, limits.zones, "zone")


def check_limits(policy, limits) -> None:
    """Refuse, in one line, a policy that cannot act in a pool with these
    :class:`~hpclab.elastic.state.PoolLimits` (e.g. an ``itype`` or ``zone`` parameter the pool
    does not have), before a run starts rather than at its first decision. A policy states this
    with an optional ``check_limits(limits)`` method (part of the policy contract); one without
    it is taken as able to act anywhere."""
    check = getattr(policy, "check_limits", None)
    if check is not None:
        check(limits)


class TargetDuration(_Base):
    """Dask-like adaptive scaling: enough slots to finish the held work in ``target_duration``.

    One instance type in one zone (the first of the pool's limits unless given), on one market;
    idle instances are retired as soon as the target drops, as ``distributed.deploy.Adaptive``
    does (wrap it in :class:`Hysteresis` to avoid thrash).

    Parameters
    ----------
    target_duration : float
        Pool seconds in which the held work should finish (Dask's default: 5 s).
    itype, zone : str, optional
        Where to launch; default the first type and zone of the pool's limits.
    market : {"on-demand", "spot"}
    default_task_seconds : float
        Task time assumed until the pool measures one (Dask: 0.5 s).
    """

    name = "target-duration"
    #: the only states in which :meth:`decide` may act (see the policy contract in
    #: docs/architecture.md): a launch needs room under the pool's limits and more tasks held
    #: than serving slots, since its target never exceeds the tasks held, or a type below its
    #: minimum (``"demand"``); a retirement an idle instance (``"idle"``, with no timeout); and
    #: a refusal it has not seen yet is remembered at the next ask (``"refused"``). A subclass that overrides how it decides
    #: (``decide``, ``_act``, ``_fill``, ``_fill_from``) has none unless it states them.
    triggers = _Triggers({"demand", "idle", "refused"}, "decide", "_act", "_fill", "_fill_from")

    def __init__(self, target_duration: float = DASK_TARGET_DURATION, *, itype: str | None = None,
                 zone: str | None = None, market: str = "on-demand", **kw):
        super().__init__(target_duration=target_duration, **kw)
        self.itype, self.zone = itype, zone
        self.market = check_choice("market", market, MARKETS)
        if itype is not None:
            self.catalog.instance(itype)  # KeyError listing known types

    def candidates(self, state):
        return [(_pick(self.itype, state.limits.types, "itype"),
                 _pick(self.zone, state.limits.zones, "zone"), self.market)]

    check_limits = _check_place


class SingleZone(TargetDuration):
    """Baseline: one on-demand instance type in one zone, Dask-like sizing, no fallback."""

    name = "single-zone"


class _Placement(_Base):
    """Spot for ``spot_share`` of the target, on-demand for the rest and as fallback."""

    def __init__(self, *, spot_share: float = 1.0, fallback: bool = True,
                 market_cap: float | None = None, wave_fallback: bool = False, **kw):
        super().__init__(**kw)
        if isinstance(spot_share, bool) or not isinstance(spot_share, (int, float)) \
                or not 0 <= spot_share <= 1:
            raise HpclabError(f"spot_share must be a number in [0, 1], got {spot_share!r}")
        self.spot_share = float(spot_share)
        self.fallback = bool(fallback)
        if market_cap is not None and (isinstance(market_cap, bool) or not isinstance(market_cap, (int, float))
                                       or not 0 < market_cap <= 1):
            raise HpclabError(f"market_cap must be a share of the spot target in (0, 1] or None, "
                              f"got {market_cap!r}")
        self.market_cap = None if market_cap is None else float(market_cap)
        self.wave_fallback = bool(wave_fallback)
        self._notices: dict[tuple[str, str], float] = {}
        self._last_time = -math.inf

    def reset(self) -> None:
        super().reset()
        self._notices.clear()
        self._last_time = -math.inf


    def places(self, state: PoolState) -> list[tuple[str, str]]:
        raise NotImplementedError

    def candidates(self, state):
        places = self.places(state)
        return [(t, z, "spot") for t, z in places] + [(t, z, "on-demand") for t, z in places]

    def _blocked(self, state, itype, zone, market):
        if market == "spot":
            t = self._notices.get((itype, zone))
            if t is not None and state.time - t < self.refusal_memory:
                return True
        return super()._blocked(state, itype, zone, market)

    def decide(self, state: PoolState) -> Decision:
        self._check_state(state)
        if state.time < self._last_time:
            self.reset()
        self._last_time = state.time
        for place in aggregate(state).noticed:  # spot reclaimed here: look elsewhere for a while
            self._notices[place] = state.time
        self._learn_refusals(state)
        return self._act(state, self.target_cores(state))

    def _wave_recent(self, state) -> bool:
        """A spot reclaim notice came within ``refusal_memory`` (a wave may be under way)."""
        return any(state.time - t < self.refusal_memory for t in self._notices.values())

    def _cap_markets(self, state, plan, spot_target: int) -> None:
        """Diversification: spot launches keep each (type, zone) market within ``market_cap``
        of the spot target (whole instances); what a cap turns away goes elsewhere or on-demand."""
        summary = aggregate(state)
        cap = self.market_cap * spot_target
        held = {(t, z): n * plan.slots(t) for (t, z, m), n in summary.places.items() if m == "spot"}
        launch = plan.launch

        def capped(itype, zone, market, need_cores):
            if market != "spot":
                return launch(itype, zone, market, need_cores)
            s = plan.slots(itype)
            room = int((cap - held.get((itype, zone), 0) + 1e-9) // s) * s
            if room <= 0:
                return None
            out = launch(itype, zone, market, min(need_cores, room))
            if out is not None:
                held[itype, zone] = held.get((itype, zone), 0) + out.count * s
            return out

        plan.launch = capped

    def _fill(self, state, plan, need):
        spot_cores = aggregate(state).spot_cores
        total_target = plan.serving_cores + need
        spot_target = math.ceil(self.spot_share * total_target - 1e-9)
        spot_want = min(need, max(0, spot_target - spot_cores))
        if self.wave_fallback and self._wave_recent(state):
            spot_want = 0  # a wave hit: replace and grow on-demand until it has passed
        if self.market_cap is not None and spot_want > 0:
            self._cap_markets(state, plan, spot_target)
        cands = self.candidates(state)
        spot = [c for c in cands if c[2] == "spot"]
        ondemand = [c for c in cands if c[2] == "on-demand"]
        out, before = [], plan.serving_cores
        self._probed = 0
        if spot_want > 0:
            out += self._fill_from(state, plan, spot_want, spot)
        # a probe of a presumed-full spot place is likely refused: on-demand covers it too
        got = plan.serving_cores - before - self._probed
        rest = need - got if self.fallback else (need - spot_want if spot_want < need else 0)
        if rest > 0:
            out += self._fill_from(state, plan, rest, ondemand)
        return out


class SpotFirst(_Placement):
    """Spot first in the user's order of types and zones, on-demand fallback.

    Spot is tried in the order of ``types`` x ``zones`` (each default: the pool's limits, in
    order); a place that refused capacity (``state.refused``) or sent a spot reclaim notice within
    ``refusal_memory`` seconds is skipped. Whatever spot cannot supply, and the ``1 - spot_share``
    part of the target, is launched on-demand in the same order.

    Knowing the market (both here and in :class:`GlobalPlacement`): ``market_cap`` (a share of
    the spot target, e.g. 0.25) keeps any one (type, zone) market from holding more of the spot
    capacity, so that one reclaim wave takes at most that share; ``wave_fallback=True`` launches
    on-demand only while a reclaim notice is younger than ``refusal_memory`` (a wave is under way).
    """

    name = "spot-first"

    def __init__(self, target_duration: float = DASK_TARGET_DURATION, *, spot_share: float = 1.0,
                 types: Iterable[str] | None = None, zones: Iterable[str] | None = None, **kw):
        super().__init__(target_duration=target_duration, spot_share=spot_share, **kw)
        self.types = tuple(types) if types is not None else None
        self.zones = tuple(zones) if zones is not None else None
        for t in self.types or ():
            self.catalog.instance(t)

    def check_limits(self, limits) -> None:
        """Every type and zone of the ``types`` and ``zones`` parameters must be the pool's (see
        :func:`check_limits`); one outside would never be launched in."""
        for t in self.types or ():
            _pick(t, limits.types, "types")
        for z in self.zones or ():
            _pick(z, limits.zones, "zones")

    def places(self, state):
        types = self.types or state.limits.types
        zones = self.zones or state.limits.zones
        return [(t, z) for t in types if t in state.limits.types
                for z in zones if z in state.limits.zones]


class GlobalPlacement(_Placement):
    """Global scheduling across every zone and CPU generation, cheapest per unit of work first.

    Places are every (type, zone) of the pool's limits, ordered by ``price / (cores *
    speed_factor)`` (:func:`price_per_work`) on the market being filled; after a capacity
    refusal or a spot reclaim at a place the next cheapest is used (E-HPC Instant). With
    ``spot_share=0`` it is on-demand only (policy name ``"global"``), else ``"global-spot"``.
    ``market_cap`` and ``wave_fallback`` as in :class:`SpotFirst`.
    """

    def __init__(self, target_duration: float = DASK_TARGET_DURATION, *, spot_share: float = 1.0, **kw):
        super().__init__(target_duration=target_duration, spot_share=spot_share, **kw)
        self.name = "global-spot" if self.spot_share > 0 else "global"
        self._ranked: dict = {}

    def places(self, state):
        return [(t, z) for t in state.limits.types for z in state.limits.zones]

    def candidates(self, state):
        key = (state.limits.types, state.limits.zones)
        if key not in self._ranked:
            out = []
            for market in ("spot", "on-demand"):
                ranked = sorted(self.places(state),
                                key=lambda p: (price_per_work(p[0], market, self.catalog), p[0], p[1]))
                out += [(t, z, market) for t, z in ranked]
            self._ranked[key] = out
        return self._ranked[key]


class DeadlineBudget(_Base):
    """Finish by a deadline, spend no more than a budget.

    With ``W`` the held work in slot-seconds, ``R`` the pool seconds left to the deadline, ``B``
    the boot time of the chosen type and ``p`` its price per slot-second::

        deadline  c_d = ceil(W / (R - B))                (all the work if R <= B: go as fast as allowed)
        budget    c_b = floor((M/p - W) / B)   if M/p > W   (work costs p*W whatever c, boots cost p*c*B)
                  c_b = floor(M / (p * max(R, B + t)))  otherwise (spend what is left evenly until
                                               the deadline; past it, over one boot + task t)
        target    = min(c_d, c_b, queued + running)

    ``M`` is the budget left: ``budget - state.spent`` minus what the serving slots cost while
    they drain (``serving_slots * drain_tasks * mean_task_seconds * p``: a draining instance is
    billed whole until its longest task ends, about two mean tasks for lognormal tasks). Places are ranked as in
    :class:`GlobalPlacement` on ``market``; ``p`` and ``B`` are those of the cheapest place.
    Once ``M <= 0`` every serving instance is retired (it drains: running tasks finish, queued
    ones wait) and the policy launches nothing more in this run (relaunching would pay boots
    again); the budget can still be overshot by tasks much longer than the mean.
    """

    name = "deadline-budget"

    def __init__(self, deadline: float, budget: float, *, market: str = "on-demand",
                 drain_tasks: float = 2.0, **kw):
        super().__init__(**kw)
        self.drain_tasks = check_nonnegative("drain_tasks", drain_tasks)
        self.deadline = check_positive("deadline", deadline)
        self.budget = check_positive("budget", budget)
        self.market = check_choice("market", market, MARKETS)
        self._ranked: dict = {}
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._stopped = False
        self._last_time = -math.inf

    def candidates(self, state):
        key = (state.limits.types, state.limits.zones)
        if key not in self._ranked:
            ranked = sorted(((t, z) for t in state.limits.types for z in state.limits.zones),
                            key=lambda p: (price_per_work(p[0], self.market, self.catalog), p[0], p[1]))
            self._ranked[key] = [(t, z, self.market) for t, z in ranked]
        return self._ranked[key]

    def decide(self, state: PoolState) -> Decision:
        self._check_state(state)
        if state.time < self._last_time:
            self.reset()
        self._last_time = state.time
        if self._stopped or self._money_left(state) <= 0:
            # out of money: every serving instance drains, and the policy stays stopped
            self._stopped = True
            ids = tuple(i.id for i in state.instances if _serving(i))
            return Decision(retire=ids, reason=f"{self.name}: budget {self.budget:g} USD committed")
        self._learn_refusals(state)
        return self._act(state, self.target_cores(state))

    def _cheapest(self, state):
        usable = [c for c in self.candidates(state) if not self._blocked(state, *c)] \
            or self.candidates(state)
        itype = usable[0][0]
        inst = self.catalog.instance(itype)
        slots = _slots(state, itype, self.catalog)
        price = unit_price(inst, self.market) / slots
        return inst, price

    def _money_left(self, state) -> float:
        """Budget minus spent minus what the serving instances will cost while they drain (a
        draining instance is billed whole until its longest task ends: ``drain_tasks`` mean tasks)."""
        _, price = self._cheapest(state)
        in_flight = aggregate(state).serving_cores * self.drain_tasks * self._task_seconds(state) * price
        return self.budget - state.spent - in_flight

    def target_cores(self, state):
        tasks = state.queued + state.running
        if tasks <= 0:
            return 0
        work = tasks * self._task_seconds(state)
        inst, price = self._cheapest(state)
        boot = inst.boot_time
        left = self.deadline - state.time
        c_d = math.ceil(work / (left - boot) - 1e-9) if left > boot else tasks
        money = self._money_left(state)
        if money <= 0:
            return 0
        if money / price > work:
            c_b = math.floor((money / price - work) / boot) if boot > 0 else tasks
        else:
            c_b = math.floor(money / (price * max(left, boot + self._task_seconds(state))))
        return max(0, min(c_d, c_b, tasks))


class Shortfall:
    """Launch at once what the queued work lacks; retire an instance once it has been idle for
    ``idle_timeout`` and no queued work needs it (the HPC+AI platform's rule, usable on every clock).

    The shortfall, in instances of the launch type with ``G`` slots each: the instances asked
    whole by queued gangs (``state.queued_whole / G``), plus the other queued slots beyond the free
    slots of partly busy instances (rounded up to instances), minus the idle and the booting
    instances. Idle instances are retired in the order ``state`` lists them, as long as the pool
    keeps its minimum and the queued work (if any) still has no shortfall after each one.

    It declares :attr:`triggers`: its decision can be non-empty only when there is a shortfall or
    an instance has been idle for ``idle_timeout``. A clock may therefore ask it only then (the
    platform does); a clock that asks it every tick (the real pool, the task-bag simulator) gets
    empty decisions in between.
    """

    name = "shortfall"
    #: the only states in which :meth:`decide` may act (see the policy contract in docs/architecture.md)
    triggers = _Triggers({"shortfall", "idle"}, "decide")

    def __init__(self, *, idle_timeout: float = 300.0, itype: str | None = None, zone: str | None = None,
                 market: str = "on-demand", catalog=None):
        self.idle_timeout = check_nonnegative("idle_timeout", idle_timeout)
        self.itype, self.zone = itype, zone
        self.market = check_choice("market", market, MARKETS)
        self.catalog = _catalog(catalog)
        self._resolved = None

    def reset(self) -> None:
        """Nothing is remembered between decisions."""

    def _place(self, state: PoolState):
        """(itype, zone, slots of one instance) of the launches, resolved once per pool limits."""
        c = self._resolved
        if c is None or c[0] is not state.limits or c[3] is not state.slots:
            limits = state.limits
            itype = _pick(self.itype, limits.types, "itype")
            slots = state.slots
            # the slots of one instance: fixed while the snapshot's slots map is the same object
            # (a clock that keeps one map); otherwise resolved again at the next decision
            c = (limits, itype, _pick(self.zone, limits.zones, "zone"), slots, _slots(state, itype, self.catalog))
            self._resolved = c if slots and slots.get(itype) else None
        return c[1], c[2], c[4]

    check_limits = _check_place

    def shortfall(self, state: PoolState) -> int:
        """Instances the queued work lacks beyond what is idle or booting (may be negative)."""
        return self._shortfall(state, aggregate(state), self._place(state)[2])

    @staticmethod
    def _shortfall(state, s, G):
        whole = state.queued_whole
        busy = state.running if s.busy_cores is None else s.busy_cores
        partial_free = s.serving_cores - s.booting_cores - busy - s.idle_cores
        pods = state.queued - whole - partial_free
        return whole // G + (-(-pods // G) if pods > 0 else 0) - len(s.idle) - s.booting_cores // G

    def decide(self, state: PoolState) -> Decision:
        s = aggregate(state)
        limits = state.limits
        itype, zone, G = self._place(state)
        need = self._shortfall(state, s, G)
        launch = ()
        serving = s.count.get(itype, 0)
        if need > 0:
            hi = limits.max_per_type.get(itype)
            count = need if hi is None else min(need, hi - serving)
            if limits.quota_cores is not None:
                count = min(count, (limits.quota_cores - s.serving_cores) // G)
            if count > 0:
                launch = (_launch(itype, zone, self.market, int(count)),)
        retire = []
        queued = state.queued > 0
        if s.idle and not (queued and need >= 0):
            keep = limits.min_per_type.get(itype, 0)
            timeout, now = self.idle_timeout, state.time
            for iid, it, _m, _c, since in s.idle:
                if since is None or since + timeout > now or it != itype:
                    continue
                if serving <= keep or (queued and need >= 0):
                    break
                retire.append(iid)
                serving -= 1
                need += 1
        return _decision(launch, tuple(retire), "shortfall")

    def __repr__(self) -> str:
        return f"<Shortfall idle_timeout={self.idle_timeout:g}>"


class Hysteresis:
    """Scale-down hysteresis around any policy.

    Launches of the inner policy pass unchanged. Its retirements of idle instances pass only for
    instances idle for at least ``wait`` pool seconds, and only if ``cooldown`` pool seconds have
    passed since the last scale-down or scale-up this wrapper let through; retirements of busy
    or booting instances (a deliberate stop, such as a spent budget) pass at once. Remembers those two times (reset when
    the clock goes backwards, i.e. a new run, or by :meth:`reset`).
    """

    def __init__(self, inner, *, wait: float = 60.0, cooldown: float = 120.0):
        if not hasattr(inner, "decide"):
            raise HpclabError(f"inner must be a policy with decide(state), got {inner!r}")
        self.inner = inner
        self.wait = check_nonnegative("wait", wait)
        self.cooldown = check_nonnegative("cooldown", cooldown)
        self.name = f"{inner.name}+hysteresis"
        self.reset()

    @property
    def catalog(self):
        return getattr(self.inner, "catalog", None)

    def check_limits(self, limits) -> None:
        """The inner policy's (see :func:`check_limits`)."""
        check_limits(self.inner, limits)

    @property
    def triggers(self):
        """The inner policy's: this wrapper only holds back some of its retirements, and what
        it remembers changes only when a decision is not empty."""
        return getattr(self.inner, "triggers", None)

    def reset(self) -> None:
        self._last_change = -math.inf
        self._last_time = -math.inf
        if hasattr(self.inner, "reset"):
            self.inner.reset()

    def decide(self, state: PoolState) -> Decision:
        if state.time < self._last_time:
            self.reset()
        self._last_time = state.time
        d = self.inner.decide(state)
        retire = ()
        if d.retire:
            since = {row[0]: row[4] for row in aggregate(state).idle}
            cooled = state.time - self._last_change >= self.cooldown
            # idle instances: only after wait and cooldown; others (busy, booting) are a
            # deliberate stop of the inner policy (e.g. a spent budget) and pass at once
            retire = tuple(r for r in d.retire if r not in since or (
                cooled and since[r] is not None and state.time - since[r] >= self.wait))
        if d.launch or retire:
            self._last_change = state.time
        held = len(d.retire) - len(retire)
        reason = d.reason + (f"; hysteresis held {held} retirements" if held else "")
        return Decision(launch=d.launch, retire=retire, reason=reason)

    def __repr__(self) -> str:
        return f"<Hysteresis {self.name!r} wait={self.wait} cooldown={self.cooldown}>"


# -- the registry ---------------------------------------------------------------------------
#: entry-point group through which installed packages offer policies (name -> class or factory)
ENTRY_POINT_GROUP = "hpclab.policies"
_REGISTRY: dict = {}


def register_policy(name: str, factory=None):
    """Register ``factory`` (a policy class, or a function returning a policy) under ``name``.

    Used as a decorator on a class (``@register_policy("my-policy")``) or called directly. A
    user's policy needs nothing else: one class in one file, found by :func:`make_policy` by the
    name it registered, by ``"module:Class"`` without registering, or through the
    ``hpclab.policies`` entry-point group of an installed package.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise HpclabError(f"a policy name must be a non-empty string without ':', got {name!r}")

    def deco(f):
        if not callable(f):
            raise HpclabError(f"policy {name!r}: the factory must be a class or function, got {f!r}")
        _REGISTRY[name] = f
        return f

    return deco if factory is None else deco(factory)


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def policy_names() -> tuple[str, ...]:
    """Every policy :func:`make_policy` knows by name: the built-in and registered ones, then
    those of installed packages (entry points), in that order."""
    names = list(_REGISTRY)
    names += [n for n in sorted(_entry_points()) if n not in _REGISTRY]
    return tuple(names)


def resolve_policy(spec: str):
    """The class or factory that ``spec`` names: a registered name, an entry point of the
    ``hpclab.policies`` group, or ``"package.module:Class"`` (imported)."""
    if not isinstance(spec, str):
        raise HpclabError(f"policy must be a name or 'module:Class', got {spec!r}")
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" in spec:
        import importlib

        mod, _, attr = spec.partition(":")
        if not all(p.isidentifier() for p in mod.split(".")) or not all(p.isidentifier() for p in attr.split(".")):
            raise HpclabError(f"policy {spec!r}: must be 'package.module:Class' (an absolute module "
                              f"path, a colon, a name)")
        try:
            obj = importlib.import_module(mod)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # the user's module may raise anything while it is imported
            raise HpclabError(f"policy {spec!r}: cannot import it ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())})") from None
        if not callable(obj):
            raise HpclabError(f"policy {spec!r} is not a class or function")
        return obj
    eps = _entry_points()
    if spec in eps:
        return eps[spec].load()
    raise HpclabError(f"policy must be one of {', '.join(policy_names())} or 'module:Class', "
                      f"got {spec!r}")


def make_policy(name, *, hysteresis: bool = False, wait: float = 60.0, cooldown: float = 120.0,
                **params):
    """Build a policy by name (see :func:`policy_names`) or ``"module:Class"``, optionally
    wrapped in :class:`Hysteresis`. A ready policy object (anything with ``decide``) is
    returned as it is (wrapped if asked).

    ``params`` go to the policy's constructor (e.g. ``target_duration``, ``spot_share``,
    ``deadline`` and ``budget`` for ``"deadline-budget"``, ``catalog``); a factory that takes
    no ``catalog`` is called without it.
    """
    if hasattr(name, "decide"):
        p = name
    else:
        factory = resolve_policy(name)
        if "catalog" in params and not _accepts(factory, "catalog"):
            params = {k: v for k, v in params.items() if k != "catalog"}
        try:
            p = factory(**params)
        except TypeError as exc:
            raise HpclabError(f"policy {name}: {' '.join(str(exc).split())}") from None
        if not hasattr(p, "decide"):
            raise HpclabError(f"policy {name!r} built {p!r}, which has no decide(state) method")
    return Hysteresis(p, wait=wait, cooldown=cooldown) if hysteresis else p


def _accepts(factory, param: str) -> bool:
    """Whether ``factory`` takes the keyword ``param`` (its signature read once per factory)."""
    try:
        return _accepts_cached(factory, param)
    except TypeError:  # an unhashable factory
        return _accepts_cached.__wrapped__(factory, param)


@functools.lru_cache(maxsize=256)
def _accepts_cached(factory, param: str) -> bool:
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    return any(p.name == param or p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _global(**params):
    params.setdefault("spot_share", 0.0)
    return GlobalPlacement(**params)


def _global_spot(**params):
    params.setdefault("spot_share", 1.0)
    if params["spot_share"] <= 0:
        raise HpclabError(f"spot_share must be > 0 for global-spot (use 'global'), "
                          f"got {params['spot_share']!r}")
    return GlobalPlacement(**params)


def _deadline_budget(**params):
    missing = [k for k in ("deadline", "budget") if k not in params]
    if missing:
        raise HpclabError(f"deadline-budget needs {' and '.join(missing)} (pool seconds, USD)")
    return DeadlineBudget(**params)


for _name, _factory in (("target-duration", TargetDuration), ("single-zone", SingleZone),
                        ("spot-first", SpotFirst), ("global", _global), ("global-spot", _global_spot),
                        ("deadline-budget", _deadline_budget), ("shortfall", Shortfall)):
    register_policy(_name, _factory)

#: the built-in policy names (:func:`policy_names` adds registered and installed ones)
POLICY_NAMES = tuple(_REGISTRY)
