"""The CAE scaling model: time per step of a domain-decomposed stencil code on P cores.

``T_step(P) = T_compute + (T_halo + T_runtime) / k + r * T_allreduce``

* ``T_compute = c * prod_i (e_i + n_i (k - 1))`` -- the busiest sub-domain's cells (``e_i`` =
  ``ceil(N_i / p_i)`` per axis on a balanced ``p_1 x ... x p_d = P`` process grid, as
  ``MPI_Dims_create`` makes it), plus the redundant halo cells temporal blocking recomputes
  (``n_i = min(p_i - 1, 2)`` neighbours on axis ``i``), times ``c``, the measured seconds per
  cell and step of the real kernel (:func:`measure_cost_per_cell`).
* ``T_halo`` -- one exchange of a halo ``k`` cells wide, message by message with the Hockney
  point-to-point model (:func:`hpclab.network.p2p_time`): ``n_i`` face messages of
  ``k prod_{j != i} e_j * itemsize`` bytes per axis and, when ``k > 1``, the edge and corner
  messages (``k**|S| prod_{j not in S} e_j`` cells for each set ``S`` of two or more axes); each
  message pays ``alpha + hops * per_hop_latency + n beta`` (floored by the fabric's message rate).
  ``hops`` are switch hops beyond the first, set by the placement (:data:`PLACEMENT_HOPS`, or a
  :class:`hpclab.network.Topology`).
* ``T_runtime`` -- an optional fixed cost per exchange round (``exchange_overhead``): what a
  task-based runtime such as Dask adds per round (scheduling, block copies); 0 by default, as
  for an MPI code. Calibrate it from real runs.
* ``r * T_allreduce`` -- global reductions per step (the residual norm of an iterative solver:
  ``r = 1 / check_every``), each an allreduce of ``reduction_nbytes`` over P ranks
  (:func:`hpclab.network.collective_time`, automatic algorithm choice), its messages crossing the
  same extra hops as the halo's (``alpha + hops * per_hop_latency``; a Topology is passed through).

Messages are sent one after the other (no overlap of communication with computation or of
messages with each other): an upper bound on the exchange time. All halo messages cross the
fabric (ranks that share a host would use shared memory): conservative for the fabric.

Sources: Hockney, *Parallel Computing* 20 (1994) 389 (alpha-beta); Gropp, Lusk & Skjellum,
*Using MPI* (halo exchange and ghost cells); Wonnacott, IPDPS 2000, and Datta et al., SC 2008
(time skewing / temporal blocking: ``k`` steps per exchange for a ``k``-wide halo).
"""

from __future__ import annotations

import functools
import itertools
import math
import time

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_choice, check_finite_array, check_nonnegative, check_positive

__all__ = ["PLACEMENT_HOPS", "FABRICS", "process_grid", "smooth_cores", "step_time", "scaling",
           "measure_cost_per_cell", "provisioning_time", "staging_time", "time_to_solution"]

#: Switch hops beyond the first (which the fabric's ``alpha`` includes) between neighbouring
#: sub-domains, per placement of the job's hosts in a leaf-spine(-core) Clos network: hosts under
#: one leaf switch cross no extra switch; a placement group (hosts close together, one pod) goes
#: leaf -> spine -> leaf (+2); spread over a zone, up to the core and down (+4). Same convention
#: as :meth:`hpclab.network.Topology.extra_hops`; pass an integer or a Topology for your own.
PLACEMENT_HOPS = {"same-leaf": 0, "placement-group": 2, "same-zone": 4}

#: The fabrics the scaling sweep compares by default (catalog names).
FABRICS = ("tcp-vpc", "erdma", "rdma-hpn7")


# --------------------------------------------------------------------------- decomposition
def _largest_divisor_at_most(p: np.ndarray, limit: np.ndarray) -> np.ndarray:
    cand = np.arange(1, int(np.max(limit)) + 2)
    ok = (p[:, None] % cand[None, :] == 0) & (cand[None, :] <= limit[:, None])
    return np.max(np.where(ok, cand[None, :], 1), axis=1)


