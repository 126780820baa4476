"""Policies: Dask-like sizing, limits, spot fallback, global placement, hysteresis, bad inputs."""

import math

import pytest

from hpclab import HpclabError, catalog
from hpclab.elastic import policies as P
from hpclab.elastic.state import Decision, InstanceView, PoolLimits, PoolState

C7, C8I, C8A, G8I = "ecs.c7.8xlarge", "ecs.c8i.8xlarge", "ecs.c8a.8xlarge", "ecs.g8i.8xlarge"
HZ, BJ, SH = "cn-hangzhou-h", "cn-beijing-l", "cn-shanghai-m"


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


def inst(k, itype=C7, zone=HZ, market="on-demand", state="running", cores=16, running=0,
         idle_since=None, notice=False):
    if state == "running" and running == 0 and idle_since is None:
        idle_since = 0.0
    return InstanceView(id=f"i{k}", itype=itype, zone=zone, market=market, state=state, cores=cores,
                        launched_at=0.0, running_tasks=running, idle_since=idle_since, notice=notice)


def st(queued=0, running=0, instances=(), limits=None, time=100.0, mean=None, refused=None, **kw):
    limits = limits or PoolLimits(types=(C7,), zones=(HZ,))
    return PoolState(time=time, queued=queued, running=running, instances=tuple(instances),
                     limits=limits, mean_task_seconds=mean, refused=refused or {}, **kw)


def launched(d: Decision, **match):
    return sum(l.count for l in d.launch if all(getattr(l, k) == v for k, v in match.items()))


def test_target_duration_is_dasks_adaptive_target(cat):
    p = P.TargetDuration(target_duration=10.0, catalog=cat)
    # 1000 tasks of 2 s: 2000 slot-seconds / 10 s = 200 slots = 13 instances of 16 slots (ceil)
    d = p.decide(st(queued=1000, mean=2.0))
    assert launched(d, itype=C7, zone=HZ, market="on-demand") == math.ceil(200 / 16)
    # capped by the number of tasks (Dask: a few long tasks do not ask for many cores)
    d = p.decide(st(queued=3, mean=1000.0))
    assert launched(d) == 1
    # unknown task time: Dask's 0.5 s default -> 100 tasks * 0.5 / 10 = 5 slots -> 1 instance
    assert launched(p.decide(st(queued=100))) == 1
    # capacity already booting counts
    d = p.decide(st(queued=1000, mean=2.0, instances=[inst(k, state="booting") for k in range(13)]))
    assert d.empty


def test_scale_down_to_zero_and_minimum(cat):
    p = P.TargetDuration(catalog=cat)
    idle = [inst(k) for k in range(4)]
    busy = inst(9, running=16, idle_since=None)
    d = p.decide(st(instances=idle + [busy]))
    assert set(d.retire) == {"i0", "i1", "i2", "i3"}
    lim = PoolLimits(types=(C7,), zones=(HZ,), min_per_type={C7: 2})
    d = p.decide(st(instances=idle, limits=lim))
    assert len(d.retire) == 2
    d = p.decide(st(limits=lim))
    assert launched(d, itype=C7) == 2


def test_limits_max_and_quota_respected(cat):
    lim = PoolLimits(types=(C7, C8I), zones=(HZ, BJ), max_per_type={C7: 3, C8I: 2}, quota_cores=64)
    for pol in [P.TargetDuration(catalog=cat), P.SpotFirst(catalog=cat),
                P.GlobalPlacement(catalog=cat), P.GlobalPlacement(spot_share=0, catalog=cat),
                P.DeadlineBudget(deadline=1000, budget=1e6, catalog=cat), P.SingleZone(catalog=cat)]:
        d = pol.decide(st(queued=10**6, mean=60.0, limits=lim, instances=[inst(0)]))
        per_type = {t: launched(d, itype=t) for t in (C7, C8I)}
        assert per_type[C7] + 1 <= 3 and per_type[C8I] <= 2, pol.name
        assert 16 * (sum(per_type.values()) + 1) <= 64, pol.name
        assert all(l.zone in lim.zones and l.itype in lim.types for l in d.launch), pol.name


