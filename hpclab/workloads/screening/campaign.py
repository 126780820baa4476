"""Scaling a screen to a campaign: N molecules by a deadline, on spot or on-demand, in one zone
or across all of them.

The inputs are *measured*: :func:`campaign_inputs` turns a real screen into the empirical
per-molecule cost distribution (core-seconds per molecule, all stages, the 3D survivors mixed in
at their measured fraction) and its per-stage breakdown. :func:`estimate_campaign` then answers, for every
combination of library size, deadline, spot share and zone scope (inputs broadcast):

* how many cores, of which instance types, in which zones and markets;
* the makespan and the bill.

The model (analytic; see ``docs/screening.md``):

* work ``W = N c`` reference core-seconds, ``c`` the mean per-molecule cost measured on cores of
  speed ``sample_speed`` (1 = the catalog's reference generation), with the 3D stage scaled to
  ``conformers`` linearly in the number of conformers and to ``survivor_fraction`` if given;
* a task is a batch of ``batch_size`` molecules; a spot reclaim (rate ``lambda_z`` per instance,
  catalog zones) loses half a task and a replacement boot ``B``, so spot cores in zone ``z`` do
  useful work a fraction ``eta = 1 / (1 + lambda_z (tau / 2 + B))`` of the time (``tau`` the mean
  task time on that core);
* the useful rate needed is ``R = W / (D - B - t_tail)`` reference cores, ``t_tail`` the 99th
  percentile task time (the last task started at the end still has to finish);
  ``spot_share`` of it is bought on the spot market, the rest on-demand, each filled greedily
  from the offers ``(type, zone)`` cheapest per unit of useful work ``p / (s eta)`` first, up
  to each zone's capacity (catalog), whole instances;
* makespan ``T = B + W / R_got + t_tail`` and bill, per second (catalog ``price_*``,
  ``min_charge``), ``sum_i n_i p_i [max(B + W / R_got, min_charge) + 0.01 t_tail]``: every core
  is paid until the work is done; during the tail only the stragglers' instances (taken as 1 %
  of the pool, the tasks above the 99th percentile) are still running. If the capacity cannot
  supply ``R``, ``feasible`` is false and ``T`` is what the whole capacity achieves.

:func:`simulate_campaign` runs the same campaign on the virtual clock
(:mod:`hpclab.elastic.simulate`): tasks drawn from the same measured costs, a real autoscaling
policy, boot delays, spot reclaims and per-second billing; the two answers sit side by side.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hpclab._deprecated import deprecated
from hpclab._validate import HpclabError, check_choice, check_positive
from hpclab.elastic.billing import charge, unit_price
from hpclab.elastic.state import MARKETS
from hpclab.workloads.screening.pipeline import STAGES

__all__ = ["campaign_inputs", "estimate_campaign", "allocation", "pareto_front", "article_scenario",
           "simulate_campaign", "cost_map", "cpu_types", "ZONE_SCOPES"]

ZONE_SCOPES = ("one", "global")
_TAIL_SHARE = 0.01  # share of the pool still running during the tail (tasks above the p99)


def cpu_types(cat=None) -> list[str]:
    """Instance types without GPUs: the ones a CPU screen can use (any generation)."""
    cat = cat or _catalog()
    return [n for n, i in cat.instances.items() if i.gpus == 0]


def _catalog():
    from hpclab import catalog

    return catalog.default()


def campaign_inputs(result: xr.Dataset, *, sample_speed: float = 1.0) -> xr.Dataset:
    """The measured inputs of the campaign model, from a real screen.

    Parameters
    ----------
    result : xarray.Dataset
        A screen (:func:`~.runner.run_screen`).
    sample_speed : float
        Per-core speed of the machine it ran on relative to the catalog's reference generation
        (speed factor 1). Unknown for a laptop; 1 by default (an assumption the docs state).

    Returns
    -------
    xarray.Dataset
        ``cost_seconds(sample)`` per-molecule cost (core-seconds, all stages),
        ``stage_seconds(stage, sample)`` (NaN where a stage did not run), attrs
        ``survivor_fraction``, ``conformers`` (of the measured 3D stage), ``sample_speed``.
    """
    import json

    check_positive("sample_speed", sample_speed)
    t = np.vstack([result[f"t_{s}"].values.astype(float) for s in STAGES])
    keep = np.isfinite(t[0])
    t = t[:, keep]
    params = json.loads(result.attrs.get("params", "{}"))
    return xr.Dataset(
        {"cost_seconds": ("sample", np.nansum(t, axis=0), {"units": "s",
                          "description": "measured core-seconds per molecule, all stages"}),
         "stage_seconds": (("stage", "sample"), t, {"units": "s"})},
        coords={"stage": list(STAGES), "sample": np.arange(t.shape[1])},
        attrs={"survivor_fraction": float(np.isfinite(t[-1]).mean()),
               "conformers": int(params.get("n_conformers", 3)), "sample_speed": float(sample_speed),
               "target": result.attrs.get("target", "")})


def _per_molecule(inputs: xr.Dataset, conformers, survivor_fraction) -> tuple[np.ndarray, np.ndarray]:
    """Per-molecule cost samples (reference core-seconds) after scaling the 3D stage."""
    st = inputs["stage_seconds"].values
    speed = inputs.attrs.get("sample_speed", 1.0)
    cheap = np.nansum(st[:-1], axis=0)
    t3 = st[-1][np.isfinite(st[-1])]
    if t3.size == 0:
        t3 = np.zeros(1)
    k = inputs.attrs.get("conformers", 3)
    scale = 1.0 if conformers is None else conformers / k
    f = inputs.attrs["survivor_fraction"] if survivor_fraction is None else survivor_fraction
    return cheap * speed, t3 * scale * speed, float(f)


#: above this many molecules per batch a batch's time is drawn from the normal law of the sum
_EXACT_BATCH = 1000


def _task_times(cheap, t3, f, batch_size, rng, draws=400):
    """Bootstrap task (batch) times: sum of batch_size molecules, each a 3D survivor with prob f.

    Up to ``_EXACT_BATCH`` molecules per batch the molecules are resampled one by one (in chunks
    of at most ~1e6 draws, so memory stays bounded); beyond that the sum of ``b`` independent
    per-molecule costs ``X = cheap + B t3`` (``B`` Bernoulli(f)) is drawn from its central-limit
    normal law: mean ``b E[X]``, variance ``b Var[X]`` with ``E[X] = E[c] + f E[t3]`` and
    ``Var[X] = Var[c] + f E[t3^2] - (f E[t3])^2``, clipped at zero.
    """
    if batch_size > _EXACT_BATCH:
        t3_m = float(t3.mean()) if t3.size else 0.0
        t3_sq = float((t3 ** 2).mean()) if t3.size else 0.0
        mean = float(cheap.mean()) + f * t3_m
        var = float(cheap.var()) + f * t3_sq - (f * t3_m) ** 2
        out = rng.normal(batch_size * mean, np.sqrt(max(batch_size * var, 0.0)), draws)
        return np.maximum(out, 0.0)
    out = np.empty(draws)
    step = max(1, 1_000_000 // batch_size)
    for lo in range(0, draws, step):
        n = min(step, draws - lo)
        i = rng.integers(0, cheap.size, (n, batch_size))
        j = rng.integers(0, t3.size, (n, batch_size)) if t3.size else np.zeros((n, batch_size), int)
        surv = rng.random((n, batch_size)) < f
        t3_j = t3[j] if t3.size else 0.0
        out[lo:lo + n] = (cheap[i] + surv * t3_j).sum(axis=1)
    return out


def _offers(cat, types, zones):
    rows = []
    for z in zones:
        zone = cat.zone(z)
        for t in types:
            inst = cat.instance(t)
            cap = zone.capacity.get(t, 0)
            if cap <= 0:
                continue
            rows.append(dict(itype=t, zone=z, cores=inst.cores, capacity=cap,
                             speed=cat.generation(inst.generation).speed_factor,
                             boot=inst.boot_time, min_charge=inst.min_charge,
                             reclaim=zone.spot_reclaim_rate,
                             price={m: unit_price(inst, m) / inst.cores for m in MARKETS}))
    return rows


def _fill(offers, market, need, used, tau_ref, eta_on):
    """Greedy fill of ``need`` (reference cores of useful work, array) on one market.

    Returns per-offer cores taken (list of arrays), the useful rate got, the cost rate (USD/s).
    """
    def eff(o):
        eta = 1.0 / (1.0 + o["reclaim"] * (tau_ref / o["speed"] / 2 + o["boot"])) if eta_on else 1.0
        return o["speed"] * eta

    order = sorted(range(len(offers)), key=lambda i: offers[i]["price"][market] / eff(offers[i]))
    remaining = need.copy()
    taken = [np.zeros_like(need) for _ in offers]
    got = np.zeros_like(need)
    rate = np.zeros_like(need)
    for i in order:
        o = offers[i]
        e = eff(o)
        free = np.maximum(o["capacity"] - used[i], 0)
        want = np.ceil(np.maximum(remaining, 0) / e / o["cores"]) * o["cores"]
        take = np.minimum(want, np.floor(free / o["cores"]) * o["cores"])
        taken[i] = take
        used[i] = used[i] + take
        got = got + take * e
        rate = rate + take * o["price"][market]
        remaining = remaining - take * e
    return taken, got, rate


def estimate_campaign(inputs: xr.Dataset, n_molecules=1e6, deadline_hours=24.0, spot_share=0.0,
                      zones="global", *, types=None, batch_size: int = 100, conformers: int | None = None,
                      survivor_fraction: float | None = None, home_zone: str | None = None,
                      catalog=None, seed: int = 0) -> xr.Dataset:
    """Cores, makespan and cost of screening ``n_molecules`` by ``deadline_hours``.

    Parameters
    ----------
    inputs : xarray.Dataset
        From :func:`campaign_inputs` (the measured per-molecule cost).
    n_molecules, deadline_hours, spot_share : array_like
        Broadcast against each other (dims ``n_molecules``, ``deadline``, ``spot_share``).
    zones : {'one', 'global'} or sequence of them
        ``one``: only ``home_zone`` (default: the catalog's first zone); ``global``: every zone.
    types : list of str, optional
        Instance types allowed (default: every CPU type, any generation).
    batch_size : int
        Molecules per task (what a spot reclaim loses half of, on average).
    conformers : int, optional
        Scale the measured 3D stage to this many conformers (linear in conformers).
    survivor_fraction : float, optional
        Override the measured fraction of molecules reaching the 3D stage (1: all of them).

    Returns
    -------
    xarray.Dataset
        Dims ``(zones, n_molecules, deadline, spot_share)``: ``cores``, ``cores_spot``,
        ``makespan`` (h), ``cost`` (USD), ``cost_on_demand_same`` (the same cores all on-demand,
        USD), ``feasible``, ``work`` (reference core-hours); attrs: the model's inputs.
    """
    cat = catalog or _catalog()
    types = list(types) if types is not None else cpu_types(cat)
    if not types:
        raise HpclabError("types must name at least one instance type")
    for t in types:
        cat.instance(t)
    scopes = [zones] if isinstance(zones, str) else list(zones)
    for s in scopes:
        check_choice("zones", s, ZONE_SCOPES)
    home = home_zone or next(iter(cat.zones))
    cat.zone(home)
    batch_size = check_positive("batch_size", batch_size, integer=True)
    if conformers is not None:
        check_positive("conformers", conformers, integer=True)
    if survivor_fraction is not None and not 0 <= survivor_fraction <= 1:
        raise HpclabError(f"survivor_fraction must be in [0, 1], got {survivor_fraction!r}")
    n = np.atleast_1d(np.asarray(n_molecules, dtype=float))
    d = np.atleast_1d(np.asarray(deadline_hours, dtype=float))
    s = np.atleast_1d(np.asarray(spot_share, dtype=float))
    if np.any(n <= 0):
        raise HpclabError("n_molecules must be > 0")
    if np.any(d <= 0):
        raise HpclabError("deadline_hours must be > 0")
    if np.any((s < 0) | (s > 1)):
        raise HpclabError("spot_share must be in [0, 1]")
    N, D, S = np.meshgrid(n, d * 3600.0, s, indexing="ij")
    cheap, t3, f = _per_molecule(inputs, conformers, survivor_fraction)
    rng = np.random.default_rng(seed)
    tasks = _task_times(cheap, t3, f, batch_size, rng)
    tau = float(tasks.mean())
    c_mol = float(cheap.mean() + f * t3.mean())
    W = N * c_mol
    out = {k: [] for k in ("cores", "cores_spot", "makespan", "cost", "cost_on_demand_same",
                           "feasible")}
    for scope in scopes:
        zlist = [home] if scope == "one" else list(cat.zones)
        offers = _offers(cat, types, zlist)
        if not offers:
            raise HpclabError(f"no capacity for types {', '.join(types)} in zones {', '.join(zlist)}")
        slowest = min(o["speed"] for o in offers)
        tail = float(np.percentile(tasks, 99)) / slowest
        boot = max(o["boot"] for o in offers)
        window = np.maximum(D - boot - tail, 1.0)
        need = W / window
        used = [np.zeros_like(need) for _ in offers]
        t_spot, g_spot, r_spot = _fill(offers, "spot", need * S, used, tau, True)
        t_od, g_od, r_od = _fill(offers, "on-demand", need - g_spot, used, tau, False)
        got = g_spot + g_od
        feasible = got >= need * (1 - 1e-9)
        makespan = boot + W / np.maximum(got, 1e-300) + tail
        cores = sum(t_spot) + sum(t_od)
        min_charge = max(o["min_charge"] for o in offers)
        od_rate = sum(tk * o["price"]["on-demand"] for tk, o in zip(t_spot, offers)) + r_od

        def billed_at(rate):  # the meter: the whole pool until the work is done, then the tail
            return charge(makespan - tail, rate, min_charge) + _TAIL_SHARE * charge(tail, rate)

        cost = billed_at(r_spot + r_od)
        out["cores"].append(cores)
        out["cores_spot"].append(sum(t_spot))
        out["makespan"].append(makespan / 3600.0)
        out["cost"].append(cost)
        out["cost_on_demand_same"].append(billed_at(od_rate))
        out["feasible"].append(feasible)
    dims = ("zones", "n_molecules", "deadline", "spot_share")
    units = {"cores": "cores", "cores_spot": "cores", "makespan": "h", "cost": "USD",
             "cost_on_demand_same": "USD", "feasible": "1"}
    ds = xr.Dataset({k: (dims, np.array(v), {"units": units[k]}) for k, v in out.items()},
                    coords={"zones": scopes, "n_molecules": n,
                            "deadline": ("deadline", d, {"units": "h"}), "spot_share": s})
    ds["work"] = (("n_molecules",), n * c_mol / 3600.0, {"units": "core-hours",
                  "description": "reference core-hours of screening"})
    ds.attrs.update({"engine": "analytic", "cost_per_molecule_s": c_mol, "task_mean_s": tau,
                     "task_p99_s": float(np.percentile(tasks, 99)), "survivor_fraction": f,
                     "batch_size": batch_size, "types": ",".join(types), "home_zone": home,
                     "conformers": int(conformers or inputs.attrs.get("conformers", 3))})
    return ds


campaign = deprecated("hpclab.workloads.screening.campaign", "campaign",
                      "hpclab.workloads.screening.estimate_campaign", estimate_campaign)


def allocation(inputs: xr.Dataset, n_molecules: float, deadline_hours: float, spot_share: float,
               zones: str = "global", **kwargs) -> xr.Dataset:
    """Which instance types, zones and markets one campaign point uses (dims ``offer``)."""
    cat = kwargs.pop("catalog", None) or _catalog()
    types = kwargs.pop("types", None) or cpu_types(cat)
    home = kwargs.get("home_zone") or next(iter(cat.zones))
    ds = estimate_campaign(inputs, n_molecules, deadline_hours, spot_share, zones, types=types, catalog=cat,
                  **kwargs)
    zlist = [home] if zones == "one" else list(cat.zones)
    offers = _offers(cat, types, zlist)
    cheap, t3, f = _per_molecule(inputs, kwargs.get("conformers"), kwargs.get("survivor_fraction"))
    need = ds.attrs["cost_per_molecule_s"] * n_molecules / max(
        deadline_hours * 3600 - max(o["boot"] for o in offers)
        - ds.attrs["task_p99_s"] / min(o["speed"] for o in offers), 1.0)
    used = [np.zeros(1) for _ in offers]
    t_spot, g_spot, _ = _fill(offers, "spot", np.array([need * spot_share]), used,
                              ds.attrs["task_mean_s"], True)
    t_od, _, _ = _fill(offers, "on-demand", np.array([need]) - g_spot, used, ds.attrs["task_mean_s"],
                       False)
    labels = [f"{o['itype']}@{o['zone']}" for o in offers]
    return xr.Dataset(
        {"spot": ("offer", np.array([t[0] for t in t_spot]), {"units": "cores"}),
         "on_demand": ("offer", np.array([t[0] for t in t_od]), {"units": "cores"}),
         "usd_per_core_hour_spot": ("offer", [o["price"]["spot"] * 3600 for o in offers],
                                    {"units": "USD/h"}),
         "usd_per_core_hour_on_demand": ("offer", [o["price"]["on-demand"] * 3600 for o in offers],
                                         {"units": "USD/h"}),
         "speed": ("offer", [o["speed"] for o in offers], {"units": "1"})},
        coords={"offer": labels, "itype": ("offer", [o["itype"] for o in offers]),
                "zone": ("offer", [o["zone"] for o in offers])})


def pareto_front(makespan, cost) -> np.ndarray:
    """Indices of the points no other point beats on both makespan and cost (sorted by makespan)."""
    m = np.asarray(makespan, dtype=float).ravel()
    c = np.asarray(cost, dtype=float).ravel()
    ok = np.flatnonzero(np.isfinite(m) & np.isfinite(c))
    order = ok[np.lexsort((c[ok], m[ok]))]
    front, best = [], np.inf
    for i in order:
        if c[i] < best:
            front.append(i)
            best = c[i]
    return np.array(front, dtype=int)


def article_scenario(inputs: xr.Dataset, *, cores_wanted: float = 150_000,
                     n_molecules: float | None = None, deadline_hours: float = 1.5,
                     conformers: int = 300, survivor_fraction: float = 1.0, spot_share: float = 0.9,
                     batch_size: int = 10, catalog=None) -> xr.Dataset:
    """The article's loosely coupled claim as a scenario: more than 100,000 cores on call, at
    about a third of the cost of on-demand capacity in one place.

    Compares two ways to screen the same library by the same deadline:

    * ``baseline``: on-demand only, one zone, one instance type (the older generation
      ``ecs.c7.8xlarge``, what a fixed on-demand fleet in one place looks like);
    * ``elastic``: ``spot_share`` on spot, every CPU generation, every zone, scheduled globally.

    The library is sized (unless ``n_molecules`` is given) so that finishing by the deadline
    takes ``cores_wanted`` reference cores (speed factor 1; the newer generations chosen are
    faster, so fewer physical cores): ``N = cores_wanted (D - B - t_tail) / c``, with ``c``
    the measured per-molecule cost, its 3D stage scaled to ``conformers`` and run on a
    ``survivor_fraction`` of the molecules (default: every molecule, 300 conformers; with the
    cheap funnel measured here even billions of molecules need far fewer cores, which is one of
    the assumptions the claim rests on).

    Returns a Dataset (dim ``setup``) with cores, makespan, cost, feasibility, and attrs
    ``claim_cores`` (elastic gets >= 100,000 cores and meets the deadline), ``claim_cost``
    (its cost is 0.2-0.45 of the baseline's: "about a third"), ``cost_ratio``, ``n_molecules``.
    """
    cat = catalog or _catalog()
    kw = dict(conformers=conformers, survivor_fraction=survivor_fraction, catalog=cat,
              batch_size=batch_size)
    if n_molecules is None:
        probe = estimate_campaign(inputs, 1.0, deadline_hours, spot_share, "global", **kw)
        offers_boot = max(cat.instance(t).boot_time for t in cpu_types(cat))
        window = deadline_hours * 3600.0 - offers_boot - probe.attrs["task_p99_s"]
        n_molecules = float(check_positive("cores_wanted", cores_wanted) * max(window, 1.0)
                            / probe.attrs["cost_per_molecule_s"])
    base = estimate_campaign(inputs, n_molecules, deadline_hours, 0.0, "one", types=["ecs.c7.8xlarge"], **kw)
    elastic = estimate_campaign(inputs, n_molecules, deadline_hours, spot_share, "global", **kw)
    sel = dict(zones=0, n_molecules=0, deadline=0, spot_share=0)
    b, e = base.isel(sel), elastic.isel(sel)
    ds = xr.Dataset(
        {k: ("setup", [float(b[k]), float(e[k])], {"units": base[k].attrs["units"]})
         for k in ("cores", "cores_spot", "makespan", "cost", "feasible")},
        coords={"setup": ["baseline", "elastic"]})
    ratio = float(e["cost"]) / float(b["cost"])
    ds.attrs.update({
        "n_molecules": float(n_molecules), "deadline_hours": deadline_hours,
        "conformers": conformers, "survivor_fraction": survivor_fraction, "spot_share": spot_share,
        "batch_size": batch_size, "cost_per_molecule_s": elastic.attrs["cost_per_molecule_s"],
        "work_core_hours": float(base["work"][0]), "cost_ratio": ratio,
        "claim_cores": bool(float(e["cores"]) >= 1e5 and bool(e["feasible"])),
        "claim_cost": bool(0.2 <= ratio <= 0.45),
        "baseline_feasible": bool(b["feasible"]),
    })
    return ds


def _campaign_workload(inputs, n_molecules, batch_size, max_tasks, conformers, survivor_fraction, seed):
    """The campaign's tasks for the virtual clock: batches of ``batch_size`` molecules, their work
    a bootstrap of measured batch costs (reference core-seconds), all submitted at time 0."""
    from hpclab.elastic.simulate import make_workload

    n_tasks = int(np.ceil(n_molecules / batch_size))
    if n_tasks > max_tasks:
        raise HpclabError(f"n_molecules / batch_size gives {n_tasks:,} tasks, more than max_tasks "
                          f"({max_tasks:,}); raise batch_size")
    cheap, t3, f = _per_molecule(inputs, conformers, survivor_fraction)
    rng = np.random.default_rng(seed)
    pool = _task_times(cheap, t3, f, batch_size, rng, draws=min(n_tasks, 20_000))
    work = pool[rng.integers(0, pool.size, n_tasks)] if n_tasks > pool.size else pool[:n_tasks]
    return make_workload(duration="empirical", samples=work, arrival="burst", seed=seed), work


def cost_map(inputs: xr.Dataset, *, cores_wanted: float = 5_000, deadline_hours=(1.5, 6.0),
             spot_share=(0.5, 0.8, 0.95), option=("none", "protected-1h"),
             model=("independent", "correlated"), seeds=(0, 1), reclaim_scale: float = 1.0,
             market_cap=None, conformers: int = 300, survivor_fraction: float | None = 1.0,
             max_tasks: int = 20_000, band=(0.2, 0.45), catalog=None) -> xr.Dataset:
    """Where "about a third of the cost" holds: the article's comparison on the virtual clock
    over spot share, protection period, reclaim correlation and deadline.

    The library is sized as in :func:`article_scenario` so that the first deadline takes
    ``cores_wanted`` reference cores (the ratio hardly depends on the scale; smaller runs are
    faster); the elastic setup (every CPU type and zone, ``global-spot`` with scale-down
    hysteresis, ``market_cap`` if given) runs on the virtual clock for every combination and
    seed (:func:`hpclab.elastic.sweep.market_sweep`); the baseline is on-demand in one zone on
    ``ecs.c7.8xlarge`` (:func:`estimate_campaign`, no reclaims there).

    ``market_cap`` may be a list (``None`` for no cap): the result then has a ``market_cap`` dim
    (0 = no cap).

    Returns
    -------
    xarray.Dataset
        Dims ``model, option, spot_share, deadline`` (and ``market_cap`` if a list): ``cost_ratio`` (mean over seeds of the
        elastic cost over the baseline's), ``met_deadline`` (share of seeds that finished by the
        deadline), ``holds`` (ratio within ``band`` and every seed on time), ``cost`` (USD),
        ``makespan`` (h, mean), ``reclaims`` (mean); attrs: ``n_molecules``, ``baseline_cost``,
        ``reclaim_scale``, ``band``.
    """
    from hpclab.elastic.simulate import campaign_limits
    from hpclab.elastic.sweep import market_sweep

    cat = catalog or _catalog()
    deadlines = [float(d) for d in np.atleast_1d(deadline_hours)]
    art = article_scenario(inputs, cores_wanted=cores_wanted, deadline_hours=min(deadlines),
                           conformers=conformers, survivor_fraction=survivor_fraction, catalog=cat)
    n = art.attrs["n_molecules"]
    batch = max(int(np.ceil(n / max_tasks)), 1)
    workload, _ = _campaign_workload(inputs, n, batch, max_tasks, conformers, survivor_fraction, 0)
    types = cpu_types(cat)
    quota = int(sum(cat.zone(z).capacity.get(t, 0) for z in cat.zones for t in types))
    limits = campaign_limits(quota, types=types, zones=list(cat.zones), catalog=cat)
    sweep = market_sweep(workload, limits, model=list(model), option=list(option),
                         spot_share=list(spot_share), market_cap=market_cap, deadline_hours=deadlines,
                         seeds=list(seeds), reclaim_scale=reclaim_scale, catalog=cat)
    sweep = sweep.isel(wave_fallback=0, drop=True)
    if sweep.sizes["market_cap"] == 1:
        sweep = sweep.isel(market_cap=0, drop=True)
    base = estimate_campaign(inputs, n, deadlines, 0.0, "one", types=["ecs.c7.8xlarge"], conformers=conformers,
                    survivor_fraction=survivor_fraction, batch_size=batch, catalog=cat)
    base_cost = base["cost"].isel(zones=0, n_molecules=0, spot_share=0).values  # per deadline
    ratio = sweep["cost"] / xr.DataArray(base_cost, dims="deadline", coords={"deadline": sweep["deadline"]})
    met = sweep["met_deadline"].mean("seed")
    r = ratio.mean("seed")
    ds = xr.Dataset({
        "cost_ratio": (r.dims, r.values, {"units": "1", "long_name": "elastic cost / baseline cost"}),
        "met_deadline": (met.dims, met.values, {"units": "1", "long_name": "share of seeds on time"}),
        "holds": (r.dims, ((r >= band[0]) & (r <= band[1]) & (met >= 1.0)).values,
                  {"units": "1", "long_name": f"cost ratio in {band} and on time"}),
        "cost": (r.dims, sweep["cost"].mean("seed").values, {"units": "USD"}),
        "makespan": (r.dims, sweep["makespan"].mean("seed").values, {"units": "h"}),
        "reclaims": (r.dims, sweep["reclaims"].mean("seed").values, {"units": "count"}),
    }, coords={k: sweep[k] for k in r.dims})
    ds.attrs.update({"n_molecules": float(n), "batch_size": batch, "tasks": int(workload.tasks),
                     "baseline_cost": [float(c) for c in base_cost], "reclaim_scale": float(reclaim_scale),
                     "band": list(band), "seeds": len(list(seeds)), "cores_wanted": float(cores_wanted)})
    return ds


def simulate_campaign(inputs: xr.Dataset, n_molecules: float = 1e8, deadline_hours: float = 1.5,
                      spot_share: float = 0.9, zones: str = "global", *, policy=None,
                      types=None, batch_size: int | None = 100, conformers: int | None = None,
                      survivor_fraction: float | None = None, quota_cores: int | None = None,
                      home_zone: str | None = None, tick: float = 60.0, max_tasks: int = 2_000_000,
                      catalog=None, seed: int = 0, progress: bool = False) -> xr.Dataset:
    """The same campaign on the virtual clock (:func:`hpclab.elastic.simulate.simulate`).

    The tasks are batches of ``batch_size`` molecules whose work is drawn from the *measured*
    per-molecule costs (a bootstrap of batch sums, in reference core-seconds), all submitted at
    time 0. The policy (default: ``global-spot`` with ``spot_share``, or ``global`` on-demand
    when ``spot_share`` is 0, told the measured mean task time) sizes the pool to finish the held
    work within the deadline less the boot time and the slowest task; instances boot, spot instances are reclaimed at the
    catalog's rates (their running tasks are redone), and the bill is per second.

    ``batch_size=None`` takes the smallest batch that keeps the task count within ``max_tasks``
    (a campaign sized from measured costs can hold tens of millions of molecules, and how many
    depends on how fast this machine measured them).

    Returns
    -------
    xarray.Dataset
        Time series (dim ``time``, h): ``cores`` (by ``market``), ``molecules_done``,
        ``throughput`` (molecules/s), ``cost`` so far (USD); attrs: the simulator's summary
        (``makespan_h``, ``cost_usd``, ``peak_cores``, ``work_redone``, ``utilisation``, ...).
    """
    from hpclab.elastic.policies import make_policy
    from hpclab.elastic.simulate import campaign_limits, make_workload, simulate

    cat = catalog or _catalog()
    check_choice("zones", zones, ZONE_SCOPES)
    n_molecules = check_positive("n_molecules", n_molecules)
    max_tasks = check_positive("max_tasks", max_tasks, integer=True)
    if batch_size is None:
        batch_size = max(int(np.ceil(n_molecules / max_tasks)), 1)
    batch_size = check_positive("batch_size", batch_size, integer=True)
    deadline_hours = check_positive("deadline_hours", deadline_hours)
    if not 0 <= spot_share <= 1:
        raise HpclabError(f"spot_share must be in [0, 1], got {spot_share!r}")
    types = list(types) if types is not None else cpu_types(cat)
    home = home_zone or next(iter(cat.zones))
    zlist = [home] if zones == "one" else list(cat.zones)
    workload, work = _campaign_workload(inputs, n_molecules, batch_size, max_tasks, conformers,
                                        survivor_fraction, seed)
    boot = max(cat.instance(t).boot_time for t in types)
    target = max(deadline_hours * 3600.0 - boot - float(np.max(work)), 60.0)
    if quota_cores is None:
        quota_cores = int(sum(cat.zone(z).capacity.get(t, 0) for z in zlist for t in types))
    limits = campaign_limits(quota_cores, types=types, zones=zlist, catalog=cat)
    if policy is None:
        name = "global-spot" if spot_share > 0 else "global"
        kw = {"spot_share": spot_share} if spot_share > 0 else {}
        # the planner knows the measured mean task time: the policy sizes the pool from the start
        policy = make_policy(name, target_duration=target, catalog=cat,
                             default_task_seconds=float(work.mean()), **kw)
    res = simulate(policy, workload, limits, catalog=cat, tick=tick, seed=seed, progress=progress)
    ts = res.timeseries
    t_h = ts["time"].values / 3600.0
    done_mol = np.minimum(ts["done"].values * batch_size, n_molecules)
    dt = np.diff(ts["time"].values, prepend=ts["time"].values[:1])
    rate = np.divide(np.diff(done_mol, prepend=0.0), dt, out=np.zeros_like(dt, dtype=float), where=dt > 0)
    s = res.summary
    return xr.Dataset(
        {"cores": (("time", "market"), ts["cores"].values, {"units": "cores"}),
         "molecules_done": ("time", done_mol, {"units": "molecules"}),
         "throughput": ("time", rate, {"units": "molecules/s"}),
         "cost": ("time", ts["cost"].values, {"units": "USD"})},
        coords={"time": ("time", t_h, {"units": "h"}), "market": ts["market"].values},
        attrs={"engine": "simulate", "policy": s["policy"], "n_molecules": float(n_molecules),
               "tasks": s["tasks"], "completed": s["completed"], "batch_size": batch_size,
               "deadline_h": float(deadline_hours), "makespan_h": s["makespan_s"] / 3600.0,
               "cost_usd": s["cost_usd"], "peak_cores": s["peak_cores"],
               "work_redone_core_h": s["work_redone"] / 3600.0, "tasks_redone": s["tasks_redone"],
               "reclaims": s["reclaims"], "utilisation": s["utilisation"],
               "refusals": s["refusals"], "zones": zones, "spot_share": float(spot_share),
               "met_deadline": int(s["makespan_s"] <= deadline_hours * 3600.0 + 1e-6),
               "wall_s": s["wall_s"]})