def process_grid(cores, ndim: int = 2) -> np.ndarray:
    """A balanced process grid for each core count: shape ``cores.shape + (ndim,)``, largest first.

    ``p_1 >= ... >= p_d``, ``prod p_i = P``, each factor the largest divisor not above the
    ``d``-th root of what is left (like ``MPI_Dims_create``; a prime P gives slabs ``P x 1``).
    """
    if ndim not in (2, 3):
        raise HpclabError(f"ndim must be one of 2, 3; got {ndim!r}")
    p = check_finite_array("cores", cores, minimum=1, strict=False, integer=True)
    shape = p.shape
    flat = p.reshape(-1).astype(np.int64)
    uniq, inv = np.unique(flat, return_inverse=True)
    dims = []
    left = uniq.copy()
    for remaining in range(ndim, 1, -1):
        limit = np.floor(left ** (1.0 / remaining) + 1e-9).astype(np.int64)
        f = _largest_divisor_at_most(left, np.maximum(limit, 1))
        dims.append(f)
        left = left // f
    dims.append(left)
    grid = np.sort(np.stack(dims, axis=-1), axis=-1)[:, ::-1]
    return grid[inv].reshape(shape + (ndim,))


@functools.lru_cache(maxsize=8)
def _smooth_numbers(limit: int) -> np.ndarray:
    out = []
    a = 1
    while a <= limit:
        b = a
        while b <= limit:
            c = b
            while c <= limit:
                out.append(c)
                c *= 5
            b *= 3
        a *= 2
    return np.array(sorted(out), dtype=np.int64)


def smooth_cores(lo=1, hi=100_000, num=100) -> np.ndarray:
    """About ``num`` distinct core counts spread evenly in log between ``lo`` and ``hi``, each a
    5-smooth number (``2^a 3^b 5^c``) so that they decompose into balanced grids (the nearest to
    evenly spaced log targets, with more targets until ``num`` distinct counts are found)."""
    check_positive("num", num, integer=True)
    check_positive("lo", lo)
    check_positive("hi", hi)
    smooth = _smooth_numbers(int(2 * hi))
    smooth = smooth[(smooth >= lo) & (smooth <= hi)]
    if smooth.size <= num:
        return smooth.astype(np.int64)
    logs = np.log(smooth)
    m = int(num)
    while True:  # more targets until ``num`` distinct smooth numbers are hit (small counts collide)
        target = np.linspace(logs[0], logs[-1], m)
        picked = np.unique(smooth[np.abs(logs[None, :] - target[:, None]).argmin(axis=1)])
        if picked.size >= num:
            return picked.astype(np.int64)
        m += max(1, int(num) - picked.size)


def _hops(placement, cores, cores_per_host):
    if isinstance(placement, str):
        check_choice("placement", placement, PLACEMENT_HOPS)
        return np.asarray(float(PLACEMENT_HOPS[placement]))
    from hpclab.network import Topology

    if isinstance(placement, Topology):
        hosts = np.ceil(np.asarray(cores, dtype=float) / cores_per_host)
        return placement.extra_hops(hosts)
    return check_finite_array("placement (hops)", placement, minimum=0, strict=False)


def _allreduce(nbytes, P, fab, placement, hops, cores_per_host):
    """The allreduce on the placement the halo messages see: a Topology is passed through to
    :func:`hpclab.network.collective_time`; a hop count adds ``hops * per_hop_latency`` to every
    inter-host message (to alpha), as it does for a halo message."""
    from hpclab.network import Topology, collective_time

    if isinstance(placement, Topology):
        return collective_time("allreduce", nbytes, P, fab, ranks_per_node=cores_per_host, topology=placement)
    out = np.zeros(P.shape)
    for h in np.unique(hops):
        f = fab.with_(alpha=fab.alpha + float(h) * fab.per_hop_latency) if h > 0 else fab
        t = np.broadcast_to(collective_time("allreduce", nbytes, P, f, ranks_per_node=cores_per_host), P.shape)
        out = np.where(hops == h, t, out)
    return out