def test_slots_from_state(cat):
    # a real pool that gives each instance 2 threads says so in state.slots
    p = P.TargetDuration(target_duration=1.0, catalog=cat)
    d = p.decide(st(queued=10, mean=1.0, slots={C7: 2}))
    assert launched(d) == 5


def test_spot_first_falls_back_on_refusal_and_reclaim(cat):
    lim = PoolLimits(types=(C8I,), zones=(HZ, BJ))
    p = P.SpotFirst(target_duration=10.0, catalog=cat)
    s = st(queued=320, mean=1.0, limits=lim)  # 32 slots -> 2 instances
    d = p.decide(s)
    assert launched(d, market="spot", zone=HZ) == 2
    # spot refused in HZ: spot elsewhere
    d = p.decide(st(queued=320, mean=1.0, limits=lim, refused={(C8I, HZ): 90.0}))
    assert launched(d, market="spot", zone=BJ) == 2 and launched(d, zone=HZ) == 0
    # spot refused (market-specific) everywhere: on-demand fallback
    ref = {(C8I, HZ, "spot"): 90.0, (C8I, BJ, "spot"): 95.0}
    d = p.decide(st(queued=320, mean=1.0, limits=lim, refused=ref))
    assert launched(d, market="on-demand") == 2 and launched(d, market="spot") == 0
    # after refusal_memory old refusals no longer skip a place: each spot place (still presumed
    # full) is probed with one instance, HZ (refused first) first, and on-demand covers the need
    d = p.decide(st(queued=320, mean=1.0, limits=lim, refused={(C8I, HZ): 90.0}, time=1000.0))
    assert [(l.zone, l.market, l.count) for l in d.launch][:2] == [(HZ, "spot", 1), (BJ, "spot", 1)]
    assert launched(d, market="on-demand") == 2
    # a reclaim notice in HZ: the replacement goes elsewhere, and is remembered after it is gone
    p.reset()
    noticed = inst(0, itype=C8I, zone=HZ, market="spot", state="draining", running=16, notice=True)
    d = p.decide(st(queued=320, mean=1.0, limits=lim, instances=[noticed], time=200.0))
    assert launched(d, zone=BJ, market="spot") == 2
    d = p.decide(st(queued=320, mean=1.0, limits=lim, time=210.0))
    assert launched(d, zone=HZ, market="spot") == 0


def test_spot_share(cat):
    lim = PoolLimits(types=(C8I,), zones=(HZ,))
    p = P.SpotFirst(target_duration=1.0, spot_share=0.25, catalog=cat)
    d = p.decide(st(queued=160, mean=1.0, limits=lim))  # 160 slots = 10 instances
    assert launched(d, market="spot") == math.ceil(40 / 16)
    assert launched(d) * 16 >= 160


def test_global_orders_by_price_per_work_and_looks_elsewhere(cat):
    types = (C7, C8I, C8A, G8I)
    lim = PoolLimits(types=types, zones=(HZ, BJ))
    ppw = {t: cat.instance(t).price_on_demand / (cat.instance(t).cores
                                                 * cat.generation(cat.instance(t).generation).speed_factor)
           for t in types}
    best = min(ppw, key=ppw.get)
    assert best == C8A  # genoa: 1.25 USD/h / (16 * 1.25)
    p = P.GlobalPlacement(spot_share=0, target_duration=1.0, catalog=cat)
    assert p.name == "global"
    d = p.decide(st(queued=64, mean=1.0, limits=lim))
    assert [(l.itype, l.zone, l.market) for l in d.launch] == [(C8A, BJ, "on-demand")]
    # refused at the cheapest place: the next cheapest place (same type, other zone)
    d = p.decide(st(queued=64, mean=1.0, limits=lim, refused={(C8A, BJ): 99.0}))
    assert [(l.itype, l.zone) for l in d.launch] == [(C8A, HZ)]
    # refused in both: the next type by price per work
    second = sorted(ppw, key=ppw.get)[1]
    d = p.decide(st(queued=64, mean=1.0, limits=lim, refused={(C8A, BJ): 99.0, (C8A, HZ): 99.0}))
    assert {l.itype for l in d.launch} == {second}
    gs = P.make_policy("global-spot", catalog=cat, target_duration=1.0)
    d = gs.decide(st(queued=64, mean=1.0, limits=lim))
    spot_ppw = {t: P.price_per_work(t, "spot", cat) for t in types}
    assert {l.itype for l in d.launch} == {min(spot_ppw, key=spot_ppw.get)}
    assert all(l.market == "spot" for l in d.launch)


