"""What a finished screen says: its quality per scoring stage, its cost per stage, its throughput.

Every function takes the Dataset returned by :func:`~.runner.run_screen` and returns a Dataset.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_positive
from hpclab.workloads.screening.metrics import enrichment_curve, enrichment_factor, roc_auc
from hpclab.workloads.screening.pipeline import STAGES

__all__ = ["SCORING_STAGES", "stage_scores", "quality", "stage_costs", "throughput"]

#: the rankings a screen produces, in funnel order
SCORING_STAGES = ("2d", "filters+2d", "3d")


def _valid(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(molecule=np.flatnonzero(ds["status"].values != "invalid_smiles"))


def stage_scores(ds: xr.Dataset) -> xr.Dataset:
    """The ranking score of every parsed molecule after each scoring stage (higher = better).

    * ``2d``: max Tanimoto to the reference actives;
    * ``filters+2d``: the same, with molecules failing the rule of five or PAINS ranked last;
    * ``3d``: the 3D survivors first, ordered by their O3A score, then the others as in
      ``filters+2d`` (a funnel: the costly stage re-ranks only what reached it).
    """
    v = _valid(ds)
    s2 = v["score_2d"].values.astype(float)
    params = json.loads(ds.attrs.get("params", "{}"))
    passed = v["pass_ro5"].values & ~(v["pains"].values & params.get("reject_pains", True))
    filt = np.where(passed, s2, s2 - 2.0)
    s3 = v["score_3d"].values.astype(float)
    surv = v["to_3d"].values & np.isfinite(s3)
    three = filt.copy()
    if surv.any():
        ranks = np.argsort(np.argsort(s3[surv], kind="mergesort"), kind="mergesort")
        three[surv] = 2.0 + (ranks + 1) / surv.sum()
    return xr.Dataset(
        {"score": (("stage", "molecule"), np.vstack([s2, filt, three]), {"units": "1",
                   "description": "ranking score after each stage (higher ranks first)"}),
         "is_active": ("molecule", v["is_active"].values.astype(bool))},
        coords={"stage": list(SCORING_STAGES), "molecule": v["molecule"].values,
                "id": ("molecule", v["id"].values)})


def quality(ds: xr.Dataset, fractions=(0.01, 0.05)) -> xr.Dataset:
    """ROC AUC, enrichment factors and the enrichment curve of each scoring stage.

    Returns a Dataset with ``roc_auc(stage)``, ``ef(stage, fraction)`` and
    ``recovered(stage, screened)`` (fraction of the actives found in the top ``screened``
    fraction of the ranked library). See :mod:`~.metrics` for the formulas.
    """
    sc = stage_scores(ds)
    y = sc["is_active"].values
    if y.all() or not y.any():
        raise HpclabError("the screen must contain both actives and inactives to measure quality "
                          "(screen a library with a target's hidden actives)")
    fractions = np.atleast_1d(np.asarray(fractions, dtype=float))
    screened = np.unique(np.r_[np.linspace(0, 1, 201), np.geomspace(1e-3, 1, 60)])
    auc, ef, rec = [], [], []
    for stage in SCORING_STAGES:
        s = sc["score"].sel(stage=stage).values
        auc.append(roc_auc(s, y))
        ef.append([enrichment_factor(s, y, f) for f in fractions])
        rec.append(enrichment_curve(s, y, screened)[1])
    n_act = int(y.sum())
    return xr.Dataset(
        {"roc_auc": ("stage", np.array(auc), {"units": "1"}),
         "ef": (("stage", "fraction"), np.array(ef), {"units": "1",
                "description": "enrichment factor: hit rate in the top fraction / overall hit rate"}),
         "recovered": (("stage", "screened"), np.array(rec), {"units": "1",
                       "description": "fraction of actives in the top 'screened' fraction"})},
        coords={"stage": list(SCORING_STAGES), "fraction": fractions, "screened": screened},
        attrs={"n_actives": n_act, "n_scored": int(y.size), "target": ds.attrs.get("target", ""),
               "ef_max_at_1pct": float(min(1 / 0.01, y.size / n_act))})


def stage_costs(ds: xr.Dataset) -> xr.Dataset:
    """Per-stage cost of the screen: samples, means, tails and throughput per core.

    Returns ``seconds(stage, molecule)`` (NaN where the stage did not run), ``cost_seconds
    (molecule)`` (a molecule's total: the empirical per-molecule task cost, which already mixes
    in the 3D survivors), and per stage ``mean_seconds``, ``p50/p99_seconds``, ``max_seconds``,
    ``molecules_per_second_per_core = 1 / mean_seconds`` and ``ran_fraction`` (the share of
    molecules that reached it; for ``3d`` the survivor fraction).
    """
    t = np.vstack([ds[f"t_{s}"].values.astype(float) for s in STAGES])
    ran = np.isfinite(t)
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in t])
        q = np.array([np.nanpercentile(r, [50, 99]) if np.isfinite(r).any() else [np.nan] * 2
                      for r in t])
        mx = np.array([np.nanmax(r) if np.isfinite(r).any() else np.nan for r in t])
    return xr.Dataset(
        {"seconds": (("stage", "molecule"), t, {"units": "s"}),
         "cost_seconds": ("molecule", np.nansum(t, axis=0), {"units": "s",
                          "description": "core-seconds a molecule cost, all stages"}),
         "mean_seconds": ("stage", mean, {"units": "s"}),
         "p50_seconds": ("stage", q[:, 0], {"units": "s"}),
         "p99_seconds": ("stage", q[:, 1], {"units": "s"}),
         "max_seconds": ("stage", mx, {"units": "s"}),
         "molecules_per_second_per_core": ("stage", 1.0 / mean, {"units": "1/s"}),
         "ran_fraction": ("stage", ran.mean(axis=1), {"units": "1"}),
         "worker": ("molecule", ds["worker"].values)},
        coords={"stage": list(STAGES), "molecule": ds["molecule"].values},
        attrs={"survivor_fraction": float(ran[-1].mean()), "target": ds.attrs.get("target", "")})


def throughput(ds: xr.Dataset, bin_seconds: float = 1.0) -> xr.Dataset:
    """Molecules finished per second over the run's wall time, total and per worker.

    Time is measured from the first molecule's finish; molecules read back from an earlier run
    (a resume) keep their original finish times.
    """
    bin_seconds = check_positive("bin_seconds", bin_seconds)
    t = ds["finished_at"].values.astype(float)
    t = t - np.nanmin(t)
    edges = np.arange(0.0, np.nanmax(t) + 2 * bin_seconds, bin_seconds)
    workers = np.array(sorted(set(ds["worker"].values.tolist())), dtype=object)
    per = np.vstack([np.histogram(t[ds["worker"].values == w], edges)[0] for w in workers])
    centres = 0.5 * (edges[:-1] + edges[1:])
    return xr.Dataset(
        {"molecules_per_second": ("time", per.sum(axis=0) / bin_seconds, {"units": "1/s"}),
         "per_worker": (("worker", "time"), per / bin_seconds, {"units": "1/s"}),
         "finished": ("time", np.cumsum(per.sum(axis=0)), {"units": "molecules"})},
        coords={"time": ("time", centres, {"units": "s"}), "worker": workers},
        attrs={"bin_seconds": bin_seconds})