# --------------------------------------------------------------------------- time per step
def step_time(cores, grid=4096, fabric="erdma", *, cost_per_cell, ndim: int = 2, steps_per_exchange=1,
              placement="placement-group", reductions_per_step=0.0, reduction_nbytes=8, itemsize=8,
              cores_per_host: int = 1, exchange_overhead=0.0) -> xr.Dataset:
    """Modelled seconds per time step of a stencil code on ``cores`` cores (module docstring).

    Parameters
    ----------
    cores : int or array_like
        Cores = ranks = sub-domains (>= 1).
    grid : int or array_like
        Grid points per axis (broadcasts with ``cores``).
    fabric : str or hpclab.network.Fabric
        The network between ranks (catalog name or a Fabric).
    cost_per_cell : float
        Seconds per cell and step of the kernel on one core (measure it:
        :func:`measure_cost_per_cell`, or ``run_heat(...).attrs["seconds_per_cell_step"]``).
    ndim : {2, 3}
    steps_per_exchange : int or array_like
        Temporal blocking ``k`` (halo ``k`` wide, one exchange per ``k`` steps).
    placement : str, number, array or Topology
        A key of :data:`PLACEMENT_HOPS`, a hop count, or a Topology (hops by hosts spanned).
    reductions_per_step : float or array_like
        Allreduces per step (0 for explicit heat; ``1 / check_every`` for an iterative solver).
    reduction_nbytes, itemsize : int
        Bytes reduced per allreduce; bytes per cell.
    cores_per_host : int
        Ranks per host for the allreduce's hierarchical form and for a Topology's host count.
    exchange_overhead : float or array_like
        Seconds of runtime cost per exchange round beyond the messages, paid when there are
        neighbours: task scheduling and block copies in a task-based runtime such as Dask
        (calibrate it from real runs, see the notebook); about 0 for an MPI code.

    Returns
    -------
    xarray.Dataset
        ``time_per_step``, ``compute_time``, ``halo_time``, ``reduction_time`` (s), ``cells_per_core``,
        ``halo_nbytes`` (B received per exchange by the busiest sub-domain), ``halo_messages``,
        broadcast over the inputs (dims ``dim_0``... for arrays; use :func:`scaling` for named
        sweeps). Points whose sub-domain is thinner than the halo are NaN (``feasible`` False).
    """
    arrays, attrs = _step_arrays(cores, grid, fabric, cost_per_cell=cost_per_cell, ndim=ndim,
                                 steps_per_exchange=steps_per_exchange, placement=placement,
                                 reductions_per_step=reductions_per_step, reduction_nbytes=reduction_nbytes,
                                 itemsize=itemsize, cores_per_host=cores_per_host,
                                 exchange_overhead=exchange_overhead)
    dims = tuple(f"dim_{i}" for i in range(arrays["time_per_step"].ndim))
    return xr.Dataset({name: xr.Variable(dims, arrays[name], {"units": u, "long_name": long})
                       for name, (u, long) in _VARS.items()}, attrs=attrs)


_VARS = {
    "time_per_step": ("s", "modelled time per step"),
    "compute_time": ("s", "compute per step (busiest sub-domain)"),
    "halo_time": ("s", "halo exchange per step"),
    "reduction_time": ("s", "global reductions per step"),
    "cells_per_core": ("count", "cells of the busiest sub-domain"),
    "halo_nbytes": ("B", "bytes received per exchange by the busiest sub-domain"),
    "halo_messages": ("count", "messages received per exchange by the busiest sub-domain"),
    "feasible": ("1", "sub-domain at least a halo thick"),
}