def test_global_defers_a_full_place_after_its_refusal_memory(cat):
    """A place that refused and where we released nothing since is asked only after the places
    not known to be full (else re-probing the cheapest full place takes every tick once
    ``refusal_memory`` runs out, and the pool never reaches the places further down the list)."""
    lim = PoolLimits(types=(C8A, C8I), zones=(HZ, BJ))
    p = P.GlobalPlacement(spot_share=0, target_duration=1.0, refusal_memory=300.0, catalog=cat)
    held = [inst(k, itype=C8A, zone=BJ, running=16) for k in range(3)]  # 3 granted, then refused
    d = p.decide(st(queued=64, mean=1.0, limits=lim, instances=held, refused={(C8A, BJ): 0.0}, time=60.0))
    assert [(l.itype, l.zone) for l in d.launch] == [(C8A, HZ)]  # within memory: skipped
    # memory over, still holding 3 there: presumed full, the next cheapest place goes first
    d = p.decide(st(queued=64, mean=1.0, limits=lim, instances=held, refused={(C8A, BJ): 0.0}, time=400.0))
    assert [(l.itype, l.zone) for l in d.launch] == [(C8A, HZ)]
    # every place refused long ago and still full: probed again, one instance each, oldest first
    ref = {(C8A, BJ): 0.0, (C8A, HZ): 30.0, (C8I, BJ): 40.0, (C8I, HZ): 20.0}
    d = p.decide(st(queued=128, mean=1.0, limits=lim, instances=held, refused=ref, time=900.0))
    assert [(l.itype, l.zone, l.count) for l in d.launch] == [(C8A, BJ, 1), (C8I, HZ, 1), (C8A, HZ, 1),
                                                              (C8I, BJ, 1)]
    # a granted probe (one more there than at the refusal): a candidate again, asked for all
    more = held + [inst(9, itype=C8A, zone=BJ, state="booting")]
    d = p.decide(st(queued=128, mean=1.0, limits=lim, instances=more, refused=ref, time=960.0))
    assert [(l.itype, l.zone) for l in d.launch] == [(C8A, BJ)] and launched(d) == 4
    # spot places all presumed full: their probes are not counted on, on-demand covers the need
    gs = P.GlobalPlacement(spot_share=1.0, target_duration=1.0, refusal_memory=300.0, catalog=cat)
    sref = {(t, z, "spot"): 0.0 for t in (C8A, C8I) for z in (HZ, BJ)}
    gs.decide(st(queued=16, mean=1.0, limits=lim, refused=sref, time=60.0))
    d = gs.decide(st(queued=16, mean=1.0, limits=lim, refused=sref, time=400.0))
    assert launched(d, market="spot") == 1 and launched(d, market="on-demand") == 1
    # we released one there: room again, the cheapest place is first again
    q = P.GlobalPlacement(spot_share=0, target_duration=1.0, refusal_memory=300.0, catalog=cat)
    q.decide(st(queued=64, mean=1.0, limits=lim, instances=held, refused={(C8A, BJ): 0.0}, time=60.0))
    d = q.decide(st(queued=64, mean=1.0, limits=lim, instances=held[:2], refused={(C8A, BJ): 0.0},
                    time=400.0))
    assert [(l.itype, l.zone) for l in d.launch] == [(C8A, BJ)]


def test_deadline_budget(cat):
    lim = PoolLimits(types=(C8A,), zones=(HZ,))
    # 1000 tasks x 60 s = 60000 slot-s; deadline in 1040 s, boot 40 s -> 60 slots
    p = P.DeadlineBudget(deadline=1140.0, budget=1e6, catalog=cat)
    d = p.decide(st(queued=1000, mean=60.0, limits=lim, time=100.0))
    assert launched(d) == math.ceil(60 / 16)
    # budget: the work alone costs p*W; here only a third of it is affordable
    price = cat.instance(C8A).price_on_demand / 16
    budget = price * 60000 / 3
    d = P.DeadlineBudget(deadline=1140.0, budget=budget, catalog=cat).decide(
        st(queued=1000, mean=60.0, limits=lim, time=100.0))
    c_b = math.floor(budget / (price * 1040.0))
    assert launched(d) == math.ceil(c_b / 16)
    # money spent: nothing more
    d = p.decide(st(queued=1000, mean=60.0, limits=lim, spent=2e6))
    assert d.empty


