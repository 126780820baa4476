"""Planning helpers that combine the pieces: best layouts, fabric comparison, goodput needs."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_positive
from hpclab.workloads.llm.cluster import cluster as _cluster
from hpclab.workloads.llm.model import transformer
from hpclab.workloads.llm.parallel import search
from hpclab.workloads.llm.reliability import (checkpoint_bytes, checkpoint_time, goodput_at_optimum,
                                              goodput_curve, mtbf)

__all__ = ["default_global_batch", "compare_fabrics", "goodput_requirements", "plan", "BREAKDOWN"]

#: The parts of a step, in the order views stack them.
BREAKDOWN = ("compute_time", "tp_comm", "cp_comm", "bubble", "pp_comm", "dp_comm", "optimizer_step")


def default_global_batch(model) -> int:
    """Sequences per step giving about 4M tokens (a power of two): GPT-3 175B trained with 3.2M
    tokens per batch (Brown et al. 2020, Table 2.1), Llama 3 405B with 4M to 16M (section 3.4.1)."""
    m = transformer(model)
    return int(2 ** round(math.log2(4.0e6 / m.seq_length)))


def compare_fabrics(model, gpus, global_batch=None, *, fabrics=("rdma-hpn7", "erdma", "tcp-vpc"),
                    node="lingjun.8xh800", efficiency=None, **search_options) -> xr.Dataset:
    """The best layout on each backend fabric and its step-time breakdown (dim ``fabric``)."""
    model = transformer(model)
    gb = default_global_batch(model) if global_batch is None else int(global_batch)
    rows = []
    for fab in fabrics:
        best = search(model, _cluster(node, fab), gpus, gb, top=1, efficiency=efficiency,
                      **search_options).isel(layout=0)
        rows.append(best.drop_vars("layout"))
    ds = xr.concat(rows, dim="fabric", coords="all", compat="override")
    ds = ds.assign_coords(fabric=list(fabrics))
    ds.attrs.update(model=model.name, gpus=int(gpus), global_batch=gb, node=node)
    return ds


def goodput_requirements(model, cluster, gpus, *, storage="cpfs", restart=None, failure_scale=None,
                         catalog=None) -> xr.Dataset:
    """Goodput at the Young/Daly interval over restart times x failure-rate multipliers.

    Answers "what does it take to reach 99% effective training time": the Dataset has
    ``goodput`` on dims ``restart`` (seconds) x ``failure_scale`` (x the catalog rate), plus the
    checkpoint time for ``storage`` and the catalog's own point in the attrs.
    """
    from hpclab.catalog import default

    cat = catalog or default()
    nodes = int(np.ceil(gpus / cluster.gpus_per_node))
    restarts = np.asarray([30, 60, 120, 300, 600, 1200] if restart is None else restart, dtype=float)
    scales = np.asarray([0.1, 0.2, 0.5, 1.0, 2.0] if failure_scale is None else failure_scale, dtype=float)
    d = checkpoint_time(checkpoint_bytes(model), cat.storage(storage), nodes)
    M = mtbf(cluster, nodes) / scales
    tau, g = goodput_at_optimum(d, M[None, :], restarts[:, None])
    return xr.Dataset(
        {"goodput": (("restart", "failure_scale"), g, {"units": "1", "long_name": "goodput at Young/Daly"}),
         "interval": (("restart", "failure_scale"), np.broadcast_to(tau, g.shape).copy(), {"units": "s"})},
        coords={"restart": ("restart", restarts, {"units": "s"}),
                "failure_scale": ("failure_scale", scales, {"units": "1"})},
        attrs={"storage": storage, "checkpoint_time": d, "mtbf": mtbf(cluster, nodes), "nodes": nodes,
               "catalog_restart": cluster.restart_time})


def plan(model="gpt3-175b", gpus=1024, *, fabric="rdma-hpn7", node="lingjun.8xh800",
         global_batch=None, top=5, storages=("cpfs", "oss"), efficiency=None) -> dict:
    """Best layouts, stragglers and goodput for one model on one cluster: ``{"layouts": Dataset,
    "stragglers": Dataset (the best layout's step at this scale), "goodput": Dataset,
    "cluster": Cluster, "global_batch": int}``."""
    check_positive("gpus", gpus, integer=True)
    model = transformer(model)
    cl = _cluster(node, fabric)
    if gpus % cl.gpus_per_node and gpus > cl.gpus_per_node:
        raise HpclabError(f"gpus must be a multiple of the {cl.gpus_per_node} GPUs per node, got {gpus}")
    gb = default_global_batch(model) if global_batch is None else check_positive(
        "global_batch", global_batch, integer=True)
    top = check_positive("top", top, integer=True)
    best = search(model, cl, gpus, gb, top=top, efficiency=efficiency)
    good = goodput_curve(model, cl, gpus, storages=storages)
    from hpclab.workloads.llm.stragglers import straggler_step_time

    strag = straggler_step_time(float(best.step_time[0]), gpus)
    return {"layouts": best, "stragglers": strag, "goodput": good, "cluster": cl, "global_batch": gb}