def _step_arrays(cores, grid, fabric, *, cost_per_cell, ndim, steps_per_exchange, placement, reductions_per_step,
                 reduction_nbytes, itemsize, cores_per_host, exchange_overhead=0.0):
    """The model on plain numpy arrays (no xarray): a dict of arrays and the attrs."""
    from hpclab.network import collective_time, fabric as _fabric, p2p_time

    if ndim not in (2, 3):
        raise HpclabError(f"ndim must be one of 2, 3; got {ndim!r}")
    P = check_finite_array("cores", cores, minimum=1, strict=False, integer=True)
    N = check_finite_array("grid", grid, minimum=3, strict=False, integer=True)
    k = check_finite_array("steps_per_exchange", steps_per_exchange, minimum=1, strict=False, integer=True)
    red = check_finite_array("reductions_per_step", reductions_per_step, minimum=0, strict=False)
    ovh = check_finite_array("exchange_overhead", exchange_overhead, minimum=0, strict=False)
    c = check_positive("cost_per_cell", cost_per_cell)
    check_positive("itemsize", itemsize, integer=True)
    check_positive("reduction_nbytes", reduction_nbytes)
    cores_per_host = check_positive("cores_per_host", cores_per_host, integer=True)
    fab = _fabric(fabric)
    P, N, k, red, ovh = np.broadcast_arrays(P, N, k, red, ovh)
    pg = process_grid(P, ndim).astype(float)                       # (..., d)
    e = np.ceil(N[..., None] / pg)                                  # extents of the busiest block
    nb = np.minimum(pg - 1.0, 2.0)                                  # neighbours per axis
    thinnest = np.floor(N[..., None] / pg)                          # the smallest block of a balanced split
    feasible = np.all((thinnest >= k[..., None]) | (nb == 0), axis=-1) & np.all(pg <= N[..., None], axis=-1)
    compute = c * np.prod(e + nb * (k[..., None] - 1.0), axis=-1)
    hops = np.broadcast_to(_hops(placement, P, cores_per_host), P.shape)
    halo = np.zeros(P.shape)
    nbytes = np.zeros(P.shape)
    messages = np.zeros(P.shape)
    for size in range(1, ndim + 1):
        for S in itertools.combinations(range(ndim), size):
            count = np.prod(nb[..., list(S)], axis=-1)
            if size > 1:  # edges and corners: only a stencil stepped k > 1 times needs them
                count = np.where(k > 1, count, 0.0)
            others = [j for j in range(ndim) if j not in S]
            b = k ** size * (np.prod(e[..., others], axis=-1) if others else 1.0) * itemsize
            halo = halo + p2p_time(np.maximum(b, 1.0), fab, hops=hops, messages=count)
            nbytes = nbytes + count * b
            messages = messages + count
    allreduce = np.broadcast_to(_allreduce(float(reduction_nbytes), P, fab, placement, hops, cores_per_host), P.shape)
    reduction = np.where(red > 0, red * allreduce, 0.0)
    halo = halo + np.where(messages > 0, ovh, 0.0)
    halo_step = halo / k
    nan = np.where(feasible, 1.0, np.nan)
    arrays = {"time_per_step": (compute + halo_step + reduction) * nan, "compute_time": compute * nan,
              "halo_time": halo_step * nan, "reduction_time": reduction * nan, "cells_per_core": np.prod(e, axis=-1),
              "halo_nbytes": nbytes, "halo_messages": messages, "feasible": feasible}
    attrs = {"fabric": fab.name, "ndim": ndim, "cost_per_cell": c, "itemsize": itemsize,
             "formula": "compute + halo / k + reductions_per_step * allreduce"}
    return arrays, attrs


