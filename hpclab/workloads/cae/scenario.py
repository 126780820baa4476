"""A CAE scaling study as a scenario (``kind: cae``), on either clock.

- **virtual**: the strong or weak scaling model (:func:`~hpclab.workloads.cae.model.scaling`) per
  fabric at ``cores``, calibrated by the compiled kernel measured here
  (:func:`~hpclab.workloads.cae.model.measure_cost_per_cell`), unless ``cost_per_cell`` is given.
- **real**: the heat solver (:func:`~hpclab.workloads.cae.solver.run_heat`) on a Dask cluster of
  1 to ``cluster.workers`` workers (or the scheduler at ``cluster.address``), checked against the
  analytical decay; seconds per step, speed-up and error for each worker count.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hpclab._validate import MAX_RANKS, HpclabError
from hpclab.scenario import Field

__all__ = ["CAEScaling"]


class CAEScaling:
    """``kind: cae`` — see the module docstring."""

    name = "cae"
    clocks = ("virtual", "real")
    #: it has no pool: its real runs take ``cluster.workers`` Dask workers, its model the core counts
    pool_keys = ()
    #: nor a run setting: the solver and the model are deterministic, run to their step count,
    #: at their own speed, with no policy
    settings = ()
    #: the scenario's top-level network keys it reads: ``topology``, a preset whose hops the
    #: halo messages pay (instead of ``workload.placement``); its fabrics are ``workload.fabrics``
    network = ("topology",)
    fields = {
        "grid": Field("int", 4096, lo=3, hi=10**7, help="grid points per axis (strong scaling)"),
        "ndim": Field("int", 2, lo=2, hi=3),
        "steps": Field("int", 100, lo=1, hi=10**9),
        "mode": Field("str", "strong", choices=("strong", "weak")),
        "cores": Field("list[int]", [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536], lo=1, hi=MAX_RANKS,
                       help="ranks of the scaling study (one per core)"),
        "fabrics": Field("list[str]", ["tcp-vpc", "erdma", "rdma-hpn7"]),
        "steps_per_exchange": Field("int", 1, lo=1, hi=10**6),
        "placement": Field("str", "placement-group"),
        "cost_per_cell": Field("float", None, lo=0, lo_open=True, hi=1.0, optional=True,
                               help="seconds per cell and step (default: measured here)"),
        "reductions_per_step": Field("float", 0.0, lo=0, hi=10**6,
                                     help="global allreduces per step (a residual check every 1/r steps)"),
        "real_grid": Field("int", 256, lo=3, hi=8192, help="grid of the real solver runs"),
    }

    @staticmethod
    def check(s) -> None:
        from hpclab import catalog

        cat = catalog.default()
        if not s.workload["fabrics"]:
            raise HpclabError(f"{s.source}: workload.fabrics: must name at least one catalog fabric "
                              f"({', '.join(sorted(cat.fabrics))}), got []")
        if not s.workload["cores"]:
            raise HpclabError(f"{s.source}: workload.cores: must list at least one core count, got []")
        placement = s.workload["placement"]
        if s.topology is not None and placement != CAEScaling.fields["placement"].default:
            raise HpclabError(f"{s.source}: topology: give it or workload.placement, not both "
                              f"(got {s.topology!r} and {placement!r})")
        for k, f in enumerate(s.workload["fabrics"]):
            if f not in cat.fabrics:
                raise HpclabError(f"{s.source}: workload.fabrics[{k}]: must be a catalog fabric "
                                  f"({', '.join(sorted(cat.fabrics))}), got {f!r}")

    def run(self, s, *, progress: bool = False, out=None):
        return self._real(s) if s.clock == "real" else self._virtual(s)

    def _virtual(self, s):
        from hpclab.result import Result, summary_dataset
        from hpclab.workloads.cae.model import measure_cost_per_cell, scaling

        p = s.workload
        cpc = p["cost_per_cell"] or measure_cost_per_cell(ndim=p["ndim"])
        placement = p["placement"]
        if s.topology is not None:  # checked at load (check): the placement is then the default
            from hpclab.network import topology

            placement = topology(s.topology)
        ds = scaling(np.array(p["cores"]), p["grid"], tuple(p["fabrics"]), cost_per_cell=cpc, mode=p["mode"],
                     ndim=p["ndim"], steps_per_exchange=p["steps_per_exchange"], placement=placement,
                     reductions_per_step=p["reductions_per_step"])
        values = {"cost_per_cell": cpc, "grid": p["grid"], "steps": p["steps"]}
        units = {"cost_per_cell": "s", "grid": "count", "steps": "count"}
        for f in p["fabrics"]:
            key = f.replace("-", "_")
            d = ds.sel(fabric=f)
            values[f"saturation_cores_{key}"] = int(d["saturation_cores"])
            values[f"time_to_solution_s_{key}"] = float(d["time_per_step"].min()) * p["steps"]
            units[f"saturation_cores_{key}"] = "cores"
            units[f"time_to_solution_s_{key}"] = "s"
        return Result(scenario=s, clock="virtual", summary=summary_dataset(values, units, {"notes": ""}),
                      data={"scaling": ds})

    def _real(self, s):
        import time

        from hpclab.result import Result, summary_dataset
        from hpclab.workloads.cae.solver import run_heat

        p = s.workload
        c = s.cluster
        rows = []
        wall0 = time.perf_counter()
        spec = s.cluster_spec()
        if spec is not None:  # a scheduler's workers, or the spec file's jobs
            wait = c["timeout"] if spec.jobqueue else 10.0  # jobs may queue; a scheduler answers
            with spec.client(("numba",), workers=c["workers"], timeout=wait) as client:
                n = len(client.scheduler_info()["workers"])
                rows.append((n, run_heat(p["real_grid"], p["ndim"], steps=p["steps"], client=client,
                                         steps_per_exchange=p["steps_per_exchange"])))
        else:
            for w in sorted({1, c["workers"]}):
                rows.append((w, run_heat(p["real_grid"], p["ndim"], steps=p["steps"], workers=w,
                                         steps_per_exchange=p["steps_per_exchange"])))
        workers = np.array([w for w, _ in rows])
        sps = np.array([r.attrs["seconds_per_step"] for _, r in rows])
        err = np.array([r.attrs["max_abs_error"] for _, r in rows])
        ds = xr.Dataset({"seconds_per_step": ("workers", sps, {"units": "s"}),
                         "speedup": ("workers", sps[0] / sps, {"units": "1"}),
                         "max_abs_error": ("workers", err, {"units": "1"})},
                        coords={"workers": ("workers", workers, {"units": "count"})},
                        attrs={"grid": p["real_grid"], "ndim": p["ndim"], "steps": p["steps"]})
        values = {"grid": p["real_grid"], "steps": p["steps"], "workers": int(workers.max()),
                  "seconds_per_step": float(sps[-1]), "speedup": float(sps[0] / sps[-1]),
                  "max_abs_error": float(err.max()), "wall_s": time.perf_counter() - wall0}
        units = {"grid": "count", "steps": "count", "workers": "count", "seconds_per_step": "s",
                 "speedup": "1", "max_abs_error": "1", "wall_s": "s"}
        return Result(scenario=s, clock="real", summary=summary_dataset(values, units, {"notes": ""}),
                      data={"solver": ds})
