"""One result type for every run: Datasets with named dimensions and units.

A :class:`Result` holds

- ``summary`` — scalar variables, each with ``units`` (``tasks``, ``makespan_s``, ``cost_usd``,
  ``instance_seconds``, ... and the workload's own), the same names on both clocks;
- ``events`` — the lifecycle log of the pool's instances (dim ``event``), if the run had a pool;
- ``instances`` — one row per instance (dim ``instance``): type, zone, market, start, end, cost;
- ``bill`` — :func:`hpclab.elastic.billing.bill` (dims ``itype``, ``zone``, ``market``);
- ``data`` — the workload's own Datasets by name (a time series, a scaling curve, layouts, jobs).

``to_netcdf(path)`` writes all of them as groups of one netCDF-4 file (``open_result`` reads it
back), ``to_json()`` gives the summary as plain JSON (what ``hpclab run --json`` prints).
:func:`compare` tabulates finished results (these and the older result types) along ``run``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError

__all__ = ["Result", "open_result", "summary_dataset", "instances_dataset", "compare"]

_SECTIONS = ("summary", "events", "instances", "bill")


def summary_dataset(values: dict, units: dict, attrs: dict | None = None) -> xr.Dataset:
    """Scalars with units as a Dataset (``values`` may hold numbers, strings or booleans)."""
    data = {}
    for k, v in values.items():
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        data[k] = xr.DataArray(v, attrs={"units": units.get(k, "1")})
    return xr.Dataset(data, attrs=attrs or {})


def instances_dataset(per: pd.DataFrame) -> xr.Dataset:
    """A per-instance bill (:func:`hpclab.elastic.billing.bill_instances`) as a Dataset."""
    df = per.reset_index(drop=True)
    ds = xr.Dataset({c: ("instance", df[c].to_numpy()) for c in df.columns if c != "instance"},
                    coords={"instance": df["instance"].astype(str).to_numpy()})
    for c, u in (("start", "s"), ("end", "s"), ("seconds", "s"), ("billed_seconds", "s"),
                 ("price", "USD/s"), ("cost", "USD")):
        if c in ds:
            ds[c].attrs["units"] = u
    return ds


def _netcdf_safe(ds: xr.Dataset) -> xr.Dataset:
    """Attributes netCDF can hold: bools as ints, None as '', mappings and lists as JSON."""

    def fix(attrs):
        out = {}
        for k, v in attrs.items():
            if isinstance(v, (bool, np.bool_)):
                v = int(v)
            elif v is None:
                v = ""
            elif isinstance(v, (dict, list, tuple)):
                v = json.dumps(v, default=str)
            elif not isinstance(v, (str, int, float, np.integer, np.floating, np.ndarray)):
                v = str(v)
            out[k] = v
        return out

    ds = ds.copy()
    ds.attrs = fix(ds.attrs)
    for name in list(ds.variables):
        var = ds[name]
        var.attrs = fix(var.attrs)
        if var.dtype == object:
            ds[name] = var.astype(str)
    return ds


@dataclass
class Result:
    """What :meth:`hpclab.Scenario.run` returns (see the module docstring)."""

    scenario: object
    clock: str
    summary: xr.Dataset
    events: xr.Dataset | None = None
    instances: xr.Dataset | None = None
    bill: xr.Dataset | None = None
    data: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        """``result["makespan_s"]`` is a summary value (a float, int or string)."""
        if key not in self.summary:
            raise KeyError(f"summary has no {key!r}; it has {', '.join(self.summary.data_vars)}")
        v = self.summary[key].values
        return v.item() if hasattr(v, "item") else v

    def datasets(self) -> dict[str, xr.Dataset]:
        """Every Dataset of the result by name (summary, events, instances, bill, then data)."""
        out = {k: getattr(self, k) for k in _SECTIONS if getattr(self, k) is not None}
        out.update(self.data)
        return out

    def to_dict(self) -> dict:
        """The summary as plain Python values, with the scenario's name and the clock."""
        out = {"scenario": getattr(self.scenario, "name", ""), "clock": self.clock,
               "workload": getattr(self.scenario, "workload", {}).get("kind", "")}
        for k in self.summary.data_vars:
            v = self[k]
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out[k] = v
        return out

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **({"indent": 2} | kw))

    def units(self) -> dict:
        return {k: self.summary[k].attrs.get("units", "1") for k in self.summary.data_vars}

    def to_netcdf(self, path) -> Path:
        """All Datasets as groups of one netCDF-4 file; the scenario as YAML in its attributes."""
        path = Path(path)
        tree = {f"/{k}": _netcdf_safe(v) for k, v in self.datasets().items()}
        root = xr.Dataset(attrs={"clock": self.clock,
                                 "scenario": self.scenario.to_yaml() if hasattr(self.scenario, "to_yaml") else ""})
        tree["/"] = root
        try:
            xr.DataTree.from_dict(tree).to_netcdf(path)
        except OSError as exc:
            raise HpclabError(f"{path}: cannot write the result ({exc.strerror or exc})") from None
        return path

    def save(self, out) -> Path:
        """Write ``result.nc``, ``summary.json`` and ``scenario.yaml`` into the folder ``out``."""
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HpclabError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
        self.to_netcdf(out / "result.nc")
        (out / "summary.json").write_text(self.to_json() + "\n", encoding="utf-8")
        if hasattr(self.scenario, "save"):
            self.scenario.save(out / "scenario.yaml")
        return out

    def table(self) -> pd.DataFrame:
        """The summary as a two-column table (value, units) for printing."""
        return pd.DataFrame({"value": [self[k] for k in self.summary.data_vars],
                             "units": [self.summary[k].attrs.get("units", "1") for k in self.summary.data_vars]},
                            index=list(self.summary.data_vars))

    def __repr__(self) -> str:
        name = getattr(self.scenario, "name", "?")
        keys = [k for k in ("tasks_done", "makespan_s", "cost_usd", "instances") if k in self.summary]
        body = ", ".join(f"{k}={self[k]:.4g}" if isinstance(self[k], float) else f"{k}={self[k]}"
                         for k in keys)
        return f"<Result {name} on the {self.clock} clock: {body}>"