def scaling(cores=None, grid=4096, fabrics=FABRICS, *, cost_per_cell, mode: str = "strong", ndim: int = 2,
            steps_per_exchange=1, placement="placement-group", reductions_per_step=0.0, itemsize=8,
            cores_per_host: int = 1, exchange_overhead=0.0) -> xr.Dataset:
    """Strong or weak scaling curves per fabric, with parallel efficiency and where they saturate.

    Parameters
    ----------
    cores : array_like, optional
        Core counts (default :func:`smooth_cores` from 1 to 100,000, about 100 points).
    grid : int
        Grid points per axis: of the whole problem (``strong``), or of one core's sub-domain at
        one core (``weak``: the problem grows as ``grid * P**(1/d)`` per axis).
    fabrics : sequence of str or Fabric
        Fabrics to compare (default ``tcp-vpc``, ``erdma``, ``rdma-hpn7``).
    mode : {"strong", "weak"}
    cost_per_cell, ndim, steps_per_exchange, placement, reductions_per_step, itemsize, cores_per_host,
    exchange_overhead
        As :func:`step_time`.

    Returns
    -------
    xarray.Dataset
        Dims ``(fabric, cores)``: ``time_per_step``, ``compute_time``, ``halo_time``,
        ``reduction_time`` (s),
        ``speedup`` and ``efficiency`` (strong: ``T(1) / (P T(P))``; weak: ``T(1) / T(P)``);
        per fabric ``saturation_cores`` (the largest core count still at least 50% efficient:
        beyond it each added core buys less than half a core's worth, the usual cut-off for
        "adding cores stops helping") and ``fastest_cores`` (the count with the shortest step; with
        a latency floor and no reductions it is the largest count swept).
    """
    from hpclab.network import fabric as _fabric

    check_choice("mode", mode, ("strong", "weak"))
    if cores is None:
        cores = smooth_cores(1, 100_000, 100)
    P = check_finite_array("cores", cores, minimum=1, strict=False, integer=True).reshape(-1)
    if isinstance(fabrics, str) or not hasattr(fabrics, "__iter__"):
        fabrics = [fabrics]
    fabs = [_fabric(f) for f in fabrics]
    g = check_positive("grid", grid, integer=True)
    N = g * np.ones_like(P) if mode == "strong" else np.round(g * P ** (1.0 / ndim))
    cores_all = np.concatenate([[1.0], P])
    grid_all = np.concatenate([[g], N])
    cols = {name: [] for name in _VARS}
    for fab in fabs:
        arrays, _ = _step_arrays(cores_all, grid_all, fab, cost_per_cell=cost_per_cell, ndim=ndim,
                                 steps_per_exchange=steps_per_exchange, placement=placement,
                                 reductions_per_step=reductions_per_step, reduction_nbytes=8, itemsize=itemsize,
                                 cores_per_host=cores_per_host, exchange_overhead=exchange_overhead)
        for name in _VARS:
            cols[name].append(arrays[name])
    stacked = {name: np.stack(v) for name, v in cols.items()}
    t = stacked["time_per_step"]
    speed = t[:, :1] / t[:, 1:]
    eff = speed / P[None, :] if mode == "strong" else speed
    tt = np.where(np.isfinite(t[:, 1:]), t[:, 1:], np.inf)
    fastest = P[np.argmin(tt, axis=1)]
    saturation = np.max(np.where(np.nan_to_num(eff, nan=0.0) >= 0.5, P[None, :], 0.0), axis=1)
    names = [f.name for f in fabs]
    dims = ("fabric", "cores")
    data = {name: (dims, stacked[name][:, 1:], {"units": u, "long_name": long})
            for name, (u, long) in _VARS.items() if name != "feasible"}
    data["speedup"] = (dims, speed, {"units": "1", "long_name": "T(1) / T(P)"})
    data["efficiency"] = (dims, eff, {"units": "1", "long_name": "parallel efficiency"})
    data["saturation_cores"] = (("fabric",), saturation, {
        "units": "count", "long_name": "largest core count still >= 50% efficient (adding cores stops helping)"})
    data["fastest_cores"] = (("fabric",), fastest.astype(float), {
        "units": "count", "long_name": "core count with the shortest step"})
    data["grid"] = (("cores",), N, {"units": "count", "long_name": "grid points per axis"})
    return xr.Dataset(data, coords={"fabric": names, "cores": ("cores", P, {"units": "count"})},
                      attrs={"mode": mode, "ndim": ndim, "cost_per_cell": float(cost_per_cell),
                             "steps_per_exchange": int(np.max(steps_per_exchange)), "placement": str(placement)})


