"""Per-second billing of instances, computed vectorised from an event log.

One function bills both clocks: the real :class:`ElasticPool` and the virtual-clock simulator
pass it a table of instance lifetimes (one row per instance)::

    instance  itype            zone           market     start   end
    i-0001    ecs.c8i.8xlarge  cn-hangzhou-h  spot       12.0    931.5

and get back the cost of each instance and totals by type, zone and market.

The meter (Alibaba Cloud ECS "Pay-as-you-go": billed per second, with the catalog's
``min_charge``; spot "preemptible instances" at the spot price)::

    billed_seconds = max(ceil(end - start), min_charge[itype])
    cost           = billed_seconds * price[itype, market]          # USD, price in USD/s

With a spot market (:class:`hpclab.elastic.faults.SpotMarket`, ``market=`` its schedule) the
spot price moves: each billed second of a spot instance costs the price of its period,
``cost = integral of price(t) over [start, start + billed_seconds]`` (:func:`path_cost`) times the
spot option's price factor (protection period).

Times are pool seconds (virtual seconds, or wall seconds / time_scale in the real pool).
A lifecycle log (``time, instance, itype, zone, market, state``) becomes such a table with
:func:`intervals_from_log`: an instance is billed from the moment the cloud granted it (its first
``booting``, ``running`` or ``draining`` record) until ``terminated``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError
from hpclab.elastic.state import MARKETS

__all__ = ["charge", "unit_price", "meter", "bill", "bill_totals", "bill_instances", "intervals_from_log",
           "path_cost", "INTERVAL_COLUMNS"]

INTERVAL_COLUMNS = ("instance", "itype", "zone", "market", "start", "end")
_BILLED_STATES = ("booting", "running", "draining")
_EPS = 1e-9  # float slack before rounding up to the next whole second


def _catalog(catalog):
    from hpclab.catalog import resolve

    return resolve(catalog)


def charge(seconds, price, min_charge=0.0):
    """The meter, the one place its rule is written: ``max(ceil(seconds), min_charge) * price``.

    Every cost in hpclab comes from this function: the real pool, the virtual clock, the
    platform replay, the views and the analytic models (on arrays where they need it).

    Parameters
    ----------
    seconds : float or array
        Pool seconds an instance has been billed for (from grant to now or to termination);
        a negative value (an instance not yet granted at that time) costs nothing.
    price : float or array
        USD per second (:func:`unit_price`).
    min_charge : float or array
        The catalog's minimum billed seconds per instance.

    Returns
    -------
    float or numpy.ndarray
        USD, broadcast over the inputs.

    Examples
    --------
    >>> float(charge(90.2, 0.001, 60.0))
    0.091
    >>> float(charge(10.0, 0.001, 60.0))
    0.06
    """
    if isinstance(seconds, float) and isinstance(price, float) and isinstance(min_charge, (float, int)) \
            and math.isfinite(seconds) and math.isfinite(min_charge):
        # one instance (a clock's termination): the same rule without arrays, to the same bit
        return float(max(float(math.ceil(seconds - _EPS)), min_charge) * price) if seconds >= 0 else 0.0
    s = np.asarray(seconds, dtype=float)
    out = np.maximum(np.ceil(s - _EPS), min_charge) * np.asarray(price, dtype=float)
    if s.size and not s.min() >= 0:  # a negative (or NaN) time costs nothing (a where only then)
        out = np.where(s >= 0, out, 0.0)
    return float(out) if out.ndim == 0 else out


def unit_price(instance, market: str = "on-demand") -> float:
    """USD per second of an instance type (a catalog record) on ``market``."""
    if market not in MARKETS:
        raise HpclabError(f"market must be one of {', '.join(MARKETS)}; got {market!r}")
    return instance.price_spot if market == "spot" else instance.price_on_demand


def meter(start, end, now, price, min_charge=0.0) -> float:
    """USD billed up to pool time ``now`` for instances granted at ``start`` (array) and
    terminated at ``end`` (``inf`` or NaN while alive): :func:`charge` of
    ``min(end, now) - start`` summed, instances granted after ``now`` costing nothing."""
    start = np.asarray(start, dtype=float)
    end = np.asarray(end, dtype=float)
    stop = np.where(np.isnan(end), now, np.minimum(end, now))
    return float(np.sum(charge(stop - start, price, min_charge)))


def _frame(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, xr.Dataset):
        return table.to_dataframe().reset_index()
    if isinstance(table, dict):
        return pd.DataFrame(table)
    raise HpclabError(f"intervals must be a DataFrame, Dataset or dict of columns "
                      f"({', '.join(INTERVAL_COLUMNS)}), got {type(table).__name__}")


def path_cost(start, end, starts, prices) -> np.ndarray:
    """Cost of ``[start, end]`` (arrays, s) at a piecewise-constant price.

    ``prices[k]`` (USD/s) holds from ``starts[k]`` to ``starts[k+1]`` (the last one on; the
    first one also before ``starts[0]``). With ``C(t)`` the cumulative cost up to ``t`` (a
    cumulative sum over whole periods plus the part of the current one)::

        C(t) = sum_{j<k} prices[j] (starts[j+1] - starts[j]) + prices[k] (t - starts[k]),
        starts[k] <= t < starts[k+1];      cost = C(end) - C(start)
    """
    starts = np.asarray(starts, dtype=float)
    prices = np.asarray(prices, dtype=float)
    if starts.ndim != 1 or starts.shape != prices.shape or starts.size == 0:
        raise HpclabError("starts and prices must be equal-length, non-empty 1-D arrays")
    if np.any(np.diff(starts) <= 0):
        raise HpclabError("starts must increase")
    cum = np.concatenate([[0.0], np.cumsum(prices[:-1] * np.diff(starts))])

    def C(t):
        k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, None)
        return cum[k] + prices[k] * (t - starts[k])

    return C(np.asarray(end, dtype=float)) - C(np.asarray(start, dtype=float))


def instance_costs(itype, zone, market, start, end, catalog=None, *, schedule=None):
    """The meter on arrays, one element per instance (no checks: :func:`bill_instances` is the
    checked, tabular form).

    Parameters
    ----------
    itype, zone, market : array of str
        Each instance's type, zone and market (``on-demand`` or ``spot``).
    start, end : array of float
        Pool seconds of grant and termination (finite, ``end >= start``).
    catalog : hpclab.catalog.Catalog, optional
    schedule : hpclab.elastic.faults.MarketSchedule, optional
        Spot seconds priced by its price path and spot option (default: the fixed ``price_spot``).

    Returns
    -------
    (billed_seconds, price, cost) : three float arrays
        Seconds billed, USD per second (the average over the billed seconds) and USD.
    """
    cat = _catalog(catalog)
    itype = np.asarray(itype, dtype=object)
    market = np.asarray(market, dtype=object)
    start = np.asarray(start, dtype=float)
    end = np.asarray(end, dtype=float)
    types, codes = np.unique(itype, return_inverse=True) if itype.size else (np.zeros(0, object),
                                                                              np.zeros(0, int))
    recs = [cat.instance(t) for t in types]  # KeyError listing known types
    od = np.array([unit_price(r, "on-demand") for r in recs])[codes]
    sp = np.array([unit_price(r, "spot") for r in recs])[codes]
    minc = np.array([r.min_charge for r in recs])[codes]
    seconds = end - start
    spot = market == "spot"
    price = np.where(spot, sp, od)
    billed = charge(seconds, 1.0, minc)
    cost = charge(seconds, price, minc)
    if schedule is not None and spot.any():  # spot seconds at the price of their period
        zone = np.asarray(zone, dtype=object)
        for k, t in enumerate(types):
            for z in np.unique(zone[spot & (codes == k)]):
                m = spot & (codes == k) & (zone == z)
                cost[m] = schedule.spot_cost(t, z, start[m], start[m] + billed[m])
        price = np.where(spot, cost / np.where(billed > 0, billed, 1.0), price)
    return billed, price, cost


def bill_instances(intervals, catalog=None, *, until: float | None = None,
                   market=None) -> pd.DataFrame:
    """The cost of each instance.

    Parameters
    ----------
    intervals : DataFrame, Dataset or dict of columns
        ``instance, itype, zone, market, start, end`` (pool seconds); ``end`` NaN for an instance
        still alive, billed up to ``until``.
    catalog : hpclab.catalog.Catalog, optional
        Prices and ``min_charge`` per instance type (default: the shipped catalog).
    until : float, optional
        Pool time at which open instances are billed (needed if any ``end`` is NaN).
    market : hpclab.elastic.faults.MarketSchedule, optional
        Spot seconds priced by the market's price path and spot option (default: the
        catalog's fixed ``price_spot``).

    Returns
    -------
    pandas.DataFrame
        The input columns plus ``seconds`` (lifetime), ``billed_seconds``, ``price`` (USD/s) and
        ``cost`` (USD), one row per instance.
    """
    cat = _catalog(catalog)
    df = _frame(intervals)
    missing = [c for c in INTERVAL_COLUMNS if c not in df.columns]
    if missing:
        raise HpclabError(f"intervals lack column(s) {', '.join(missing)}; need {', '.join(INTERVAL_COLUMNS)}")
    df = df.loc[:, list(INTERVAL_COLUMNS)].reset_index(drop=True).copy()
    if df["instance"].duplicated().any():
        raise HpclabError(f"intervals must have one row per instance; repeated: "
                          f"{df.loc[df['instance'].duplicated(), 'instance'].iloc[0]!r}")
    bad = ~df["market"].isin(MARKETS)
    if bad.any():
        raise HpclabError(f"market must be one of {', '.join(MARKETS)}; got {df['market'][bad].iloc[0]!r}")
    try:
        start = df["start"].to_numpy(dtype=float)
        end = df["end"].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise HpclabError("start and end must be numbers (pool seconds)") from None
    if not np.all(np.isfinite(start)):
        raise HpclabError("start must be finite for every instance")
    open_ = np.isnan(end)
    if open_.any():
        if until is None:
            raise HpclabError(f"{int(open_.sum())} instance(s) have no end; pass until= to bill them "
                              "up to that time")
        end = np.where(open_, float(until), end)
    if np.any(np.isinf(end)):
        raise HpclabError("end must be finite (or NaN for an instance still alive)")
    if np.any(end < start):
        i = int(np.argmax(end < start))
        raise HpclabError(f"end must be >= start; instance {df['instance'].iloc[i]!r} has "
                          f"start {start[i]:g}, end {end[i]:g}")
    df["end"] = end
    df["seconds"] = end - start
    billed, price, cost = instance_costs(df["itype"].to_numpy(), df["zone"].to_numpy(),
                                         df["market"].to_numpy(), start, end, cat, schedule=market)
    df["billed_seconds"] = billed
    df["price"] = price
    df["cost"] = cost
    return df


def bill(intervals, catalog=None, *, until: float | None = None, market=None) -> xr.Dataset:
    """Totals by instance type, zone and market (see the module docstring for the meter).

    Returns
    -------
    xarray.Dataset
        Dims ``itype``, ``zone``, ``market``; variables ``cost`` (USD), ``billed_seconds`` and
        ``instance_seconds`` (s), ``instances`` (count); ``total_cost`` (USD, scalar).
    """
    return bill_totals(bill_instances(intervals, catalog, until=until, market=market))


def bill_totals(per: pd.DataFrame) -> xr.Dataset:
    """The totals of :func:`bill` from a per-instance bill (:func:`bill_instances`), for a caller
    that already holds one."""
    ti, itypes = pd.factorize(per["itype"], sort=True)
    tz, zones = pd.factorize(per["zone"], sort=True)
    tm = per["market"].map({m: k for k, m in enumerate(MARKETS)}).to_numpy(dtype=int)
    shape = (len(itypes), len(zones), len(MARKETS))
    flat = np.ravel_multi_index((ti, tz, tm), shape) if len(per) else np.zeros(0, dtype=int)
    size = int(np.prod(shape))

    def total(values):
        return np.bincount(flat, weights=np.asarray(values, dtype=float), minlength=size).reshape(shape)

    dims = ("itype", "zone", "market")
    ds = xr.Dataset(
        {
            "cost": (dims, total(per["cost"]), {"units": "USD"}),
            "billed_seconds": (dims, total(per["billed_seconds"]), {"units": "s"}),
            "instance_seconds": (dims, total(per["seconds"]), {"units": "s"}),
            "instances": (dims, total(np.ones(len(per))).astype(int), {"units": "count"}),
        },
        coords={"itype": list(itypes), "zone": list(zones), "market": list(MARKETS)},
        attrs={"meter": "per second, minimum charge per instance (catalog min_charge)"},
    )
    ds["total_cost"] = xr.DataArray(float(per["cost"].sum()), attrs={"units": "USD"})
    return ds


def intervals_from_log(log, *, until: float | None = None) -> pd.DataFrame:
    """Instance lifetimes (for :func:`bill`) from a lifecycle event log.

    Parameters
    ----------
    log : DataFrame or Dataset
        One row per lifecycle change with ``time``, ``instance``, ``itype`` (or ``type``),
        ``zone``, ``state`` and optionally ``market`` (default on-demand).
    until : float, optional
        Kept for symmetry with :func:`bill`; open instances get ``end`` NaN.

    Returns
    -------
    pandas.DataFrame
        ``instance, itype, zone, market, start, end``: ``start`` is the first ``booting``,
        ``running`` or ``draining`` record, ``end`` the first ``terminated`` one (NaN if none).
        Instances never granted (refused requests) are left out.
    """
    df = _frame(log)
    df = df.rename(columns={"type": "itype", "instance_type": "itype"})
    need = ("time", "instance", "itype", "zone", "state")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise HpclabError(f"log lacks column(s) {', '.join(missing)}; need {', '.join(need)} (+ market)")
    if "market" not in df.columns:
        df = df.assign(market="on-demand")
    df = df.sort_values("time", kind="stable")
    granted = df[df["state"].isin(_BILLED_STATES)]
    first = granted.groupby("instance", sort=True).first()
    ends = df[df["state"] == "terminated"].groupby("instance")["time"].first()
    out = pd.DataFrame({
        "instance": first.index.to_numpy(),
        "itype": first["itype"].to_numpy(),
        "zone": first["zone"].to_numpy(),
        "market": first["market"].to_numpy(),
        "start": first["time"].to_numpy(dtype=float),
        "end": ends.reindex(first.index).to_numpy(dtype=float),
    })
    return out
