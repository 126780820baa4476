"""One workload on the virtual clock across spot markets and policies that know them.

:func:`market_sweep` runs the same tasks under independent or correlated reclaims
(:class:`~hpclab.elastic.faults.SpotMarket`), with or without a protection period, with a share
of spot, with or without diversification across markets (``market_cap``) and on-demand fallback
when a wave hits (``wave_fallback``), by a deadline, over several seeds; it returns one
``xarray.Dataset`` so notebooks and the screening map (:func:`hpclab.workloads.screening.cost_map`)
read numbers from one place.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_positive
from hpclab.elastic.faults import MARKET_MODELS, SpotMarket
from hpclab.elastic.state import PoolLimits

__all__ = ["market_sweep"]

_OUT = {"cost": "USD", "makespan": "h", "met_deadline": "1", "reclaims": "count",
        "hard_kills": "count", "work_redone": "core-h", "peak_cores": "cores",
        "reclaims_clustered": "1"}


def _axis(name, values):
    vals = list(np.atleast_1d(np.asarray(values, dtype=object)))
    if not vals:
        raise HpclabError(f"{name} must list at least one value")
    return vals


def market_sweep(workload, limits: PoolLimits, *, model=MARKET_MODELS, option="none",
                 spot_share=0.9, market_cap=None, wave_fallback=False, deadline_hours=24.0,
                 seeds=(0,), policy: str = "global-spot", reclaim_scale: float = 1.0,
                 reclaim_rate: float | None = None, catalog=None, tick: float = 60.0,
                 **simulate_kw) -> xr.Dataset:
    """Cost, makespan and reclaims of ``workload`` over spot markets and market-aware policies.

    Parameters
    ----------
    workload, limits
        As for :func:`hpclab.elastic.simulate.simulate`.
    model, option, spot_share, market_cap, wave_fallback, deadline_hours, seeds
        Each a value or a list (an axis of the result): the market model (``"correlated"``,
        ``"independent"``), the spot option (``"none"``, ``"protected-1h"``), the policy's spot
        share, its share cap per (type, zone) market (``None``: no cap, written 0 in the
        coordinate), its on-demand fallback on a wave, the deadline (h: the policy aims to finish
        the work ``deadline - boot - longest task`` after the start, and ``met_deadline`` says
        whether the run did) and the seed.
    policy : {"global-spot", "spot-first"}
    reclaim_scale, reclaim_rate
        As for ``simulate`` (a factor on the zones' mean rates, or one rate per second).

    Returns
    -------
    xarray.Dataset
        Dims ``model, option, spot_share, market_cap, wave_fallback, deadline, seed``: ``cost``
        (USD), ``makespan`` (h), ``met_deadline`` (0/1), ``reclaims``, ``hard_kills``,
        ``work_redone`` (reference core-hours), ``peak_cores``, ``reclaims_clustered`` (share of
        reclaims within 3 minutes of another in the same market).
    """
    from hpclab.elastic.faults import clustered_share
    from hpclab.elastic.policies import make_policy
    from hpclab.elastic.simulate import _catalog, simulate

    cat = _catalog(catalog)
    if policy not in ("global-spot", "spot-first"):
        raise HpclabError(f"policy must be global-spot or spot-first, got {policy!r}")
    axes = {"model": _axis("model", model), "option": _axis("option", option),
            "spot_share": _axis("spot_share", spot_share), "market_cap": _axis("market_cap", market_cap),
            "wave_fallback": _axis("wave_fallback", wave_fallback),
            "deadline": _axis("deadline_hours", deadline_hours), "seed": _axis("seeds", seeds)}
    for d in axes["deadline"]:
        check_positive("deadline_hours", float(d))
    for o in axes["option"]:
        cat.spot_option(o)
    boot = max(cat.instance(t).boot_time for t in limits.types)
    slowest = min(cat.generation(cat.instance(t).generation).speed_factor for t in limits.types)
    longest = float(np.max(workload.work)) / slowest
    shape = tuple(len(v) for v in axes.values())
    out = {k: np.full(shape, np.nan) for k in _OUT}
    for idx in itertools.product(*(range(n) for n in shape)):
        m, o, s, c, f, d, seed = (axes[k][i] for k, i in zip(axes, idx))
        target = max(float(d) * 3600.0 - boot - longest, 60.0)
        kw = {"spot_share": float(s), "market_cap": None if c is None else float(c),
              "wave_fallback": bool(f)}
        name = policy if float(s) > 0 or policy != "global-spot" else "global"  # no spot: on-demand
        pol = make_policy(name, catalog=cat, target_duration=target, hysteresis=True,
                          default_task_seconds=float(np.mean(workload.work)), **kw)
        r = simulate(pol, workload, limits, catalog=cat, tick=tick, seed=int(seed),
                     reclaim_scale=reclaim_scale, reclaim_rate=reclaim_rate,
                     market=SpotMarket(str(m), option=str(o)), **simulate_kw)
        sm = r.summary
        ins = r.instances
        hit = np.isfinite(ins["notice"].to_numpy())
        row = {"cost": sm["cost_usd"], "makespan": sm["makespan_s"] / 3600.0,
               "met_deadline": float(sm["makespan_s"] <= float(d) * 3600.0),
               "reclaims": sm["reclaims"], "hard_kills": sm["hard_kills"],
               "work_redone": sm["work_redone"] / 3600.0, "peak_cores": sm["peak_cores"],
               "reclaims_clustered": clustered_share(ins["notice"].to_numpy()[hit],
                                                     (ins["itype"] + "@" + ins["zone"]).to_numpy()[hit])}
        for k, v in row.items():
            out[k][idx] = v
    coords = dict(axes)
    coords["market_cap"] = [0.0 if c is None else float(c) for c in axes["market_cap"]]
    coords["spot_share"] = [float(v) for v in axes["spot_share"]]
    coords["deadline"] = ("deadline", [float(v) for v in axes["deadline"]], {"units": "h"})
    coords["wave_fallback"] = [bool(v) for v in axes["wave_fallback"]]
    coords["seed"] = [int(v) for v in axes["seed"]]
    coords["model"] = [str(v) for v in axes["model"]]
    coords["option"] = [str(v) for v in axes["option"]]
    ds = xr.Dataset({k: (tuple(axes), v, {"units": _OUT[k]}) for k, v in out.items()}, coords=coords)
    ds.attrs.update({"policy": policy, "reclaim_scale": float(reclaim_scale),
                     "tasks": int(workload.tasks), "market_cap_0": "no cap"})
    return ds