# --------------------------------------------------------------------------- calibration
def measure_cost_per_cell(n: int = 512, ndim: int = 2, steps: int = 20, repeat: int = 3) -> float:
    """Seconds per cell and step of the compiled heat kernel on one core, measured here (best of
    ``repeat`` runs of ``steps`` steps on an ``n**ndim`` block, after compiling)."""
    from hpclab.workloads.cae import _kernels

    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    check_positive("repeat", repeat, integer=True)
    if ndim not in (2, 3):
        raise HpclabError(f"ndim must be one of 2, 3; got {ndim!r}")
    _kernels.warmup(ndim, ("heat",))
    u = np.random.default_rng(0).random((int(n),) * ndim)
    r = (0.1,) * ndim
    best = math.inf
    for _ in range(int(repeat)):
        t0 = time.perf_counter()
        _kernels.heat_steps(u, r, int(steps))
        best = min(best, time.perf_counter() - t0)
    return best / (int(steps) * (int(n) - 2) ** ndim)


# --------------------------------------------------------------------------- time to solution
_MONTH = 365.25 / 12 * 86400.0  # seconds in a mean Gregorian month (a unit, not a measurement)


def provisioning_time(cores, how: str = "cloud", *, instance: str = "ecs.c8i.8xlarge", months=None,
                      catalog=None):
    """Seconds until ``cores`` cores are ready.

    ``on-premises``: the catalog's lead time (or ``months`` given by the user).
    ``cloud``: ``lead_time + n / launch_rate + boot_time + boot_time_sd * sqrt(2 ln n)`` for
    ``n = ceil(cores / instance cores)`` instances: launched at the catalog's rate, each booting as
    its instance type says (normal boot times; the last of ``n`` finishes about
    ``sqrt(2 ln n)`` standard deviations late, the extreme-value asymptote of ``n`` normals).
    Broadcasts over ``cores``.
    """
    from hpclab import catalog as _catalog

    check_choice("provisioning", how, ("cloud", "on-premises"))
    cat = catalog or _catalog.default()
    c = check_finite_array("cores", cores, minimum=1, strict=False)
    rec = cat.provisioning(how)
    if how == "on-premises":
        t = (check_nonnegative("months", months) * _MONTH if months is not None else rec.lead_time) + 0 * c
    else:
        inst = cat.instance(instance)
        n = np.ceil(c / inst.cores)
        launch = n / rec.launch_rate if rec.launch_rate > 0 else 0.0 * n
        t = rec.lead_time + launch + inst.boot_time + inst.boot_time_sd * np.sqrt(2 * np.log(np.maximum(n, 1)))
    return t if np.ndim(t) else float(t)


def staging_time(input_nbytes, output_nbytes, storage: str = "cpfs", *, hosts=1, catalog=None):
    """Seconds to hand the data of a pre-process -> solve -> post-process pipeline through
    ``storage``: the mesh is written once and read once, the results written once and read once,

    ``T = 2 (input + output) / min(throughput, hosts * client_throughput) + 4 latency``.

    With a parallel file system (``cpfs``) every stage reads and writes in place; without one the
    hand-offs go through object storage (``oss``), at its (much lower) throughput.
    """
    from hpclab import catalog as _catalog

    cat = catalog or _catalog.default()
    st = cat.storage(storage)
    i = check_finite_array("input_nbytes", input_nbytes, minimum=0, strict=False)
    o = check_finite_array("output_nbytes", output_nbytes, minimum=0, strict=False)
    h = check_finite_array("hosts", hosts, minimum=1, strict=False)
    rate = np.minimum(st.throughput, h * st.client_throughput) if st.client_throughput > 0 else st.throughput
    t = 2.0 * (i + o) / rate + 4.0 * st.latency
    return t if np.ndim(t) else float(t)


