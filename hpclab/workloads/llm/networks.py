"""Front-end and back-end networks: storage traffic on the collectives' NICs, or on its own network.

HPN 7.0 gives each Lingjun host 8 back-end NICs for the GPUs' collectives and a ninth, front-end
NIC for storage and the VPC (Qian et al., 'Alibaba HPN', SIGCOMM 2024); the source article
credits the split with keeping storage traffic from disturbing training. Two set-ups:

``separate``
    Checkpoint writes and data loading leave by the front-end NIC ``F`` (``network_bandwidth`` of
    the instance type): the collectives keep the whole back-end; storage runs at
    ``min(c, F)`` per host, ``c = min(client_throughput, throughput / nodes)`` (the storage
    system's per-client and aggregate limits, catalog ``storage``).
``shared``
    Storage traffic rides ``k`` of the host's back-end NICs (``storage_nics``, an assumption),
    one link of effective bandwidth ``L`` each. Per NIC, bandwidth is shared max-min fairly
    between ``n_c`` collective flows (elastic: they take what is left) and ``n_s`` storage flows
    capped by the storage system (``c / k`` per NIC): the storage flows get
    ``g = min(c / k, L n_s / (n_c + n_s))`` and the collectives ``L - g``. NCCL stripes every
    collective over all the rails and waits for the slowest, so while storage flows are active
    the inter-node collectives run at the share ``phi = 1 - g / L`` of the back-end: the step
    is re-evaluated by :func:`hpclab.workloads.llm.step_time` at the layout with the back-end
    bandwidth scaled by ``phi`` (which keeps its overlap and exposure rules). Storage, for its
    part, gets ``k g`` while the collectives are on the wire (a share ``u`` of the step: the
    bandwidth term of the inter-node communication, before overlap, over the step; the pipeline's
    hidden steady-state sends are not counted) and
    ``min(c, k L)`` while they are not: ``r = u k g + (1 - u) min(c, k L)``.

Sharing in time. Data loading is a background flow of ``D = batch x seq x token_bytes / nodes``
bytes per host per step (prefetched: it stalls the step only by what exceeds a step). A
checkpoint of ``checkpoint_bytes`` (``K / nodes`` per host) is a burst:

* ``blocking``: training stops while it writes (no collectives on the wire): it takes
  ``delta = latency + K / (nodes x rate)`` (:func:`hpclab.workloads.llm.checkpoint_time`) at
  ``rate = min(c, F)`` (separate) or ``min(c, k L)`` (shared), and costs ``delta`` of training.
* ``async``: training goes on while the checkpoint drains (snapshot copy to host memory not
  modelled); the write takes ``delta`` at the rates above (shared: the time-shared ``r``), and it
  costs the training time lost to the slower steps of its window, ``delta (1 - S / S_ck)``
  (zero on a separate network). A failure while a write is in flight loses the previous interval
  too: to first order each failure costs ``delta`` more, counted as a restart longer by
  ``delta``; checkpoints do not overlap (interval at least ``delta``).

Goodput is Daly's (:mod:`hpclab.workloads.llm.reliability`) at the Young/Daly interval of the
checkpoint's cost. Not modelled: tail-latency inflation of collectives from storage incast and
switch-buffer congestion (no published figure was found), and congestion in the fabric beyond
the host's links (the fat tree is taken as non-blocking for storage).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_choice, check_finite_array, check_positive

__all__ = ["SETUPS", "CHECKPOINT_MODES", "fair_share", "network_separation", "network_setups"]

SETUPS = ("shared", "separate")
CHECKPOINT_MODES = ("blocking", "async")
#: inter-node communication of a step: its totals before overlap (pp_comm is the exposed part)
_INTER = ("dp_comm_total", "pp_comm", "cp_comm", "ep_comm")
_LAYOUT = ("tp", "pp", "dp", "cp", "ep", "micro_batch", "interleave", "zero", "recompute")


def fair_share(link, storage_demand, collective_flows=1, storage_flows=1):
    """Max-min fair split of one link of ``link`` B/s between ``collective_flows`` elastic
    collective flows and ``storage_flows`` storage flows that together want ``storage_demand``
    B/s: returns ``(storage, collectives)`` in B/s, ``storage = min(demand, link n_s / (n_c + n_s))``.
    Arguments broadcast."""
    L = check_finite_array("link", link, minimum=0)
    d = check_finite_array("storage_demand", storage_demand, minimum=0, strict=False)
    nc = check_finite_array("collective_flows", collective_flows, minimum=0, strict=False)
    ns = check_finite_array("storage_flows", storage_flows, minimum=0, strict=False)
    if np.any(nc + ns <= 0):
        raise HpclabError("collective_flows + storage_flows must be > 0")
    s = np.minimum(d, L * ns / (nc + ns))
    s = np.where(ns > 0, s, 0.0)
    c = np.where(nc > 0, L - s, 0.0)
    return (s if s.ndim else float(s)), (c if c.ndim else float(c))


def _assumption(name, value, *, integer=False, minimum_zero=False):
    """An assumption of ``data/reference/llm_training.yaml``, or the caller's value checked."""
    from hpclab.workloads.llm.validation import assumption

    if value is None:
        return assumption(name)
    if minimum_zero:
        return float(check_finite_array(name, value, minimum=0, strict=False))
    return check_positive(name, value, integer=integer)