def test_hysteresis_holds_short_idles_and_cools_down(cat):
    inner = P.TargetDuration(catalog=cat)
    h = P.Hysteresis(inner, wait=60.0, cooldown=120.0)
    assert h.name == "target-duration+hysteresis"
    fresh = inst(0, idle_since=90.0)
    old = inst(1, idle_since=10.0)
    assert set(inner.decide(st(instances=[fresh, old], time=100.0)).retire) == {"i0", "i1"}
    d = h.decide(st(instances=[fresh, old], time=100.0))
    assert d.retire == ("i1",)
    # within the cooldown nothing more is retired, even when idle long enough
    d = h.decide(st(instances=[fresh], time=160.0))
    assert d.retire == ()
    d = h.decide(st(instances=[fresh], time=230.0))
    assert d.retire == ("i0",)
    # a new run (clock back to 0) starts afresh
    d = h.decide(st(instances=[inst(2, idle_since=-100.0)], time=0.0))
    assert d.retire == ("i2",)


def test_thrash_avoided_on_bursty_arrivals(cat):
    """Work arrives in bursts 90 s apart; plain Dask-like scaling retires and relaunches between
    bursts, hysteresis keeps the instances."""
    def run(policy):
        launches, instances = 0, []
        for k, t in enumerate(range(0, 900, 10)):
            busy = (t % 90) < 30
            instances = [InstanceView(i.id, i.itype, i.zone, i.market, "running", 16, 0.0,
                                      16 if busy else 0, None if busy else
                                      (i.idle_since if i.idle_since is not None else float(t)))
                         for i in instances]
            d = policy.decide(st(queued=160 if busy else 0, running=0, mean=5.0,
                                 instances=instances, time=float(t)))
            instances = [i for i in instances if i.id not in d.retire]
            for l in d.launch:
                for _ in range(l.count):
                    launches += 1
                    instances.append(inst(f"n{launches}", running=16, idle_since=None))
        return launches
    plain = run(P.TargetDuration(catalog=cat))
    held = run(P.Hysteresis(P.TargetDuration(catalog=cat), wait=120.0, cooldown=60.0))
    assert held < plain / 3


@pytest.mark.parametrize("build, match", [
    (lambda c: P.TargetDuration(target_duration=0, catalog=c), "target_duration must be"),
    (lambda c: P.SpotFirst(spot_share=1.5, catalog=c), r"spot_share must be a number in \[0, 1\]"),
    (lambda c: P.TargetDuration(market="reserved", catalog=c), "market must be one of"),
    (lambda c: P.make_policy("fastest", catalog=c), "policy must be one of"),
    (lambda c: P.make_policy("deadline-budget", catalog=c), "needs deadline and budget"),
    (lambda c: P.make_policy("global", catalog=c, colour=1), "policy global: .*colour"),
    (lambda c: P.Hysteresis(P.SingleZone(catalog=c), wait=-1), "wait must be"),
    (lambda c: P.TargetDuration(itype="ecs.nope", catalog=c), "unknown instance 'ecs.nope'"),
    (lambda c: PoolLimits(types=(C7,), zones=(HZ,), min_per_type={C7: 3}, max_per_type={C7: 1}),
     "max_per_type"),
    (lambda c: PoolLimits(types=(C7,), zones=(HZ,), quota_cores=0), "quota_cores"),
])
def test_bad_configuration_one_line(cat, build, match):
    with pytest.raises((HpclabError, KeyError), match=match) as info:
        build(cat)
    assert "\n" not in str(info.value)


def test_zone_outside_limits_is_an_error(cat):
    p = P.TargetDuration(zone=SH, catalog=cat)
    with pytest.raises(HpclabError, match="zone: must be one of the pool's zones"):
        p.decide(st(queued=10))


