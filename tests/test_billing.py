"""Billing: the per-second meter against an independent hand computation from the event log."""

import math

import numpy as np
import pandas as pd
import pytest

from hpclab import HpclabError, catalog
from hpclab.elastic.billing import bill, bill_instances, intervals_from_log


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


def _log():
    # a lifecycle log as a pool writes it: time, instance, type, zone, market, state
    rows = [
        (0.0, "a", "ecs.c7.8xlarge", "cn-hangzhou-h", "on-demand", "requested"),
        (0.5, "a", "ecs.c7.8xlarge", "cn-hangzhou-h", "on-demand", "booting"),
        (40.2, "a", "ecs.c7.8xlarge", "cn-hangzhou-h", "on-demand", "running"),
        (1000.1, "a", "ecs.c7.8xlarge", "cn-hangzhou-h", "on-demand", "terminated"),  # 999.6 s -> 1000 s
        (0.0, "b", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "requested"),
        (1.0, "b", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "booting"),
        (20.0, "b", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "running"),
        (31.0, "b", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "terminated"),  # 30 s < min charge 60 s
        (5.0, "c", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "requested"),
        (5.0, "c", "ecs.c8i.8xlarge", "cn-beijing-l", "spot", "terminated"),  # refused: never billed
        (10.0, "d", "ecs.c8i.8xlarge", "cn-beijing-l", "on-demand", "booting"),
        (7210.0, "d", "ecs.c8i.8xlarge", "cn-beijing-l", "on-demand", "draining"),
        (7300.0, "d", "ecs.c8i.8xlarge", "cn-beijing-l", "on-demand", "terminated"),  # 7290 s
    ]
    return pd.DataFrame(rows, columns=["time", "instance", "type", "zone", "market", "state"])


def test_bill_matches_hand_computation(cat):
    iv = intervals_from_log(_log())
    assert list(iv["instance"]) == ["a", "b", "d"]
    ds = bill(iv, cat)
    c7, c8 = cat.instance("ecs.c7.8xlarge"), cat.instance("ecs.c8i.8xlarge")
    # by hand, in USD/hour from the catalog's written prices: 1.30, 0.35 (spot), 1.45
    a = 1000 * 1.30 / 3600
    b = 60 * 0.35 / 3600
    d = 7290 * 1.45 / 3600
    assert c7.min_charge == 60 and c8.min_charge == 60
    assert float(ds["total_cost"]) == pytest.approx(a + b + d, rel=1e-12)
    assert float(ds["cost"].sel(itype="ecs.c7.8xlarge", zone="cn-hangzhou-h", market="on-demand")) == \
        pytest.approx(a)
    assert float(ds["cost"].sel(itype="ecs.c8i.8xlarge", market="spot").sum()) == pytest.approx(b)
    assert float(ds["cost"].sel(zone="cn-beijing-l").sum()) == pytest.approx(b + d)
    assert float(ds["billed_seconds"].sum()) == 1000 + 60 + 7290
    assert float(ds["instance_seconds"].sum()) == pytest.approx(999.6 + 30 + 7290)
    assert int(ds["instances"].sum()) == 3
    assert ds["cost"].attrs["units"] == "USD"


def test_open_instances_billed_until(cat):
    iv = pd.DataFrame({"instance": ["x"], "itype": ["ecs.c8a.8xlarge"], "zone": ["cn-shanghai-m"],
                       "market": ["spot"], "start": [100.0], "end": [np.nan]})
    with pytest.raises(HpclabError, match="until"):
        bill(iv, cat)
    per = bill_instances(iv, cat, until=3700.0)
    assert per["billed_seconds"].iloc[0] == 3600
    assert per["cost"].iloc[0] == pytest.approx(0.30)  # one hour of spot at 0.30 USD/h