def time_to_solution(steps, cores=100_000, grid=65_536, fabric="erdma", *, cost_per_cell, ndim: int = 2,
                     steps_per_exchange=1, placement="placement-group", reductions_per_step=0.0,
                     instance: str = "ecs.c8i.8xlarge", months=None, snapshots: int = 100,
                     mesh_bytes_per_cell: float = 80.0, storages=("cpfs", "oss"), catalog=None) -> xr.Dataset:
    """Wall-clock time from "we need a cluster" to results: provisioning + data staging + solve.

    Parameters
    ----------
    steps : int
        Time steps of the simulation.
    cores, grid, fabric, cost_per_cell, ndim, steps_per_exchange, placement, reductions_per_step
        As :func:`step_time` (one point).
    instance : str
        Cloud instance type (its cores and boot model).
    months : float, optional
        On-premises procurement time (default: the catalog's ``on-premises`` lead time).
    snapshots, mesh_bytes_per_cell : number
        The data: the mesh is ``cells * mesh_bytes_per_cell`` bytes (a scenario assumption:
        coordinates and connectivity, about ten 8-byte words per cell), the results
        ``snapshots`` fields of ``cells * 8`` bytes.
    storages : sequence of str
        Catalog storage names to compare (``cpfs`` parallel file system, ``oss`` object storage).

    Returns
    -------
    xarray.Dataset
        Dims ``(provisioning, storage)``: ``provision``, ``staging``, ``solve`` and ``total`` in
        seconds (``total_days`` in days).
    """
    from hpclab import catalog as _catalog

    cat = catalog or _catalog.default()
    steps = check_positive("steps", steps, integer=True)
    check_positive("cores", cores, integer=True)
    check_positive("snapshots", snapshots, integer=True)
    check_positive("mesh_bytes_per_cell", mesh_bytes_per_cell)
    per = step_time(cores, grid, fabric, cost_per_cell=cost_per_cell, ndim=ndim,
                    steps_per_exchange=steps_per_exchange, placement=placement,
                    reductions_per_step=reductions_per_step)
    t_step = float(per.time_per_step)
    if not math.isfinite(t_step):
        raise HpclabError(f"grid {grid} is too small for {cores} cores with a halo of {steps_per_exchange}: "
                          "each sub-domain must be at least a halo thick")
    cells = float(grid) ** ndim
    inst = cat.instance(instance)
    hosts = math.ceil(cores / inst.cores)
    hows = ["on-premises", "cloud"]
    storages = list(storages)
    prov = np.array([provisioning_time(cores, h, instance=instance, months=months, catalog=cat) for h in hows])
    stage = np.array([staging_time(cells * mesh_bytes_per_cell, cells * 8.0 * snapshots, s, hosts=hosts,
                                   catalog=cat) for s in storages])
    solve = steps * t_step
    total = prov[:, None] + stage[None, :] + solve
    dims = ("provisioning", "storage")
    return xr.Dataset(
        {"provision": (("provisioning",), prov, {"units": "s"}),
         "staging": (("storage",), stage, {"units": "s"}),
         "solve": ((), solve, {"units": "s"}),
         "total": (dims, total, {"units": "s"}),
         "total_days": (dims, total / 86400.0, {"units": "day"})},
        coords={"provisioning": hows, "storage": storages},
        attrs={"cores": int(cores), "grid": int(grid), "steps": int(steps), "hosts": hosts, "instance": instance,
               "fabric": per.attrs["fabric"], "seconds_per_step": t_step})