@pytest.mark.parametrize("build,needle", [
    (lambda cat: P.TargetDuration(zone=SH, catalog=cat), "zone: must be one of the pool's zones"),
    (lambda cat: P.TargetDuration(itype="ecs.c8i.8xlarge", catalog=cat), "itype: must be one of the pool's types"),
    (lambda cat: P.Shortfall(zone=SH, catalog=cat), "zone: must be one of the pool's zones"),
    (lambda cat: P.SpotFirst(zones=[SH], catalog=cat), "zones: must be one of the pool's zones"),
    (lambda cat: P.Hysteresis(P.Shortfall(itype="ecs.c8i.8xlarge", catalog=cat)),
     "itype: must be one of the pool's types"),
])
def test_check_limits_refuses_what_the_pool_lacks(cat, build, needle):
    """check_limits says before a run what the first decision would refuse; a policy within the
    pool's limits (or without the method) passes."""
    limits = st(queued=10).limits
    with pytest.raises(HpclabError, match=needle) as info:
        P.check_limits(build(cat), limits)
    assert "\n" not in str(info.value)
    P.check_limits(P.TargetDuration(zone=limits.zones[0], itype=limits.types[0], catalog=cat), limits)
    P.check_limits(object(), limits)


def test_hysteresis_lets_a_budget_stop_through(cat):
    inner = P.DeadlineBudget(deadline=3600.0, budget=1.0, catalog=cat)
    h = P.Hysteresis(inner, wait=600.0, cooldown=600.0)
    busy = inst(0, running=16, idle_since=None)
    fresh = inst(1, idle_since=95.0)
    d = h.decide(st(queued=100, running=16, mean=60.0, instances=[busy, fresh], spent=5.0))
    assert d.retire == ("i0",)  # the busy one drains now; the fresh idle one waits for `wait`
    assert not d.launch


def test_fast_snapshots_equal_the_checked_constructors():
    """state.fast (the clocks' per-decision constructor) fills every field in order."""
    from types import MappingProxyType

    from hpclab.elastic.policies import Aggregates
    from hpclab.elastic.state import Decision, Launch, PoolLimits, PoolState, fast

    lim = PoolLimits(types=("ecs.c8a.8xlarge",), zones=("cn-hangzhou-h",))
    m = MappingProxyType({"ecs.c8a.8xlarge": 16})
    args = (5.0, 3, 2, (), lim, 1.5, 7.0, 4, {}, m, 16)
    assert fast(PoolState, *args) == PoolState(*args)
    s = ({"a": 1}, 16, 0, {"a": 16}, frozenset(), (), {}, 0, 0, None)
    assert fast(Aggregates, *s) == Aggregates(*s)
    la = ("ecs.c8a.8xlarge", "cn-hangzhou-h", "spot", 2)
    assert fast(Launch, *la) == Launch(*la)
    assert fast(Decision, (Launch(*la),), ("i1",), "r") == Decision((Launch(*la),), ("i1",), "r")
    for cls in (PoolState, Aggregates, Launch, Decision):
        assert len(cls.__dataclass_fields__) == {PoolState: 11, Aggregates: 10, Launch: 4, Decision: 3}[cls]


def test_a_failing_policy_is_one_line_naming_it_on_every_virtual_clock():
    """A bug in a user's policy: one line naming the policy, the pool time and the error, the
    original chained (its traceback kept); a decide() that returns no Decision is named too."""
    import re

    from hpclab import HpclabError
    from hpclab import platform as P
    from hpclab.elastic.simulate import make_workload, simulate
    from hpclab.elastic.state import PoolLimits

    class Broken:
        name = "broken"

        def decide(self, state):
            raise KeyError("itype")

    class Silent:
        name = "silent"

        def decide(self, state):
            return None

    limits = PoolLimits(types=("ecs.c8i.8xlarge",), zones=("cn-hangzhou-h",))
    jobs = P.mixed_workload(50, ai_share=0.3, cpu_nodes=8, gpu_nodes=4, load=0.5, seed=1)
    runs = (lambda pol: simulate(pol, make_workload(100), limits, progress=False),
            lambda pol: P.replay(jobs, scaler=pol))
    for run in runs:
        with pytest.raises(HpclabError, match=re.escape("policy 'broken' failed at pool time ")) as info:
            run(Broken())
        assert "KeyError: 'itype'" in str(info.value) and "\n" not in str(info.value)
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(HpclabError, match="policy 'silent' returned NoneType from decide"):
            run(Silent())