def test_vectorised_matches_loop_on_random_table(cat):
    rng = np.random.default_rng(7)
    types = ["ecs.c7.8xlarge", "ecs.c8i.8xlarge", "ecs.c8a.8xlarge"]
    zones = ["cn-hangzhou-h", "cn-beijing-l"]
    n = 500
    start = rng.uniform(0, 1e4, n)
    iv = pd.DataFrame({"instance": [f"i{k}" for k in range(n)], "itype": rng.choice(types, n),
                       "zone": rng.choice(zones, n), "market": rng.choice(["spot", "on-demand"], n),
                       "start": start, "end": start + rng.exponential(300, n)})
    ds = bill(iv, cat)
    expect = {}
    for r in iv.itertuples():
        inst = cat.instance(r.itype)
        secs = max(math.ceil(r.end - r.start - 1e-9), inst.min_charge)
        price = inst.price_spot if r.market == "spot" else inst.price_on_demand
        expect[(r.itype, r.zone, r.market)] = expect.get((r.itype, r.zone, r.market), 0) + secs * price
    for (t, z, m), v in expect.items():
        assert float(ds["cost"].sel(itype=t, zone=z, market=m)) == pytest.approx(v, rel=1e-12)
    assert float(ds["total_cost"]) == pytest.approx(sum(expect.values()), rel=1e-12)


@pytest.mark.parametrize("change, match", [
    ({"market": ["reserved"]}, "market must be one of on-demand, spot"),
    ({"end": [5.0]}, "end must be >= start"),
    ({"itype": ["ecs.nope"]}, "unknown instance 'ecs.nope'"),
])
def test_bad_tables(cat, change, match):
    iv = {"instance": ["x"], "itype": ["ecs.c7.8xlarge"], "zone": ["z"], "market": ["spot"],
          "start": [10.0], "end": [20.0]}
    iv.update(change)
    with pytest.raises((HpclabError, KeyError), match=match) as info:
        bill(iv, cat)
    assert "\n" not in str(info.value)


def test_missing_column_and_duplicates(cat):
    with pytest.raises(HpclabError, match="lack column"):
        bill({"instance": ["x"]}, cat)
    iv = {"instance": ["x", "x"], "itype": ["ecs.c7.8xlarge"] * 2, "zone": ["z"] * 2,
          "market": ["spot"] * 2, "start": [0.0, 1.0], "end": [2.0, 3.0]}
    with pytest.raises(HpclabError, match="one row per instance"):
        bill(iv, cat)


def test_charge_is_the_meter_by_hand():
    from hpclab.elastic.billing import charge, meter

    # 90.2 s -> 91 s; 10 s -> the 60 s minimum; not yet granted (negative) -> nothing
    assert charge(90.2, 0.001, 60.0) == pytest.approx(0.091)
    assert charge(10.0, 0.001, 60.0) == pytest.approx(0.060)
    assert charge(-5.0, 0.001, 60.0) == 0.0
    got = charge(np.array([[0.0, 59.0, 61.0000000001, 3600.0]]), 2.0, 60.0)
    np.testing.assert_allclose(got, [[120.0, 120.0, 122.0, 7200.0]])
    # meter: two instances, one ended at 100 s, one alive; billed up to now = 250 s
    assert meter([0.0, 200.0], [100.0, np.inf], 250.0, 1.0, 60.0) == pytest.approx(100 + 60)
    assert meter([0.0, 300.0], [100.0, np.nan], 250.0, 1.0, 60.0) == pytest.approx(100)


def test_one_meter_everywhere(cat):
    """The simulator's running spend, the view's cost curve and the bill are the same meter."""
    from hpclab.elastic import simulate as sim
    from hpclab.viz.pools import cost_data

    from hpclab.elastic.policies import make_policy
    from hpclab.elastic.state import PoolLimits

    lim = PoolLimits(types=("ecs.c8i.8xlarge",), zones=("cn-hangzhou-h",), quota_cores=64)
    wl = sim.make_workload(400, mean=300.0, seed=1)
    res = sim.simulate(make_policy("target-duration", catalog=cat), wl, lim, catalog=cat, seed=3,
                       reclaim_rate=0.0)
    total = float(res.bill["total_cost"])
    assert total > 0
    # the policy saw the same meter: the last recorded spend is the bill (everything retired)
    assert float(res.timeseries["cost"][-1]) == pytest.approx(total, rel=1e-9)
    curve = cost_data(res.log, cat, now=res.end_time)
    assert curve["y"][-1] == pytest.approx(total, rel=1e-9)
