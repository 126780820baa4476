"""Published training measurements (``data/reference/llm_training.yaml``): calibration of the one
efficiency factor on one row, and prediction of every other row.

The calibration solves ``predicted(row_c, efficiency) = published(row_c)`` for the single row
named under ``calibration.row``; every other row is then predicted with that efficiency and
compared with its published value within ``calibration.tolerance`` (relative). The trend across
rows (model size, scale, batch per data-parallel group, sequence length) therefore comes from the
model: bubble, exposed communication, element-wise memory traffic, not from per-row fitting.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xarray as xr
from hpclab._paths import data_dir
from hpclab._validate import HpclabError
from hpclab._yaml import load_yaml

__all__ = ["reference", "assumption", "calibrate", "calibrated_efficiency", "predict_row",
           "validate", "interruption_reference"]


@lru_cache(maxsize=1)
def reference() -> dict:
    """The parsed ``data/reference/llm_training.yaml`` (sources resolved)."""
    path = data_dir() / "reference" / "llm_training.yaml"
    doc = load_yaml(path)
    sources = doc.get("sources", {})

    def resolve(obj):
        if isinstance(obj, dict):
            return {k: resolve(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [resolve(v) for v in obj]
        if isinstance(obj, str) and obj.startswith("@") and obj[1:] in sources:
            return sources[obj[1:]]
        return obj

    return resolve(doc)


def assumption(name: str) -> float:
    """One modelling assumption in SI units (bytes, seconds, ratios), e.g. ``memory_reserve``."""
    from hpclab.catalog._units import UNITS

    table = reference()["assumptions"]
    if name not in table:
        raise KeyError(f"unknown assumption {name!r}; known: {', '.join(table)}")
    fig = table[name]
    unit = str(fig["unit"])
    for factors in UNITS.values():
        if unit in factors:
            return float(fig["value"]) * factors[unit]
    raise HpclabError(f"assumption {name}: unknown unit {unit!r}")


def _row(row_id):
    rows = {r["id"]: r for r in reference()["throughput"]}
    if row_id not in rows:
        raise KeyError(f"unknown reference row {row_id!r}; known: {', '.join(rows)}")
    return rows[row_id]


def _family(row):
    return row["id"].split("-")[0]


def _row_setup(row):
    """(model, cluster, settings, fixed layout axes) for one reference row."""
    from hpclab.workloads.llm.cluster import cluster
    from hpclab.workloads.llm.model import Transformer, transformer

    settings = dict(reference()["settings"][_family(row)])
    if "model" in row:
        model = transformer(row["model"])
        changes = {k: row[k] for k in ("vocab", "seq_length") if k in row}
        if "seq_length" in settings and "seq_length" not in changes:
            changes["seq_length"] = settings["seq_length"]
        if changes:
            model = model.with_(**changes)
    else:  # Narayanan et al.: GPT shapes, vocabulary 51,200, sequence 2,048
        model = Transformer(name=row["id"], layers=row["layers"], hidden=row["hidden"],
                            heads=row["heads"], vocab=51200, seq_length=2048,
                            published_params=row["params"] * 1e9)
    cl = cluster(settings["node"], settings["fabric"])
    axes = {k: row[k] for k in ("tp", "pp", "cp") if k in row}
    return model, cl, settings, axes


def _best(row, efficiency):
    """The model's best layout for a row (published axes fixed, the rest searched)."""
    from hpclab.workloads.llm.parallel import search

    model, cl, st, axes = _row_setup(row)
    known_layout = "tp" in row
    ds = search(model, cl, row["gpus"], row["global_batch"], top=1, feasible_only=not known_layout,
                efficiency=efficiency, sequence_parallel=st["sequence_parallel"],
                flash_attention=st["flash_attention"],
                overlap_dp=st["overlap_dp"], recompute=st["recompute"], zero=st["zero"],
                micro_batch=[1, 2, 4, 8], interleave=[1, 2, 4, 8], **axes)
    return model, ds.isel(layout=0)


def _metric(row, model, best):
    if row["metric"] == "mfu":
        return float(best["mfu"])
    # Narayanan et al. Eq. 3: F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) per iteration
    B, s, l, h, V = row["global_batch"], model.seq_length, model.layers, model.hidden, model.vocab
    flops = 96.0 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    return flops / (float(best["step_time"]) * row["gpus"]) / 1e12


def predict_row(row_id: str, efficiency: float | None = None) -> tuple[float, xr.Dataset]:
    """The model's prediction of a reference row's metric, and the layout it used."""
    row = _row(row_id)
    model, best = _best(row, efficiency)
    return _metric(row, model, best), best


def calibrate(row_id: str | None = None) -> float:
    """Solve for the efficiency at which the model reproduces one published row exactly."""
    from scipy.optimize import brentq

    row_id = row_id or reference()["calibration"]["row"]
    target = float(_row(row_id)["value"])

    def gap(eff):
        return predict_row(row_id, eff)[0] - target

    lo, hi = 0.05, 1.0
    if gap(hi) < 0:
        raise HpclabError(f"row {row_id}: even efficiency 1.0 predicts less than the published {target}")
    return float(brentq(gap, lo, hi, xtol=1e-6))


@lru_cache(maxsize=1)
def calibrated_efficiency() -> float:
    """The default efficiency: :func:`calibrate` on ``calibration.row`` (computed once)."""
    return calibrate()


def validate(efficiency: float | None = None) -> xr.Dataset:
    """Predict every reference row; Dataset along ``row`` with ``published``, ``predicted``,
    ``relative_error`` and ``within_tolerance`` (the calibration row is marked)."""
    ref = reference()
    eff = calibrated_efficiency() if efficiency is None else float(efficiency)
    ids, pub, pred, metric, lay = [], [], [], [], []
    for row in ref["throughput"]:
        p, best = predict_row(row["id"], eff)
        ids.append(row["id"])
        pub.append(float(row["value"]))
        pred.append(p)
        metric.append(row["metric"])
        lay.append(f"tp{int(best['tp'])} cp{int(best['cp'])} pp{int(best['pp'])} dp{int(best['dp'])} "
                   f"mb{int(best['micro_batch'])} v{int(best['interleave'])}")
    pub, pred = np.array(pub), np.array(pred)
    rel = (pred - pub) / pub
    tol = float(ref["calibration"]["tolerance"])
    return xr.Dataset(
        {"published": ("row", pub, {"long_name": "published value (MFU or TFLOP/s per GPU)"}),
         "predicted": ("row", pred, {"long_name": "model prediction"}),
         "relative_error": ("row", rel, {"units": "1"}),
         "within_tolerance": ("row", np.abs(rel) <= tol)},
        coords={"row": ids, "metric": ("row", metric), "layout": ("row", lay),
                "calibration": ("row", [i == ref["calibration"]["row"] for i in ids])},
        attrs={"efficiency": eff, "tolerance": tol, "calibration_row": ref["calibration"]["row"],
               "tolerance_reason": ref["calibration"]["tolerance_reason"]})


def interruption_reference(name: str = "llama3") -> dict:
    """A published interruption record (counts, GPUs, hosts, days, source)."""
    table = reference()["interruptions"]
    if name not in table:
        raise KeyError(f"unknown interruption record {name!r}; known: {', '.join(table)}")
    return dict(table[name])