def _triggers_hold(state, cat):
    """TargetDuration's triggers, computed from the snapshot as the contract states them: room
    under the limits with more tasks held than serving slots or a type below its minimum
    ("demand"), or an idle instance."""
    lim, s = state.limits, P.aggregate(state)
    room = False
    for t in lim.types:
        hi = lim.max_per_type.get(t)
        slots = P._slots(state, t, cat)
        if (hi is None or s.count.get(t, 0) < hi) and (lim.quota_cores is None
                                                        or lim.quota_cores - s.serving_cores >= slots):
            room = True  # room for one more instance
    below = any(s.count.get(t, 0) < n for t, n in lim.min_per_type.items())
    if room and (state.queued + state.running > s.serving_cores or below):
        return True
    return bool(s.idle)


from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(busy=hs.lists(hs.integers(0, 16), max_size=12), booting=hs.integers(0, 4),
       other=hs.integers(0, 4), spare=hs.integers(0, 40), cap=hs.sampled_from(["quota", "max", "none"]),
       minimum=hs.integers(0, 6), queued=hs.integers(0, 5000), mean=hs.one_of(hs.none(), hs.floats(0.1, 1e4)),
       target=hs.floats(1.0, 1e4), refused=hs.booleans(), wrap=hs.sampled_from(["plain", "hysteresis", "single-zone"]),
       draining=hs.lists(hs.integers(1, 16), max_size=3))
# more tasks held than serving slots with few queued, and with the excess on a draining instance
@example(busy=[16, 16], booting=0, other=0, spare=32, cap="quota", minimum=0, queued=10, mean=100.0,
         target=1.0, refused=False, wrap="plain", draining=[])
@example(busy=[16], booting=0, other=0, spare=32, cap="quota", minimum=0, queued=0, mean=100.0,
         target=1.0, refused=False, wrap="plain", draining=[16])
def test_target_duration_acts_only_where_its_triggers_hold(cat, busy, booting, other, spare, cap, minimum,
                                                           queued, mean, target, refused, wrap, draining):
    """Whatever the queue, the measured task time and the target: with no room under the limits,
    or no more tasks than serving slots and no type below its minimum, no idle instance and no
    refusal it has not seen, the decision is empty (so a clock may skip
    asking it then, as the virtual clock does); Hysteresis and SingleZone state the same triggers."""
    ins = [inst(k, itype=C8A, running=r, idle_since=None if r else 50.0) for k, r in enumerate(busy)]
    ins += [inst(100 + k, itype=C8A, state="booting", running=0, idle_since=None) for k in range(booting)]
    ins += [inst(200 + k, itype=C7, running=4) for k in range(other)]
    # draining instances: their tasks are running (held) but their slots are not serving
    ins += [inst(300 + k, itype=C8A, state="draining", running=r) for k, r in enumerate(draining)]
    n8 = len(busy) + booting
    serving = 16 * (n8 + other)
    limits = PoolLimits(types=(C8A, C7), zones=(HZ,),
                        min_per_type={C8A: min(minimum, n8) if cap == "max" else minimum},
                        max_per_type={C8A: n8, C7: other} if cap == "max" else {},
                        quota_cores=max(1, serving + spare) if cap == "quota" else None)
    p = {"plain": lambda: P.TargetDuration(target_duration=target, itype=C8A, catalog=cat),
         "hysteresis": lambda: P.Hysteresis(P.TargetDuration(target_duration=target, itype=C8A, catalog=cat)),
         "single-zone": lambda: P.SingleZone(target_duration=target, itype=C8A, catalog=cat)}[wrap]()
    assert p.triggers == {"demand", "idle", "refused"}
    state = st(queued=queued, running=sum(busy) + 4 * other + sum(draining), instances=ins, limits=limits, mean=mean,
               refused={(C8A, HZ): 40.0} if refused else None)
    first = p.decide(state)
    if refused:  # a refusal it has not seen: it may act (it remembers it); the next ask sees it
        first = p.decide(state)
    if not _triggers_hold(state, cat):
        assert first.empty, (first, limits)