def open_result(path) -> dict[str, xr.Dataset]:
    """The Datasets of a file written by :meth:`Result.to_netcdf`, by group name."""
    path = Path(path)
    if not path.is_file():
        raise HpclabError(f"{path}: no such result file")
    try:
        tree = xr.open_datatree(path)
    except (OSError, ValueError) as exc:
        raise HpclabError(f"{path}: not a result file ({exc})") from None
    out = {name: node.to_dataset().load() for name, node in tree.children.items()}
    out["/"] = tree.to_dataset()
    return out


# -- finished results side by side ------------------------------------------------------------
#: units of the figures of :attr:`hpclab.elastic.simulate.SimResult.summary` (a dict)
SIM_UNITS = {"tasks": "tasks", "completed": "tasks", "makespan_s": "s", "cost_usd": "USD",
             "core_hours": "core-h", "utilisation": "1", "work_redone": "core-s",
             "tasks_redone": "count", "refusals": "count", "refusal_events": "count",
             "quota_clipped": "count", "reclaims": "count", "hard_kills": "count",
             "instances": "count", "peak_cores": "cores", "limit_violations": "count",
             "ticks": "count", "end_time_s": "s", "events": "count", "wall_s": "s",
             "events_per_s": "1/s"}


def summary_of(result) -> xr.Dataset:
    """The summary Dataset of any finished run: a :class:`Result` (``.summary``), a
    ``SimResult`` (its ``summary`` dict, with :data:`SIM_UNITS`), a ``PlatformResult`` or a
    ``BurstRun`` (their ``summary()``)."""
    s = getattr(result, "summary", None)
    if callable(s):
        s = s()
    if isinstance(s, Mapping) and not isinstance(s, xr.Dataset):
        s = summary_dataset({k: v for k, v in s.items() if np.ndim(v) == 0}, SIM_UNITS)
    if not isinstance(s, xr.Dataset):
        raise HpclabError(f"compare takes finished results (Result, SimResult, PlatformResult, "
                          f"BurstRun), got {type(result).__name__}")
    return s


def _label(result) -> str:
    name = getattr(getattr(result, "scenario", None), "name", None)
    if name is not None:
        return f"{name} ({result.clock})"
    return str(getattr(result, "policy", "") or type(result).__name__)


def compare(results, labels=None, *, dim: str = "run") -> xr.Dataset:
    """Finished results side by side: each one's summary (:func:`summary_of`) along ``dim``.

    ``results`` is ``{label: result}`` or a sequence (labelled by ``labels``, else by each
    result's scenario and clock or policy). A figure one run lacks is NaN there; other
    dimensions (a platform's ``pool``) are joined. Units are kept; ``.to_dataframe()`` gives one
    row per run.
    """
    if isinstance(results, Mapping):
        labels, results = list(results), list(results.values())
    else:
        results = list(results)
        labels = [_label(r) for r in results] if labels is None else list(labels)
    if not results:
        raise HpclabError("compare needs at least one finished result")
    if len(labels) != len(results):
        raise HpclabError(f"compare got {len(labels)} labels for {len(results)} results")
    if len(set(labels)) != len(labels):
        raise HpclabError(f"compare needs one label per result, got repeated labels {labels}")
    rows = []
    for label, r in zip(labels, results):
        ds = summary_of(r).copy()
        ds.attrs = {}
        rows.append(ds.expand_dims({dim: [label]}))
    ds = xr.concat(rows, dim=dim, join="outer", data_vars="all", coords="different",
                   compat="equals", combine_attrs="drop")
    for v in ds.data_vars:  # the units of the first run that has the figure
        for d in rows:
            if v in d:
                ds[v].attrs = dict(d[v].attrs)
                break
    return ds


