"""Planning helpers that combine the pieces: best layouts, fabric comparison, goodput needs."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_positive
from hpclab.workloads.llm.cluster import cluster as _cluster
from hpclab.workloads.llm.model import transformer
from hpclab.workloads.llm.parallel import MAX_GPUS, check_gpus, search
from hpclab.workloads.llm.reliability import (checkpoint_bytes, checkpoint_time, goodput_at_optimum,
                                              goodput_curve, mtbf)

__all__ = ["default_global_batch", "compare_fabrics", "goodput_requirements", "plan", "BREAKDOWN",
           "MAX_GPUS", "check_gpus"]

#: The parts of a step, in the order views stack them.
BREAKDOWN = ("compute_time", "tp_comm", "cp_comm", "ep_comm", "bubble", "pp_comm", "dp_comm",
             "optimizer_step")


def default_global_batch(model, gpus=None) -> int:
    """Sequences per step as published runs choose them: about ``max(4M, 1,024 x gpus)`` tokens.

    GPT-3 175B trained with 3.2M tokens per batch (Brown et al. 2020, Table 2.1); Llama 3 405B
    with 16M tokens on 16,384 GPUs, 1,024 tokens per GPU (Dubey et al. 2024, Table 4); the
    Megatron-LM README strong-scales GPT-3 at 1,152 x 4,096 = 4.7M tokens on up to 4,608 GPUs.
    Without ``gpus`` the batch is the 4M-token power of two; with ``gpus`` it is the odd part of
    the GPU count times a power of two, so that every data-parallel size dividing ``gpus`` with
    a power-of-two remainder divides the batch (``plan --gpus 100000`` finds layouts).
    """
    m = transformer(model)
    if gpus is None:
        return int(2 ** round(math.log2(4.0e6 / m.seq_length)))
    g = check_gpus(gpus)
    target = max(4.0e6, 1024.0 * g) / m.seq_length
    odd = g // (g & -g)
    return int(odd * 2 ** max(0, round(math.log2(max(target / odd, 1.0)))))


def compare_fabrics(model, gpus, global_batch=None, *, fabrics=("rdma-hpn7", "erdma", "tcp-vpc"),
                    node="lingjun.8xh800", efficiency=None, **search_options) -> xr.Dataset:
    """The best layout on each backend fabric and its step-time breakdown (dim ``fabric``)."""
    model = transformer(model)
    gpus = check_gpus(gpus)
    gb = default_global_batch(model, gpus) if global_batch is None else int(global_batch)
    rows = []
    for fab in fabrics:
        best = search(model, _cluster(node, fab), gpus, gb, top=1, efficiency=efficiency,
                      **search_options).isel(layout=0)
        rows.append(best.drop_vars("layout"))
    ds = xr.concat(rows, dim="fabric", coords="all", compat="override")
    ds = ds.assign_coords(fabric=list(fabrics))
    ds.attrs.update(model=model.name, gpus=int(gpus), global_batch=gb, node=node)
    return ds


def _max_failure_scale(target, d, M1, restarts, iterations=80):
    """Largest multiplier ``x`` of the failure rate (MTBF ``M1 / x``) at which the goodput at the
    Daly interval still reaches ``target``, per restart time: bisection on ``log x`` for all restart
    times at once (goodput at the optimum falls monotonically with the failure rate)."""
    lo = np.full(restarts.shape, -30.0)  # log x: 1e-13 x the rate always reaches a target < 1
    hi = np.full(restarts.shape, 30.0)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        with np.errstate(over="ignore"):  # absurd failure rates: E[T] overflows, goodput 0
            ok = goodput_at_optimum(d, M1 / np.exp(mid), restarts)[1] >= target
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.exp(lo)


def goodput_requirements(model, cluster, gpus, *, storage="cpfs", restart=None, failure_scale=None,
                         target=0.99, catalog=None) -> xr.Dataset:
    """What it takes to reach a goodput ``target`` (99% effective training time by default).

    Returns a Dataset with ``goodput`` (at the Young/Daly interval) and ``interval`` on dims
    ``restart`` (seconds) x ``failure_scale`` (x the catalog failure rate), and
    ``max_failure_scale`` along ``restart``: the largest failure-rate multiplier that still reaches
    ``target`` with that restart time (solved by bisection; below 1 means fewer failures than the
    catalog's are needed), with ``mtbf_needed`` (seconds) beside it. Attrs: ``storage``,
    ``checkpoint_time``, the catalog ``mtbf`` and ``catalog_restart``, ``target``.
    """
    from hpclab.catalog import default

    cat = catalog or default()
    if not 0 < float(target) < 1:
        raise HpclabError(f"target must be a goodput in (0, 1), got {target!r}")
    gpus = check_positive("gpus", gpus, integer=True)
    nodes = int(np.ceil(gpus / cluster.gpus_per_node))
    restarts = np.asarray([30, 60, 120, 300, 600, 1200] if restart is None else restart, dtype=float)
    scales = np.asarray([0.1, 0.2, 0.5, 1.0, 2.0] if failure_scale is None else failure_scale, dtype=float)
    d = checkpoint_time(checkpoint_bytes(model), cat.storage(storage), nodes)
    M1 = mtbf(cluster, nodes)
    M = M1 / scales
    tau, g = goodput_at_optimum(d, M[None, :], restarts[:, None])
    need = _max_failure_scale(float(target), d, M1, restarts)
    return xr.Dataset(
        {"goodput": (("restart", "failure_scale"), g, {"units": "1", "long_name": "goodput at Young/Daly"}),
         "interval": (("restart", "failure_scale"), np.broadcast_to(tau, g.shape).copy(), {"units": "s"}),
         "max_failure_scale": ("restart", need, {"units": "1", "long_name":
                                                 f"largest failure-rate multiplier reaching {target:g}"}),
         "mtbf_needed": ("restart", M1 / need, {"units": "s", "long_name": f"MTBF needed for {target:g}"})},
        coords={"restart": ("restart", restarts, {"units": "s"}),
                "failure_scale": ("failure_scale", scales, {"units": "1"})},
        attrs={"storage": storage, "checkpoint_time": d, "mtbf": M1, "nodes": nodes,
               "catalog_restart": cluster.restart_time, "target": float(target)})


def plan(model="gpt3-175b", gpus=1024, *, fabric="rdma-hpn7", node="lingjun.8xh800",
         global_batch=None, top=5, storages=("cpfs", "oss"), efficiency=None, topology="auto") -> dict:
    """Best layouts, stragglers and goodput for one model on one cluster: ``{"layouts": Dataset,
    "stragglers": Dataset (the best layout's step at this scale), "goodput": Dataset,
    "cluster": Cluster, "global_batch": int, "default_batch": bool, "networks": Dataset
    (:func:`hpclab.workloads.llm.networks.network_separation` on the first storage)}``. Without
    ``global_batch`` the batch scales with the GPUs (:func:`default_global_batch`). ``topology``:
    a preset name or Topology of the backend network (``"auto"``: the fabric's default, see
    :func:`hpclab.workloads.llm.cluster.cluster`)."""
    gpus = check_gpus(gpus)
    model = transformer(model)
    cl = _cluster(node, fabric, topology=topology)
    if gpus % cl.gpus_per_node and gpus > cl.gpus_per_node:
        raise HpclabError(f"gpus must be a multiple of the {cl.gpus_per_node} GPUs per node, got {gpus}")
    gb = default_global_batch(model, gpus) if global_batch is None else check_positive(
        "global_batch", global_batch, integer=True)
    top = check_positive("top", top, integer=True)
    best = search(model, cl, gpus, gb, top=top, efficiency=efficiency)
    good = goodput_curve(model, cl, gpus, storages=storages)
    from hpclab.workloads.llm.stragglers import straggler_step_time

    strag = straggler_step_time(float(best.step_time[0]), gpus)
    from hpclab.workloads.llm.networks import network_separation

    # at the best layout, with the stragglers' slowdown as the goodput lines of the plan use it
    nets = network_separation(model, cl, gpus, layout=best.isel(layout=0), storage=storages[0],
                              slowdown=float(strag.slowdown_factor[0]))
    return {"layouts": best, "stragglers": strag, "goodput": good, "cluster": cl, "global_batch": gb,
            "default_batch": global_batch is None, "networks": nets}