def _step_at(model, cluster, layout, share=1.0):
    """One layout's step (a Dataset row) with the back-end bandwidth times ``share``."""
    from hpclab.workloads.llm.parallel import step_time

    cl = cluster if share == 1.0 else replace(
        cluster, fabric=cluster.fabric.with_(beta=cluster.fabric.beta / share))
    kw = {k: (str(layout[k].values) if k == "recompute" else int(layout[k])) for k in _LAYOUT}
    return step_time(model, cl, global_batch=int(layout.global_batch), check=False,
                     efficiency=float(layout.attrs["efficiency"]),
                     memory_efficiency=float(layout.attrs["memory_efficiency"]), **kw).isel(layout=0)


def network_separation(model, cluster, gpus, global_batch=None, *, layout=None, storage="cpfs",
                       checkpoint=CHECKPOINT_MODES, slowdown=1.0, storage_nics=None,
                       collective_flows=None, storage_flows=None, token_bytes=None,
                       checkpoint_bytes=None, catalog=None) -> xr.Dataset:
    """Step time, checkpoint time, data-loading stall and goodput with storage traffic on the
    back-end NICs (``shared``) or on a separate front-end network (``separate``): the module
    docstring's model, for the best layout (or ``layout``, a row of
    :func:`hpclab.workloads.llm.search`) at ``gpus`` GPUs.

    Parameters
    ----------
    storage : str or hpclab.catalog.Storage
        Where checkpoints go and data comes from (catalog name, or a Storage to try other figures).
    checkpoint : sequence of {"blocking", "async"}
        How checkpoints share time with training (dim ``checkpoint``).
    slowdown : float >= 1
        Multiplier on every step (stragglers, :func:`straggler_step_time`'s ``slowdown_factor``).
    storage_nics, collective_flows, storage_flows, token_bytes : optional
        Override the assumptions of ``data/reference/llm_training.yaml`` (back-end NICs storage
        spreads over, flows per NIC, bytes per training token read by the data loader).
    checkpoint_bytes : float, optional
        Bytes of a full checkpoint (default :func:`checkpoint_bytes` of the model).

    Returns
    -------
    xarray.Dataset on dims ``setup`` (shared, separate) x ``checkpoint``: ``step_time`` (s, outside
    checkpoints, with the data-loading stall), ``data_load_stall`` (s per step),
    ``step_time_checkpointing`` (s: a step while an async checkpoint drains; blocking: no step
    runs), ``collective_share`` (1: the back-end share the collectives keep while a checkpoint
    drains), ``storage_rate`` (B/s per host, checkpoint writes), ``checkpoint_time`` (s, the write),
    ``checkpoint_cost`` (s of training lost per checkpoint), ``optimal_interval`` (s),
    ``goodput`` (1) and ``tokens_per_s`` (1/s, effective, after goodput).
    """
    from hpclab.catalog import default
    from hpclab.workloads.llm.model import transformer
    from hpclab.workloads.llm.parallel import check_gpus, search
    from hpclab.workloads.llm.plan import default_global_batch
    from hpclab.workloads.llm.reliability import (checkpoint_bytes as _ckb, checkpoint_time, goodput,
                                                  mtbf, young_daly)

    cat = catalog or default()
    model = transformer(model)
    gpus = check_gpus(gpus)
    modes = tuple(str(check_choice("checkpoint", m, CHECKPOINT_MODES)) for m in np.atleast_1d(checkpoint))
    slow = float(check_finite_array("slowdown", slowdown, minimum=1.0, strict=False))
    if layout is None:
        gb = default_global_batch(model, gpus) if global_batch is None else check_positive(
            "global_batch", global_batch, integer=True)
        layout = search(model, cluster, gpus, gb, top=1).isel(layout=0)
    gb = int(layout.global_batch)
    nodes = int(np.ceil(gpus / cluster.gpus_per_node))
    links = int(cluster.fabric.links_per_host)
    k = min(int(_assumption("storage_nics", storage_nics, integer=True)), links)
    nc = _assumption("collective_flows_per_nic", collective_flows, integer=True)
    ns = _assumption("storage_flows_per_nic", storage_flows, integer=True)
    tok_b = _assumption("token_bytes", token_bytes, minimum_zero=True)
    st = cat.storage(storage) if isinstance(storage, str) else storage
    ck = _ckb(model) if checkpoint_bytes is None else float(
        check_finite_array("checkpoint_bytes", checkpoint_bytes, minimum=0, strict=False))
    L = float(cluster.fabric.bandwidth)  # one back-end link, effective
    F = float(cluster.node.network_bandwidth)  # the front-end NIC
    c = min(st.client_throughput or st.throughput, st.throughput / nodes)  # storage per host
    data = gb * model.seq_length * tok_b / nodes  # bytes per host per step
    M, R = mtbf(cluster, nodes), cluster.restart_time

    full, half = _step_at(model, cluster, layout), _step_at(model, cluster, layout, 0.5)
    S0 = float(full.step_time)
    # the NICs' busy time: the bandwidth term of each inter-node part, X(beta / 0.5) - X(beta);
    # at a share phi of the bandwidth it is busy0 / phi
    busy0 = sum(float(half[v]) - float(full[v]) for v in _INTER)
    u0 = min(1.0, busy0 / S0) if S0 > 0 else 0.0
    out = {v: np.zeros((len(SETUPS), len(modes))) for v in (
        "step_time", "data_load_stall", "step_time_checkpointing", "collective_share",
        "storage_rate", "checkpoint_time", "checkpoint_cost", "optimal_interval", "goodput",
        "tokens_per_s")}
    for i, setup in enumerate(SETUPS):
        S_data = S0  # the step with the data loader's flow beside the collectives, before stalls
        if setup == "separate":
            S, stall = S0, max(0.0, data / min(c, F) - S0) if data > 0 else 0.0
        else:
            # data loading: a background flow of data / S per host on the storage NICs
            g_d, _ = fair_share(L, min(c, data / S0) / k, nc, ns)
            S = S_data = float(_step_at(model, cluster, layout, 1.0 - g_d / L).step_time) if g_d > 0 else S0
            # prefetching reads at the storage flows' share while collectives are on the wire
            avail = u0 * k * fair_share(L, c / k, nc, ns)[0] + (1 - u0) * min(c, k * L)
            stall = max(0.0, data / avail - S) if data > 0 else 0.0
        S = (S + stall) * slow
        for j, mode in enumerate(modes):
            if setup == "separate":
                rate, S_ck, phi = min(c, F), S, 1.0
            elif mode == "blocking":  # the collectives are idle while the checkpoint writes
                rate, S_ck, phi = min(c, k * L), S, 1.0
            else:  # the checkpoint flow wants all the storage gives a host (none without bytes)
                g, _ = fair_share(L, (c if ck > 0 else 0.0) / k, nc, ns)
                phi = 1.0 - g / L
                # the data flow goes on during the write: never faster than outside it
                S_raw = max(float(_step_at(model, cluster, layout, phi).step_time) if phi < 1 else S0, S_data)
                S_ck = (S_raw + stall) * slow
                u = min(1.0, busy0 / phi / S_raw) if S_raw > 0 else 0.0
                rate = u * k * g + (1.0 - u) * min(c, k * L)
            d = checkpoint_time(ck, st, nodes, nic_bandwidth=rate)
            rate = rate if ck > 0 else np.nan  # no checkpoint flow
            if mode == "blocking":
                cost, restart = d, R
            else:
                cost, restart = d * (1.0 - S / S_ck), R + d
            tau = max(young_daly(cost, M) if cost > 0 else 0.0, d, S)
            gp = goodput(tau, cost, M, restart)
            for name, val in (("step_time", S), ("data_load_stall", stall * slow),
                              ("step_time_checkpointing", np.nan if mode == "blocking" else S_ck),
                              ("collective_share", phi), ("storage_rate", rate), ("checkpoint_time", d),
                              ("checkpoint_cost", cost), ("optimal_interval", tau), ("goodput", gp),
                              ("tokens_per_s", gb * model.seq_length / S * gp)):
                out[name][i, j] = val
    dims = ("setup", "checkpoint")
    meta = {"step_time": ("s", "step outside checkpoints, with data-loading stall"),
            "data_load_stall": ("s", "data loading beyond a step"),
            "step_time_checkpointing": ("s", "step while an async checkpoint drains"),
            "collective_share": ("1", "back-end share left to collectives during a checkpoint"),
            "storage_rate": ("B/s", "checkpoint write rate per host"),
            "checkpoint_time": ("s", "checkpoint write"),
            "checkpoint_cost": ("s", "training time lost per checkpoint"),
            "optimal_interval": ("s", "Young/Daly interval (at least one write)"),
            "goodput": ("1", "effective training time"),
            "tokens_per_s": ("1/s", "effective tokens/s")}
    return xr.Dataset(
        {v: (dims, out[v], {"units": u, "long_name": n}) for v, (u, n) in meta.items()},
        coords={"setup": list(SETUPS), "checkpoint": list(modes)},
        attrs={"model": model.name, "gpus": gpus, "nodes": nodes, "global_batch": gb,
               "storage": st.name, "frontend_nic": F, "backend_link": L, "backend_links": links,
               "storage_nics": k, "collective_flows_per_nic": nc, "storage_flows_per_nic": ns,
               "storage_per_host": c, "checkpoint_bytes": ck, "data_bytes_per_host": data,
               "backend_busy": u0, "mtbf": M, "restart": R, "slowdown": slow,
               "not_modelled": "tail latency of collectives from storage incast; fabric congestion "
                               "beyond the host's links; the async snapshot copy to host memory"})