# -- builders shared by the workloads ------------------------------------------------------------
#: units of the summary keys every pool run reports, on both clocks
POOL_UNITS = {"tasks": "tasks", "tasks_done": "tasks", "makespan_s": "s", "cost_usd": "USD",
              "instance_seconds": "s", "billed_seconds": "s", "instances": "count",
              "peak_cores": "cores", "utilisation": "1", "reclaims": "count", "refusals": "count",
              "tasks_redone": "count", "end_time_s": "s", "wall_s": "s", "finished": "1",
              "policy_lag_s": "s"}


def pool_sections(per: pd.DataFrame, the_bill: xr.Dataset | None = None):
    """(instances, bill, totals) of a pool from its per-instance bill
    (:func:`hpclab.elastic.billing.bill_instances`: the one meter), with its totals unless the
    caller holds them."""
    from hpclab.elastic.billing import bill_totals

    if the_bill is None:
        the_bill = bill_totals(per)
    totals = {"cost_usd": float(the_bill["total_cost"]), "instances": int(len(per)),
              "instance_seconds": float(per["seconds"].sum()),
              "billed_seconds": float(per["billed_seconds"].sum())}
    return instances_dataset(per), the_bill, totals


def from_simulation(scenario, sim, *, catalog=None, data: dict | None = None,
                    extra: dict | None = None, units: dict | None = None) -> Result:
    """A :class:`Result` from a virtual-clock run (:class:`hpclab.elastic.simulate.SimResult`)."""
    from hpclab.elastic.billing import INTERVAL_COLUMNS, bill_instances

    s = sim.summary
    per = bill_instances(sim.instances[list(INTERVAL_COLUMNS)], catalog, until=sim.end_time, market=sim.market)
    inst, the_bill, totals = pool_sections(per, sim.bill)
    values = {"tasks": s["tasks"], "tasks_done": s["completed"], "makespan_s": s["makespan_s"],
              **totals, "peak_cores": s["peak_cores"], "utilisation": s["utilisation"],
              "reclaims": s["reclaims"], "refusals": s["refusals"], "tasks_redone": s["tasks_redone"],
              "end_time_s": s["end_time_s"], "wall_s": s["wall_s"],
              "finished": s["completed"] == s["tasks"], "policy": s["policy"]}
    values.update(extra or {})
    summary = summary_dataset(values, {**POOL_UNITS, **(units or {})}, {"notes": s.get("note", "")})
    return Result(scenario=scenario, clock="virtual", summary=summary, events=sim.log,
                  instances=inst, bill=the_bill,
                  data={"timeseries": sim.timeseries, **(data or {})})


def from_pool(scenario, pool, *, until: float, tasks: int, tasks_done: int, makespan_s: float,
              wall_s: float, data: dict | None = None, extra: dict | None = None,
              units: dict | None = None) -> Result:
    """A :class:`Result` from a real pool (an ElasticPool or AttachedPool) after its run."""
    from hpclab.elastic import _pool_billing

    events = pool.events()
    iv = _pool_billing.instances(pool, until)  # the pool's own bill, its spot market included
    inst, the_bill, totals = pool_sections(iv, _pool_billing.bill(pool, until, per=iv))
    ev = events.to_dataframe()
    reclaims = int(np.sum((ev["state"] == "draining") & (ev["reason"] == "spot-notice"))) if len(ev) else 0
    granted = set(iv["instance"])
    refused = len(set(ev["instance"]) - granted) if len(ev) else 0
    peak = 0
    if len(iv):  # physical cores of instances alive at once, at its highest
        cores = np.array([pool.catalog.instance(t).cores for t in iv["itype"]], dtype=float)
        t = np.concatenate([iv["start"].to_numpy(float), np.nan_to_num(iv["end"].to_numpy(float), nan=until)])
        d = np.concatenate([cores, -cores])
        o = np.lexsort((d, t))  # ends before starts at the same time
        peak = int(np.max(np.cumsum(d[o]), initial=0))
    values = {"tasks": tasks, "tasks_done": tasks_done, "makespan_s": makespan_s, **totals,
              "peak_cores": peak, "reclaims": reclaims, "refusals": refused, "end_time_s": until,
              "wall_s": wall_s,
              # how late the policy loop ran at worst (pool seconds): a pause of this process
              # that the emulated times (wall times) absorb
              "policy_lag_s": max(0.0, float(getattr(getattr(pool, "_adaptive", None), "max_lag", 0.0)))
              / float(pool.time_scale),
              "finished": tasks_done == tasks,
              "policy": getattr(getattr(pool, "policy", None), "name", "")}
    values.update(extra or {})
    summary = summary_dataset(values, {**POOL_UNITS, **(units or {})},
                              {"notes": "", "time_scale": float(pool.time_scale)})
    return Result(scenario=scenario, clock="real", summary=summary, events=events, instances=inst,
                  bill=the_bill, data=data or {})
