"""The spot market: reclaim waves vs independent reclaims, protection periods, bids, moving
prices billed per period, the catalog's market and billing figures, and both clocks on one
seeded schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpclab import HpclabError, catalog
from hpclab.catalog import CatalogError
from hpclab.elastic import policies as P
from hpclab.elastic.billing import path_cost
from hpclab.elastic.faults import SpotFaults, SpotMarket, clustered_share, price_check
from hpclab.elastic.simulate import make_workload, simulate
from hpclab.elastic.state import Decision, Launch, PoolLimits

C7, C8I = "ecs.c7.8xlarge", "ecs.c8i.8xlarge"
HZ, SH, BJ = "cn-hangzhou-h", "cn-shanghai-m", "cn-beijing-l"
WINDOW = 180.0  # "within three minutes" (Kim et al. 2026)


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


class Fleet:
    """Launch ``n`` spot instances in every (type, zone) of the limits at t=0, then nothing."""

    name = "fleet"

    def __init__(self, n):
        self.n = n

    def decide(self, state):
        if state.time > 0:
            return Decision()
        return Decision(launch=tuple(Launch(t, z, "spot", self.n) for t in state.limits.types
                                     for z in state.limits.zones))


FLEET = PoolLimits(types=(C8I, C7), zones=(HZ, SH, BJ))


def fleet_run(cat, market, *, n=40, rate=0.25 / 3600, hours=8.0, seed=0):
    wl = make_workload(1, duration="fixed", mean=10.0)
    H = hours * 3600.0
    return simulate(Fleet(n), wl, FLEET, catalog=cat, tick=60.0, reclaim_rate=rate, seed=seed,
                    horizon=H, linger=H, market=market)


def reclaims(res):
    ins = res.instances
    rc = ins[np.isfinite(ins["notice"])]
    return rc["notice"].to_numpy(), (rc["itype"] + "@" + rc["zone"]).to_numpy()


def test_clustered_share_by_hand():
    t = [0.0, 100.0, 1000.0, 5000.0, 5179.0, 5000.0]
    m = ["a", "a", "a", "a", "a", "b"]
    # 0-100 close, 1000 alone, 5000-5179 close; the 5000 of market b is alone
    assert clustered_share(t, m) == pytest.approx(4 / 6)
    assert math.isnan(clustered_share([], []))


def test_default_market_reclaims_come_in_waves(cat):
    # a fixed fleet (40 spot instances in each of 6 markets), and a policy-driven campaign
    t, m = reclaims(fleet_run(cat, SpotMarket()))
    assert t.size > 150
    assert clustered_share(t, m, WINDOW) >= 0.8
    lim = PoolLimits(types=(C8I, C7), zones=(HZ, SH), quota_cores=4000)
    wl = make_workload(20_000, duration="lognormal", mean=900.0, sigma=0.5, arrival="uniform",
                       window=4 * 3600.0, seed=0)
    res = simulate(P.make_policy("global-spot", catalog=cat, target_duration=1800.0), wl, lim,
                   catalog=cat, tick=60.0, reclaim_rate=0.5 / 3600, seed=0)
    t, m = reclaims(res)
    assert t.size > 50 and clustered_share(t, m, WINDOW) >= 0.8


def test_independent_reclaims_match_the_poisson_expectation(cat):
    # the fleet's instances start at 0; with independent reclaims at rate r, a reclaim at t has
    # another of its market within w unless each of the n-1 others falls outside [t-w, t+w]:
    # P = 1 - (1 - q)^(n-1), q = exp(-r max(t-w, 0)) - exp(-r min(t+w, H)) (H: end of the run)
    n, rate, hours = 40, 0.25 / 3600, 8.0
    H = hours * 3600.0
    shares, expected = [], []
    for seed in range(4):
        t, m = reclaims(fleet_run(cat, SpotMarket("independent"), n=n, rate=rate, hours=hours, seed=seed))
        q = np.exp(-rate * np.maximum(t - WINDOW, 0)) - np.exp(-rate * np.minimum(t + WINDOW, H))
        shares.append(clustered_share(t, m, WINDOW) * t.size)
        expected.append(float(np.sum(1 - (1 - q) ** (n - 1))))
    total = sum(len(reclaims(fleet_run(cat, SpotMarket("independent"), n=n, rate=rate, hours=hours,
                                       seed=s))[0]) for s in range(4))
    share, poisson = sum(shares) / total, sum(expected) / total
    assert abs(share - poisson) <= 0.05
    # and the correlated model, same rates and fleet, is far above it
    t, m = reclaims(fleet_run(cat, SpotMarket(), n=n, rate=rate, hours=hours))
    assert clustered_share(t, m, WINDOW) > poisson + 0.2


def test_mean_reclaim_rate_per_instance_is_the_zones_in_both_models(cat):
    # correlated: the G-th wave (G geometric in the share s, waves at rate r/s) comes after
    # E[G] s / r = 1 / r on average, plus half the spread; averaged over many markets' waves
    rate = 1 / 3600.0
    for model in ("correlated", "independent"):
        t = np.concatenate([SpotMarket(model).schedule(cat, seed=k).reclaim_times(C8I, HZ, np.zeros(50), rate)
                            for k in range(400)])
        assert t.mean() == pytest.approx(3600.0, rel=0.05), model


def test_a_protected_instance_is_never_reclaimed_in_its_first_hour(cat):
    for model in ("correlated", "independent"):
        res = fleet_run(cat, SpotMarket(model, option="protected-1h"), rate=2.0 / 3600, hours=4.0)
        ins = res.instances
        hit = np.isfinite(ins["notice"])
        assert hit.sum() > 100  # at 2 reclaims per instance-hour most are reclaimed after the hour
        assert (ins["notice"][hit] - ins["start"][hit]).min() >= 3600.0
        # unprotected: many go within the hour
        res0 = fleet_run(cat, SpotMarket(model), rate=2.0 / 3600, hours=4.0)
        i0 = res0.instances
        assert ((i0["notice"] - i0["start"]) < 3600.0).sum() > 50
    # the schedule itself, over many grant times
    s = SpotMarket(option="protected-1h").schedule(cat, seed=1)
    g = np.linspace(0, 10 * 3600, 5000)
    assert (s.reclaim_times(C8I, HZ, g, 5 / 3600.0) - g).min() >= 3600.0


def test_protection_is_priced_by_its_option(cat):
    a = fleet_run(cat, SpotMarket(), rate=0.0, hours=2.0)
    b = fleet_run(cat, SpotMarket(option="protected-1h"), rate=0.0, hours=2.0)
    factor = cat.spot_option("protected-1h").price_factor
    assert factor > cat.spot_option("none").price_factor
    assert float(b.bill["total_cost"]) == pytest.approx(factor * float(a.bill["total_cost"]), rel=1e-12)


def test_price_path_is_seeded_bounded_and_mean_reverting(cat):
    s1 = SpotMarket(prices="path").schedule(cat, seed=4)
    s2 = SpotMarket(prices="path").schedule(cat, seed=4)
    p1 = s1.price_path(C8I, HZ, 5000 * 3600.0)
    p2 = s2.price_path(C8I, HZ, 100 * 3600.0)
    assert np.array_equal(p1["price"].values[:101], p2["price"].values)  # lazily extended, same path
    inst, m = cat.instance(C8I), cat.market("correlated")
    share = p1["share"].values
    assert share.min() >= m.price_floor - 1e-12 and share.max() <= 1.0
    assert np.all(np.diff(p1["time"].values) == 3600.0)  # piecewise constant per hour
    assert share.mean() == pytest.approx(inst.price_spot / inst.price_on_demand, abs=0.01)
    # AR(1): one period's correlation is exp(-period / memory)
    x = share - share.mean()
    rho = float((x[1:] * x[:-1]).sum() / (x * x).sum())
    assert rho == pytest.approx(math.exp(-3600.0 / m.price_memory), abs=0.05)
    other = SpotMarket(prices="path").schedule(cat, seed=5).price_path(C8I, HZ, 100 * 3600.0)
    assert not np.array_equal(other["price"].values, p2["price"].values)


def test_bill_with_a_price_path_equals_an_independent_computation(cat):
    market = SpotMarket(prices="path", option="protected-1h")
    lim = PoolLimits(types=(C8I, C7), zones=(HZ, SH), quota_cores=800)
    wl = make_workload(3000, duration="lognormal", mean=600.0, sigma=0.5, arrival="uniform",
                       window=3 * 3600.0, seed=2)
    res = simulate(P.make_policy("global-spot", catalog=cat, spot_share=0.7, target_duration=1800.0),
                   wl, lim, catalog=cat, tick=60.0, reclaim_rate=0.3 / 3600, seed=2, market=market)
    sched = market.schedule(cat, seed=2)  # a fresh schedule: the same seeded price path
    factor = cat.spot_option("protected-1h").price_factor
    T, expected = res.end_time, 0.0
    for row in res.instances.itertuples():
        inst = cat.instance(row.itype)
        end = T if math.isnan(row.end) else row.end
        secs = max(math.ceil(end - row.start - 1e-9), inst.min_charge)
        if row.market == "spot":
            path = sched.price_path(row.itype, row.zone, row.start + secs)
            # each second at the price (USD/h, factor included) of the period it falls in
            mid = row.start + np.arange(secs) + 0.5
            k = np.searchsorted(path["time"].values, mid, side="right") - 1
            expected += float(path["price"].values[k].sum()) / 3600.0
        else:
            expected += secs * inst.price_on_demand
    assert (res.instances["market"] == "spot").sum() > 5
    assert float(res.bill["total_cost"]) == pytest.approx(expected, rel=1e-9)
    # the moving price changed the bill against the fixed catalog price
    fixed = simulate(P.make_policy("global-spot", catalog=cat, spot_share=0.7, target_duration=1800.0),
                     wl, lim, catalog=cat, tick=60.0, reclaim_rate=0.3 / 3600, seed=2,
                     market=SpotMarket(option="protected-1h"))
    assert float(fixed.bill["total_cost"]) != pytest.approx(expected, rel=1e-6)


def test_path_cost_by_hand():
    starts, prices = np.array([0.0, 10.0, 30.0]), np.array([1.0, 2.0, 4.0])
    # [5, 35]: 5 s at 1 + 20 s at 2 + 5 s at 4 = 65
    assert path_cost(np.array([5.0]), np.array([35.0]), starts, prices)[0] == pytest.approx(65.0)
    assert path_cost(12.0, 12.0, starts, prices) == 0.0
    with pytest.raises(HpclabError, match="starts must increase"):
        path_cost(0.0, 1.0, [0.0, 0.0], [1.0, 2.0])


def test_a_bid_below_the_market_price_reclaims_when_the_price_passes_it(cat):
    s = SpotMarket(prices="path", bid=0.27).schedule(cat, seed=7)
    g = np.array([0.0, 1800.0, 7200.5, 40_000.0])
    t = s.reclaim_times(C8I, HZ, g, 0.0)  # no waves: only the price ends them
    path = s.price_path(C8I, HZ, float(t[np.isfinite(t)].max()) + 3600.0)
    od = cat.instance(C8I).price_on_demand
    starts, share = path["time"].values, path["share"].values
    for gi, ti in zip(g, t):
        # independent: scan the periods for the first one above the bid at or after the grant
        k = int(np.searchsorted(starts, gi, side="right") - 1)
        while share[k] <= 0.27:
            k += 1
        assert ti == pytest.approx(max(starts[k], gi))
    assert od > 0
    # no bid: never reclaimed for price
    assert np.all(np.isinf(SpotMarket(prices="path").schedule(cat, seed=7).reclaim_times(C8I, HZ, g, 0.0)))


def test_price_history_file(cat, tmp_path):
    p = tmp_path / "prices.csv"
    p.write_text(f"time,itype,zone,price\n0,{C8I},{HZ},0.40\n3600,{C8I},{HZ},0.80\n")
    s = SpotMarket(prices=str(p)).schedule(cat)
    cost = s.spot_cost(C8I, HZ, np.array([1800.0]), np.array([5400.0]))
    assert cost[0] == pytest.approx((0.40 * 1800 + 0.80 * 1800) / 3600)
    # a market absent from the file: the catalog's spot price
    assert s.spot_cost(C7, HZ, [0.0], [3600.0])[0] == pytest.approx(cat.instance(C7).price_spot * 3600)
    p.write_text(f"time,itype,zone,price\n0,{C8I},{HZ},0.40\n3600,{C8I},{HZ},cheap\n")
    with pytest.raises(HpclabError, match=r"prices.csv: line 3: time and price must be numbers"):
        SpotMarket(prices=str(p)).schedule(cat)
    p.write_text(f"time,itype,zone,price\n3600,{C8I},{HZ},0.40\n0,{C8I},{HZ},0.30\n")
    with pytest.raises(HpclabError, match=r"line 3: times of .* must increase"):
        SpotMarket(prices=str(p)).schedule(cat)
    p.write_text("t,price\n")
    with pytest.raises(HpclabError, match="line 1: price history needs columns"):
        SpotMarket(prices=str(p)).schedule(cat)


def test_both_clocks_call_one_seeded_schedule(cat):
    res = fleet_run(cat, SpotMarket(), n=5, rate=1 / 3600, hours=3.0, seed=9)
    # the engine's schedule recorded (type, zone, grant, reclaim) per call; a fresh schedule
    # given the same grants in the same order answers the same
    fresh = SpotMarket().schedule(cat, seed=9)
    faults = SpotFaults(rate=1.0, seed=9, market=SpotMarket()).schedule(cat)
    ins = res.instances
    for row in ins.itertuples():
        (a,) = fresh.reclaim_times(row.itype, row.zone, [row.start], 1 / 3600)
        faults.on_granted(row.instance, row.itype, row.zone, "spot", row.start, 0.0)
        assert faults._next.get(row.instance, (math.inf,))[0] == a  # the real pool's hook
        notice = row.notice
        if a < res.end_time:
            assert notice == pytest.approx(a)
        else:
            assert math.isnan(notice)


def test_real_pool_reclaims_follow_the_market_schedule(cat):
    from distributed import Client

    from hpclab.elastic.pool import ElasticPool

    class Hold:
        name = "hold"

        def decide(self, state):
            serving = [i for i in state.instances if i.state != "draining" and not i.notice]
            k = 3 - len(serving)
            return Decision(launch=(Launch(C8I, HZ, "spot", k),)) if k > 0 and state.time < 400 \
                else Decision()

    market = SpotMarket()
    faults = SpotFaults(rate=30.0, seed=11, market=market)  # 30 reclaims per pool hour: waves
    with ElasticPool(C8I, HZ, market="spot", time_scale=0.01, processes=False, faults=faults,
                     policy=Hold(), interval=0.05, catalog=cat) as pool, Client(pool):
        pool.wait_for(lambda p: sum(r.notice for r in p.records.values()) >= 3, 60)
        log = pool.log.to_frame()
        granted = list(pool._fault_schedule.market.granted)
    fresh = market.schedule(cat, seed=11)
    notices = log[(log.state == "draining") & (log.reason == "spot-notice")]
    assert len(notices) >= 3
    booting = log[log.state == "booting"].drop_duplicates("instance")
    running = log[log.state == "running"].drop_duplicates("instance").set_index("instance")["time"]
    for (itype, zone, grant, when), row in zip(granted, booting.itertuples()):
        assert grant == pytest.approx(row.time)
        (again,) = fresh.reclaim_times(itype, zone, [grant], 30.0 / 3600)
        assert again == when  # the same seeded schedule as the virtual clock's
        hit = notices[notices.instance == row.instance]
        if len(hit):  # fired at the scheduled time (or once running), within a few ticks
            due = max(when, running.get(row.instance, when))
            assert due - 1e-6 <= float(hit.time.iloc[0]) <= due + 60.0


def test_catalog_market_figures_have_sources_and_bad_ones_fail_in_one_line(cat, tmp_path):
    for kind in ("market", "spot_option", "billing_rule", "unit_price", "exchange_rate"):
        for name in cat.names(kind):
            rec = getattr(cat, kind)(name)
            for fname, fig in rec.figures.items():
                assert fig.source.strip(), (kind, name, fname)
    assert cat.billing_rule("alibaba-ecs").metering_unit == 1.0
    assert cat.billing_rule("alibaba-ecs").bill_period == 3600.0
    assert cat.billing_rule("alibaba-ecs").min_charge_amount == pytest.approx(0.01)  # CNY
    assert cat.unit_price("alibaba-eci-cn").vcpu_price == pytest.approx(0.000049)
    assert cat.unit_price("alibaba-eci-cn").memory_price == pytest.approx(0.00000613)
    assert cat.spot_option("protected-1h").protection == 3600.0
    p = tmp_path / "m.yaml"
    p.write_text("markets:\n  correlated:\n    model: bursty\n")
    with pytest.raises(CatalogError, match=r"m.yaml: market 'correlated': model must be one of "
                                           r"correlated, independent, got 'bursty'") as e:
        catalog.load(p)
    assert "\n" not in str(e.value)
    p.write_text("markets:\n  correlated:\n    wave_share: {value: 1.5, unit: '1', source: me}\n")
    with pytest.raises(CatalogError, match=r"wave_share must be in \(0, 1\], got 1.5"):
        catalog.load(p)
    p.write_text("unit_prices:\n  alibaba-eci-cn:\n    vcpu_price: 0.1 USD/s\n")
    with pytest.raises(CatalogError, match=r"vcpu_price has unit 'USD/s'; allowed: CNY/vCPU/s"):
        catalog.load(p)


def test_price_check_against_published_eci_prices(cat):
    ds = price_check(cat)
    inst = cat.instance(C8I)
    fx = cat.exchange_rate("cny-usd").rate
    by_hand = (32 * 0.000049 + 64 * 0.00000613) / fx * 3600  # USD/h for 32 vCPU, 64 GiB
    assert float(ds["published"].sel(itype=C8I)) == pytest.approx(by_hand)
    assert float(ds["ratio"].sel(itype=C8I)) == pytest.approx(inst.price_on_demand * 3600 / by_hand)
    assert "gpu.8xh100" not in ds["itype"].values  # unit prices price CPU and memory only


def test_bad_market_arguments_give_one_line():
    with pytest.raises(HpclabError, match="model must be one of correlated, independent"):
        SpotMarket("bursty")
    with pytest.raises(HpclabError, match=r"bid must be a share of the on-demand price in \(0, 1\]"):
        SpotMarket(bid=2.0)
    with pytest.raises(HpclabError, match=r"wave_share must be a number in \(0, 1\]"):
        SpotMarket(wave_share=0.0)
    with pytest.raises(HpclabError, match="market must be a SpotMarket"):
        SpotFaults(market="waves")


# -- policies that know the market ----------------------------------------------------------------
def _view(k, itype, zone, market="spot", state="running", notice=False, cores=16):
    from hpclab.elastic.state import InstanceView

    return InstanceView(id=f"i{k}", itype=itype, zone=zone, market=market, state=state, cores=cores,
                        launched_at=0.0, running_tasks=cores, notice=notice)


def _state(queued, limits, instances=(), time=100.0):
    from hpclab.elastic.state import PoolState

    return PoolState(time=time, queued=queued, running=0, instances=tuple(instances), limits=limits,
                     mean_task_seconds=1.0)


@pytest.mark.parametrize("name", ["spot-first", "global-spot"])
def test_market_cap_spreads_spot_over_markets(cat, name):
    lim = PoolLimits(types=(C8I, C7), zones=(HZ, SH))  # 4 markets
    p = P.make_policy(name, catalog=cat, target_duration=1.0, market_cap=0.25)
    d = p.decide(_state(16 * 40, lim))  # 640 slots: 40 instances of 16 slots, all spot
    per = {}
    for l in d.launch:
        per[l.itype, l.zone, l.market] = per.get((l.itype, l.zone, l.market), 0) + l.count
    spot = {k: v for k, v in per.items() if k[2] == "spot"}
    assert len(spot) == 4 and max(spot.values()) == 10  # 0.25 x 40 instances per market
    # without a cap the cheapest market takes it all
    d = P.make_policy(name, catalog=cat, target_duration=1.0).decide(_state(16 * 40, lim))
    assert len({(l.itype, l.zone) for l in d.launch if l.market == "spot"}) == 1
    # what the cap turns away goes on-demand (two markets only: half the target)
    lim2 = PoolLimits(types=(C8I,), zones=(HZ, SH))
    d = P.make_policy(name, catalog=cat, target_duration=1.0, market_cap=0.25).decide(_state(16 * 40, lim2))
    assert sum(l.count for l in d.launch if l.market == "spot") == 20
    assert sum(l.count for l in d.launch if l.market == "on-demand") == 20
    # existing spot instances count against their market's cap
    held = [_view(k, C8I, HZ) for k in range(10)]
    d = P.make_policy(name, catalog=cat, target_duration=1.0, market_cap=0.25).decide(
        _state(16 * 40, lim, held))
    assert sum(l.count for l in d.launch if (l.itype, l.zone, l.market) == (C8I, HZ, "spot")) == 0


@pytest.mark.parametrize("name", ["spot-first", "global-spot"])
def test_wave_fallback_goes_on_demand_while_a_wave_is_under_way(cat, name):
    lim = PoolLimits(types=(C8I,), zones=(HZ, SH))
    p = P.make_policy(name, catalog=cat, target_duration=1.0, wave_fallback=True)
    hit = [_view(k, C8I, HZ, state="draining", notice=True) for k in range(4)]
    d = p.decide(_state(16 * 4, lim, hit, time=100.0))
    assert d.launch and all(l.market == "on-demand" for l in d.launch)
    # once the notice is older than refusal_memory (300 s), spot again
    d = p.decide(_state(16 * 4, lim, (), time=500.0))
    assert d.launch and all(l.market == "spot" for l in d.launch)
    # without the option, spot elsewhere (the other zone)
    d = P.make_policy(name, catalog=cat, target_duration=1.0).decide(_state(16 * 4, lim, hit))
    assert all(l.market == "spot" and l.zone == SH for l in d.launch)
    with pytest.raises(HpclabError, match=r"market_cap must be a share of the spot target in \(0, 1\]"):
        P.make_policy(name, catalog=cat, market_cap=0.0)


# -- sweeps and the "third of the cost" map ---------------------------------------------------------
def test_market_sweep_dataset(cat):
    from hpclab.elastic.simulate import campaign_limits
    from hpclab.elastic.sweep import market_sweep

    wl = make_workload(2000, duration="lognormal", mean=1800.0, sigma=0.5, arrival="burst", seed=1)
    lim = campaign_limits(2000, types=(C8I, C7), zones=(HZ, SH), catalog=cat)
    ds = market_sweep(wl, lim, model=["independent", "correlated"], market_cap=[None, 0.25],
                      deadline_hours=4.0, seeds=[0, 1], reclaim_scale=300.0, catalog=cat)
    assert dict(ds.sizes) == {"model": 2, "option": 1, "spot_share": 1, "market_cap": 2,
                              "wave_fallback": 1, "deadline": 1, "seed": 2}
    assert ds["cost"].attrs["units"] == "USD" and np.all(ds["cost"] > 0)
    assert list(ds["market_cap"].values) == [0.0, 0.25]
    assert np.all(ds["reclaims"] > 0)
    # the same run, repeated, gives the same numbers (one seed, one outcome)
    again = market_sweep(wl, lim, model="correlated", market_cap=0.25, deadline_hours=4.0, seeds=[1],
                         reclaim_scale=300.0, catalog=cat)
    assert float(again["cost"].squeeze()) == float(ds["cost"].sel(model="correlated", market_cap=0.25,
                                                                   seed=1).squeeze())


def _synthetic_inputs():
    """Measured-like inputs for the campaign model: 200 molecules, a 3D stage on a fifth."""
    import xarray as xr

    rng = np.random.default_rng(0)
    st = np.full((4, 200), np.nan)
    st[:3] = rng.lognormal(np.log(0.002), 0.3, (3, 200))
    st[3, :40] = rng.lognormal(np.log(0.05), 0.5, 40)
    return xr.Dataset({"cost_seconds": ("sample", np.nansum(st, axis=0)),
                       "stage_seconds": (("stage", "sample"), st)},
                      coords={"stage": ["prepare", "filter", "2d", "3d"], "sample": np.arange(200)},
                      attrs={"survivor_fraction": 0.2, "conformers": 3, "sample_speed": 1.0})


def test_cost_map_where_a_third_holds(cat):
    from hpclab.workloads import screening as scr

    m = scr.cost_map(_synthetic_inputs(), cores_wanted=1000, deadline_hours=(1.5,), spot_share=(0.0, 0.9),
                     option=("none",), model=("correlated",), seeds=(0,), max_tasks=2000, catalog=cat)
    assert set(m.dims) == {"model", "option", "spot_share", "deadline"}
    r = m["cost_ratio"].sel(model="correlated", option="none", deadline=1.5)
    # no spot: only the cheaper-per-work generation helps; 90 % spot: "about a third"
    assert 0.6 < float(r.sel(spot_share=0.0)) < 1.0
    assert 0.2 <= float(r.sel(spot_share=0.9)) <= 0.45
    assert bool(m["holds"].sel(model="correlated", option="none", deadline=1.5, spot_share=0.9))
    assert not bool(m["holds"].sel(model="correlated", option="none", deadline=1.5, spot_share=0.0))
    # the ratio is the elastic bill over the baseline's, by the attrs
    assert float(m["cost"].sel(model="correlated", option="none", deadline=1.5, spot_share=0.9)) / \
        m.attrs["baseline_cost"][0] == pytest.approx(float(r.sel(spot_share=0.9)))


# -- properties (Hypothesis) ---------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_times = hs.floats(min_value=0.0, max_value=1e5, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(widths=hs.lists(hs.floats(min_value=1.0, max_value=5e3), min_size=1, max_size=8),
       prices=hs.lists(hs.floats(min_value=0.0, max_value=10.0), min_size=8, max_size=8),
       a=_times, b=_times, c=_times)
def test_path_cost_is_additive_and_matches_a_fine_sum(widths, prices, a, b, c):
    starts = np.concatenate([[0.0], np.cumsum(widths)])
    p = np.array(prices[: starts.size] + [1.0] * max(0, starts.size - len(prices)))[: starts.size]
    lo, mid, hi = sorted((a, b, c))
    whole = float(path_cost(lo, hi, starts, p))
    assert whole == pytest.approx(float(path_cost(lo, mid, starts, p)) + float(path_cost(mid, hi, starts, p)),
                                  rel=1e-9, abs=1e-9)
    # against an overlap sum period by period
    ends = np.append(starts[1:], np.inf)
    overlap = np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0, None)
    assert whole == pytest.approx(float((overlap * p).sum()), rel=1e-9, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(grants=hs.lists(hs.floats(min_value=0.0, max_value=2e5, allow_nan=False), min_size=1, max_size=30),
       rate=hs.floats(min_value=0.0, max_value=1e-2), model=hs.sampled_from(["correlated", "independent"]),
       seed=hs.integers(0, 2**16))
def test_reclaims_never_come_inside_the_protection_and_batching_does_not_matter(grants, rate, model, seed):
    cat = catalog.default()
    m = SpotMarket(model, option="protected-1h")
    g = np.array(grants)
    together = m.schedule(cat, seed).reclaim_times(C8I, HZ, g, rate)
    one = m.schedule(cat, seed)
    apart = np.array([one.reclaim_times(C8I, HZ, [x], rate)[0] for x in g])
    assert np.array_equal(together, apart)
    assert np.all(together >= g + 3600.0)


@settings(max_examples=30, deadline=None)
@given(rows=hs.lists(hs.tuples(hs.floats(min_value=0, max_value=1e6, allow_nan=False),
                               hs.floats(min_value=0, max_value=100, allow_nan=False)),
                     min_size=1, max_size=10, unique_by=lambda r: r[0]))
def test_price_history_round_trips(rows, tmp_path_factory):
    cat = catalog.default()
    rows = sorted(rows)
    p = tmp_path_factory.mktemp("hist") / "h.csv"
    p.write_text("time,itype,zone,price\n" + "".join(f"{t!r},{C8I},{HZ},{v!r}\n" for t, v in rows))
    starts, prices = SpotMarket(prices=str(p)).schedule(cat).path(C8I, HZ, 0.0)
    assert np.array_equal(starts, [r[0] for r in rows])
    assert np.allclose(prices * 3600.0, [r[1] for r in rows], rtol=1e-12)


def test_running_meter_pays_the_spot_option(cat):
    # what the policy sees as spent at the end equals the bill (fixed prices, protected option)
    res = fleet_run(cat, SpotMarket(option="protected-1h"), rate=0.0, hours=2.0)
    assert float(res.timeseries["cost"][-1]) == pytest.approx(float(res.bill["total_cost"]), rel=1e-6)


def test_real_pool_bills_spot_at_the_price_path(cat):
    from hpclab.elastic.pool import ElasticPool

    market = SpotMarket(prices="path", price_period=20.0)  # 20 pool-second periods: several per run
    faults = SpotFaults(rate=0.0, seed=4, market=market)
    lim = PoolLimits(types=(C8I, C7), zones=(HZ,))
    with ElasticPool(limits=lim, time_scale=0.01, processes=False, faults=faults, catalog=cat) as pool:
        pool.launch(C8I, HZ, "spot", 2)
        pool.launch(C7, HZ, "on-demand", 1)
        pool.wait_for(lambda p: all(r.state == "running" for r in p.alive()), 30)
        time_ = pool.now()
        pool.wait_for(lambda p: p.now() > time_ + 60.0, 30)
        until = pool.now()
        b = pool.bill(until=until)
        log = pool.log.to_frame()
        pool.scale(0)
        pool.wait_for(lambda p: not p.alive(), 30)
    sched = market.schedule(cat, seed=4)
    expected = 0.0
    first = log[log.state.isin(["booting", "running", "draining"])].groupby("instance").first()
    for inst, row in first.iterrows():
        rec = cat.instance(row.itype)
        secs = max(math.ceil(until - row.time - 1e-9), rec.min_charge)
        if row.market == "spot":
            path = sched.price_path(row.itype, row.zone, row.time + secs)
            edges = np.append(path["time"].values, np.inf)
            lo, hi = row.time, row.time + secs
            overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
            expected += float((overlap * path["price"].values).sum()) / 3600.0
        else:
            expected += secs * rec.price_on_demand
    assert float(b["total_cost"]) == pytest.approx(expected, rel=1e-9)