def network_setups(model="gpt3-175b", cluster=None, gpus=(1024, 16384), **options) -> xr.Dataset:
    """:func:`network_separation` at several GPU counts (dim ``gpus``), each at its best layout
    and default global batch (``cluster`` default: Lingjun 8x H800 on HPN 7.0)."""
    from hpclab.workloads.llm.cluster import cluster as _cluster

    cl = _cluster() if cluster is None else cluster
    counts = [int(g) for g in np.atleast_1d(gpus)]
    if not counts:
        raise HpclabError("gpus must name at least one GPU count")
    rows = [network_separation(model, cl, g, **options) for g in counts]
    keep = ("global_batch", "nodes", "storage_per_host", "data_bytes_per_host", "backend_busy", "mtbf")
    ds = xr.concat(rows, dim="gpus", combine_attrs="drop")
    ds = ds.assign_coords(gpus=("gpus", counts, {"units": "1"}))
    for key in keep:
        ds[key] = ("gpus", [r.attrs[key] for r in rows])
    ds.attrs.update({k: v for k, v in rows[0].attrs.items() if k not in keep + ("gpus",)})
    for v in ds.data_vars:
        if v in rows[0]:
            ds[v].attrs.update(rows[0][v].attrs)
    units = {"global_batch": "1", "nodes": "1", "storage_per_host": "B/s", "data_bytes_per_host": "B",
             "backend_busy": "1", "mtbf": "s"}
    for key, unit in units.items():
        ds[key].attrs["units"] = unit
    return ds
