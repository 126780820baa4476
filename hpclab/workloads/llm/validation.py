"""Published training measurements (``data/reference/llm_training.yaml``): the fit of the model's
four fitted numbers on four rows, once and cached, and the prediction of every other row.

The fit solves ``predicted(row_i; e_ampere, e_hopper, e_memory, o_zero3) = published(row_i)``
(``o_zero3``: the share of one micro-batch's compute that hides DeepSpeed ZeRO-3's gathers, a
setting written ``fitted`` in the file) for the rows
named under ``calibration.rows`` (each row's matrix-product efficiency is its GPU generation's,
``calibration.generations``); the result is cached as JSON keyed by a hash of the rows, the
catalog and the model code (:mod:`hpclab.workloads.llm.fitcache`). Every other row is predicted
and compared with its published value within ``calibration.tolerance`` (relative); rows listed in
``calibration.known_misses`` say why they miss. The trend across rows (model size, scale, batch
per data-parallel group, sequence length, ZeRO-3's fall) comes from the model: bubble, exposed
communication, element-wise memory traffic, not from per-row fitting.

Each row runs at its published layout; axes a source does not state are assumed on the row
(``assumed:``) and never searched per row, and only rows without any layout use the search
(:func:`layout_source` says which). A source's software generation (``settings[...].software``,
described in the file's ``software:`` table from the code of the commit the paper used) sets the
model's switches ``async_tp``, ``grad_accumulation_fusion``, ``overlap_pp`` and
``zero3_list_gather``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np
import xarray as xr
from hpclab._paths import data_dir
from hpclab._validate import HpclabError, check_range
from hpclab._yaml import load_yaml

__all__ = ["reference", "assumption", "calibrate", "calibrated_efficiency", "calibration_rows",
           "generation_of", "generations",
           "predict_row", "validate", "interruption_reference", "layout_source"]


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
    table = reference()["assumptions"]
    if name not in table:
        raise KeyError(f"unknown assumption {name!r}; known: {', '.join(table)}")
    fig = table[name]
    return _si(fig["value"], fig["unit"], f"assumption {name}")


def _si(value, unit, what: str) -> float:
    """``value`` in ``unit`` (the catalog's unit table) as an SI number (bytes, seconds)."""
    from hpclab.catalog._units import UNITS

    unit = str(unit)
    for factors in UNITS.values():
        if unit in factors:
            return float(value) * factors[unit]
    raise HpclabError(f"{what}: unknown unit {unit!r}")


def _row(row_id):
    rows = {r["id"]: r for r in reference()["throughput"]}
    if row_id not in rows:
        raise KeyError(f"unknown reference row {row_id!r}; known: {', '.join(rows)}")
    return rows[row_id]


def _family(row):
    return row["id"].split("-")[0]


_LAYOUT_KEYS = ("tp", "pp", "cp", "micro_batch", "interleave")
_SWITCHES = ("recompute", "sequence_parallel", "zero", "overlap_dp")
#: What a software generation fixes for its rows (``software`` in the reference file), with the
#: model's defaults (today's software) where a source's settings name none.
_SOFTWARE_SWITCHES = dict(async_tp=True, grad_accumulation_fusion=True, overlap_pp=1.0,
                          zero3_list_gather=False)


def _row_setup(row, fitted=None):
    """(model, cluster, settings, fixed layout axes) for one reference row: the source's settings
    (``settings[family]``) with the row's own switches (recompute, sequence parallelism, ZeRO)
    on top, and the layout axes the row publishes. A setting written ``fitted`` takes its value
    from ``fitted`` (``{name: value}``), else from the cached fit."""
    from hpclab.workloads.llm.cluster import cluster
    from hpclab.workloads.llm.model import Transformer, transformer

    ref = reference()
    settings = dict(_SOFTWARE_SWITCHES)
    family = dict(ref["settings"][_family(row)])
    if "software" in family:
        soft = ref["software"][family["software"]]
        settings.update({k: soft[k] for k in _SOFTWARE_SWITCHES if k in soft})
        if soft.get("zero3_list_gather") not in (None, False):  # a time with its unit, in us
            settings["zero3_list_gather"] = 1e6 * _si(soft["zero3_list_gather"], soft["zero3_list_gather_unit"],
                                                      f"software.{family['software']}.zero3_list_gather")
    settings.update(family)
    settings.update({k: row[k] for k in _SWITCHES if k in row})
    for key, val in settings.items():
        if val == FITTED:
            name = f"{key}_{_family(row)}"
            settings[key] = float(fitted[name] if fitted and name in fitted
                                  else calibrated_efficiency()[name])
    if "model" in row:
        model = transformer(row["model"])
        changes = {k: row[k] for k in ("vocab", "seq_length") if k in row}
        if "seq_length" in settings and "seq_length" not in changes:
            changes["seq_length"] = settings["seq_length"]
        if changes:
            model = model.with_(**changes)
    else:  # Narayanan et al. and Korthikanti et al.: GPT shapes, vocabulary 51,200, sequence 2,048
        model = Transformer(name=row["id"], layers=row["layers"], hidden=row["hidden"],
                            heads=row["heads"], vocab=51200, seq_length=2048,
                            published_params=row["params"] * 1e9)
    cl = cluster(settings["node"], settings["fabric"])
    axes = {k: row[k] for k in _LAYOUT_KEYS if k in row}
    axes.update(row.get("assumed", {}))
    if "tp" in row and "cp" not in row:  # rows before context parallelism existed (2021-2022)
        axes["cp"] = 1
    if "tp" in row and not {"micro_batch", "interleave"} <= set(axes):
        raise HpclabError(f"data/reference/llm_training.yaml: row {row['id']!r} publishes a layout "
                          f"but neither states nor assumes its micro_batch and interleave")
    return model, cl, settings, axes


def layout_source(row) -> str:
    """How a row's layout is known: ``published``; ``published; assumed ...`` (the axes the
    source does not state, with the value the row assumes); ``searched`` where the source gives
    no layout at all (the model's best layout, marked as such)."""
    if "tp" not in row:
        return "searched (no layout published)"
    assumed = row.get("assumed", {})
    if not assumed:
        return "published"
    return "published; assumed " + ", ".join(f"{k}={v}" for k, v in assumed.items())


def _best(row, efficiency, memory_efficiency=None, fitted=None):
    """The model's layout for a row: the published one where the row gives micro-batch and
    interleaving too; otherwise the published axes fixed and the rest searched."""
    from hpclab.workloads.llm.parallel import search

    model, cl, st, axes = _row_setup(row, fitted)
    known_layout = "tp" in row
    grid = dict(micro_batch=[1, 2, 4, 8], interleave=[1, 2, 4, 8])  # searched rows only
    grid.update(axes)
    ds = search(model, cl, row["gpus"], row["global_batch"], top=1, feasible_only=not known_layout,
                efficiency=efficiency, memory_efficiency=memory_efficiency,
                sequence_parallel=st["sequence_parallel"],
                flash_attention=st["flash_attention"], balanced_ends=st.get("balanced_ends", False),
                overlap_dp=st["overlap_dp"], overlap_pp=st["overlap_pp"], async_tp=st["async_tp"],
                grad_accumulation_fusion=st["grad_accumulation_fusion"],
                zero3_list_gather=st["zero3_list_gather"], recompute=st["recompute"],
                zero=st["zero"], **grid)
    return model, ds.isel(layout=0)


def _metric(row, model, best):
    if row["metric"] == "mfu":
        return float(best["mfu"])
    if row["metric"] == "iteration_time":
        return float(best["step_time"])
    # Narayanan et al. Eq. 3: F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) per iteration
    B, s, l, h, V = row["global_batch"], model.seq_length, model.layers, model.hidden, model.vocab
    flops = 96.0 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    return flops / (float(best["step_time"]) * row["gpus"]) / 1e12


def predict_row(row_id: str, efficiency: float | None = None,
                memory_efficiency: float | None = None,
                fitted: dict | None = None) -> tuple[float, xr.Dataset]:
    """The model's prediction of a reference row's metric, and the layout it used (``fitted``:
    values of the fitted settings, :func:`fitted_settings`; default the cached fit)."""
    row = _row(row_id)
    model, best = _best(row, efficiency, memory_efficiency, fitted)
    return _metric(row, model, best), best


def generations() -> list[str]:
    """GPU generations with their own matrix-product efficiency (``calibration.generations``)."""
    return list(dict.fromkeys(reference()["calibration"]["generations"].values()))


def generation_of(gpu) -> str:
    """The efficiency group of a catalog ``gpu_model`` (A100: ampere, H100 and H800: hopper);
    GPUs no published row was fitted on use ``calibration.default_generation``."""
    cal = reference()["calibration"]
    return cal["generations"].get(gpu, cal["default_generation"])


#: A source's setting given as this word in ``settings:`` is one of the fitted numbers.
FITTED = "fitted"


def fitted_settings() -> tuple:
    """The settings fitted instead of stated, as ``(family, key)``: those written ``fitted`` in
    ``settings:`` (ZeRO-3's overlap of DeepSpeed's gathers with compute)."""
    return tuple((fam, key) for fam, st in reference()["settings"].items()
                 for key, val in st.items() if val == FITTED)


def names() -> tuple:
    """The fitted numbers: one matrix-product efficiency per generation, one memory one, and
    each fitted setting (``<key>_<family>``, e.g. ``overlap_dp_zero3``)."""
    return (tuple(f"matmul_efficiency_{g}" for g in generations()) + ("memory_efficiency",)
            + _setting_names())


def _setting_names() -> tuple:
    """The fitted settings' names in :func:`names` (``<key>_<family>``)."""
    return tuple(f"{key}_{fam}" for fam, key in fitted_settings())


def calibration_rows() -> list[str]:
    """The published rows the efficiencies are fitted on (``calibration.rows``)."""
    return list(reference()["calibration"]["rows"])


def _row_generation(row_id) -> str:
    from hpclab.catalog import default

    node = reference()["settings"][_family(_row(row_id))]["node"]
    return generation_of(default().instance(node).gpu_model)


def calibrate(rows=None) -> dict:
    """Fit the efficiencies so that the model reproduces the calibration rows: as many rows as
    numbers (the default, ``calibration.rows``) gives an exact solution; more rows, least squares
    on the relative errors. Each row's matrix-product efficiency is its GPU generation's; the
    fitted settings (:func:`fitted_settings`) act on their own source's rows only. Returns
    ``{"matmul_efficiency_ampere": ..., "matmul_efficiency_hopper": ..., "memory_efficiency": ...,
    "overlap_dp_zero3": ...}``.

    This is the only fit in the LLM model; :func:`calibrated_efficiency` caches its result.
    """
    from scipy.optimize import least_squares

    if rows is None:
        rows = calibration_rows()
    elif isinstance(rows, str):
        rows = [rows] if rows else []
    elif isinstance(rows, Iterable):
        rows = [str(r) for r in rows]
    else:
        raise HpclabError(f"calibrate: rows must be reference row ids (a list of strings); got {type(rows).__name__}")
    if not rows:
        raise HpclabError("calibrate needs at least one published row")
    try:
        table = [_row(r) for r in rows]
    except KeyError as exc:  # _row's one line (the unknown id and the known ones)
        raise HpclabError(f"calibrate: {exc.args[0]}") from None
    gens = generations()
    targets = np.array([float(row["value"]) for row in table])
    index = [gens.index(_row_generation(r)) for r in rows]

    k = len(gens)
    extra = _setting_names()  # each a share in [0, 1]
    # every number needs a row it acts on: a generation's efficiency a row of that generation, a
    # fitted setting a row of its source (else least squares leaves it at its start, silently)
    families = {_family(row) for row in table}
    unfit = ([f"matmul_efficiency_{g}" for i, g in enumerate(gens) if i not in index]
             + [n for n, (fam, _) in zip(extra, fitted_settings()) if fam not in families])
    if unfit:
        raise HpclabError(f"calibrate: no row among {', '.join(rows)} determines {', '.join(unfit)}; "
                          f"add a row of each (the default rows: {', '.join(calibration_rows())})")

    n = k + 1 + len(extra)
    if len(rows) < n:
        raise HpclabError(f"calibrate: {len(rows)} rows ({', '.join(rows)}) cannot determine {n} numbers "
                          f"({', '.join(names())}); give at least {n} (the default rows: "
                          f"{', '.join(calibration_rows())})")

    def residual(x):
        fitted = dict(zip(extra, (float(v) for v in x[k + 1:])))
        pred = np.array([predict_row(r, float(x[i]), float(x[k]), fitted)[0]
                         for r, i in zip(rows, index)])
        return pred / targets - 1.0

    fit = least_squares(residual, x0=[0.7] * k + [0.5] + [0.5] * len(extra),
                        bounds=([0.05] * (k + 1) + [0.0] * len(extra), [1.0] * n),
                        xtol=1e-7, ftol=1e-9, diff_step=1e-4)
    # rows that move the numbers only together (e.g. two of one generation and none of a setting's
    # effect) leave a family of equally good fits: least squares would return one of them
    rank = int(np.linalg.matrix_rank(fit.jac))
    if rank < n:
        raise HpclabError(f"calibrate: the rows {', '.join(rows)} determine only {rank} of the {n} numbers "
                          f"({', '.join(names())}); add rows that move the others (the default rows: "
                          f"{', '.join(calibration_rows())})")
    return dict(zip(names(), (float(v) for v in fit.x)))


def _fit_key() -> str:
    """Hash of everything the fit depends on: the reference rows, the catalog, the model
    presets and the source of the LLM and network models."""
    from pathlib import Path

    from hpclab._paths import data_dir
    from hpclab.workloads.llm.fitcache import fingerprint

    here = Path(__file__).resolve().parent
    files = ([data_dir() / "reference" / "llm_training.yaml", data_dir() / "models.yaml",
              data_dir() / "reference" / "topologies.yaml",
              data_dir() / "reference" / "collectives.yaml"]  # the NCCL model's published points
             + sorted((data_dir() / "catalog").glob("*.yaml"))
             + sorted(here.glob("*.py")) + sorted((here.parent.parent / "network").glob("*.py")))
    return fingerprint([f for f in files if f.exists()],
                       extra="calibrate:" + ",".join(calibration_rows()) + ":" + ",".join(names()))


@lru_cache(maxsize=1)
def calibrated_efficiency() -> dict:
    """The default efficiencies: :func:`calibrate` on ``calibration.rows``, fitted once and kept
    in the user cache (:mod:`hpclab.workloads.llm.fitcache`), keyed by a hash of the rows, the
    catalog and the model code: a warm cache never fits."""
    from hpclab.workloads.llm.fitcache import cached

    return cached("llm-efficiency", _fit_key(), names(), lambda: calibrate())


def validate(efficiency: float | None = None, memory_efficiency: float | None = None,
             fitted: dict | None = None) -> xr.Dataset:
    """Predict every reference row; Dataset along ``row`` with ``published``, ``predicted``,
    ``relative_error`` and ``within_tolerance`` (the calibration rows are marked). Without
    ``efficiency`` each row uses its GPU generation's fitted figure; ``fitted`` gives the fitted
    settings (``{"overlap_dp_zero3": ...}``, :func:`names`). Only what is not given comes from
    the cached fit (:func:`calibrated_efficiency`): with all three given nothing is fitted."""
    ref = reference()
    if fitted is not None and not isinstance(fitted, Mapping):
        raise HpclabError(f"validate: fitted must be a mapping {{name: value}} of {', '.join(_setting_names())}; "
                          f"got {type(fitted).__name__}")
    fitted = dict(fitted or {})
    unknown = sorted(set(fitted) - set(_setting_names()), key=repr)
    if unknown:
        raise HpclabError(f"validate: fitted has unknown setting {unknown[0]!r}; "
                          f"allowed: {', '.join(_setting_names())}")
    fitted = {n: check_range(f"fitted[{n!r}]", v, 0.0, 1.0) for n, v in fitted.items()}
    for name, value in (("efficiency", efficiency), ("memory_efficiency", memory_efficiency)):
        if value is not None:
            check_range(name, value, 0.0, 1.0, low_open=True)
    needs_fit = (efficiency is None or memory_efficiency is None
                 or any(n not in fitted for n in _setting_names()))
    cal = calibrated_efficiency() if needs_fit else {}
    mem = cal["memory_efficiency"] if memory_efficiency is None else float(memory_efficiency)
    settings_fit = {n: float(fitted[n] if n in fitted else cal[n]) for n in _setting_names()}
    ids, pub, pred, metric, lay, group, how = [], [], [], [], [], [], []
    for row in ref["throughput"]:
        eff = (cal[f"matmul_efficiency_{_row_generation(row['id'])}"] if efficiency is None
               else float(efficiency))
        p, best = predict_row(row["id"], eff, mem, settings_fit)
        ids.append(row["id"])
        pub.append(float(row["value"]))
        pred.append(p)
        metric.append(row["metric"])
        group.append(_family(row))
        how.append(layout_source(row))
        lay.append(f"tp{int(best['tp'])} cp{int(best['cp'])} pp{int(best['pp'])} dp{int(best['dp'])} "
                   f"mb{int(best['micro_batch'])} v{int(best['interleave'])} z{int(best['zero'])}")
    pub, pred = np.array(pub), np.array(pred)
    rel = (pred - pub) / pub
    tol = float(ref["calibration"]["tolerance"])
    cal_rows = calibration_rows()
    return xr.Dataset(
        {"published": ("row", pub, {"long_name": "published value (MFU, TFLOP/s per GPU or s)"}),
         "predicted": ("row", pred, {"long_name": "model prediction"}),
         "relative_error": ("row", rel, {"units": "1"}),
         "within_tolerance": ("row", np.abs(rel) <= tol)},
        coords={"row": ids, "metric": ("row", metric), "layout": ("row", lay),
                "layout_source": ("row", how),
                "source": ("row", group),
                "calibration": ("row", [i in cal_rows for i in ids])},
        attrs={"efficiency": (cal["matmul_efficiency_ampere"] if efficiency is None
                              else float(efficiency)),
               "efficiency_by_generation": ", ".join(
                   f"{g} {cal[f'matmul_efficiency_{g}']:.3f}" for g in generations())
               if efficiency is None else f"all {float(efficiency):.3f}",
               "memory_efficiency": mem, "tolerance": tol,
               "known_misses": ", ".join(ref["calibration"].get("known_misses", {})),
               "calibration_rows": ", ".join(cal_rows),
               "fitted_settings": ", ".join(f"{n} {v:.3f}" for n, v in settings_fit.items()),
               "tolerance_reason": ref["calibration"]["tolerance_reason"]})


def interruption_reference(name: str = "llama3") -> dict:
    """A published interruption record (counts, GPUs, hosts, days, source)."""
    table = reference()["interruptions"]
    if name not in table:
        raise KeyError(f"unknown interruption record {name!r}; known: {', '.join(table)}")
    return dict(table[name])
