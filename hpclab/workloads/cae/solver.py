"""The real solver: stencil PDEs on an ``xarray.DataArray`` backed by a chunked ``dask.array``.

Each chunk is a sub-domain. One *exchange* is one :func:`dask.array.map_overlap` with a halo
``k`` cells wide (``boundary="none"``: the global edge carries Dirichlet nodes, not padding), and
one task per sub-domain runs a compiled kernel (:mod:`hpclab.workloads.cae._kernels`) doing ``k``
steps on its padded block without talking to anyone (temporal blocking). All the rounds of a run
are chained lazily into ONE task graph, submitted once, so Dask's per-task overhead is paid per
sub-domain and round, not per cell and step.

Grids are node-centred: ``n`` points per axis from 0 to ``L`` (``h = L / (n - 1)``), the first and
last nodes being Dirichlet boundary nodes held fixed.
"""

from __future__ import annotations

import contextlib
import math
import time

import dask
import dask.array as da
import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive
from hpclab.workloads.cae import _kernels
from hpclab.workloads.cae.decomposition import chunks_for

__all__ = ["DIMS", "grid_coords", "sine_mode", "heat_analytic", "heat_decay_rate", "stable_dt",
           "heat", "halo_per_step", "manufactured_poisson", "poisson", "default_client", "run_heat", "spacing"]

DIMS = ("x", "y", "z")


# --------------------------------------------------------------------------- grids and fields
def _subdomains(ndim: int, subdomains) -> tuple[int, ...]:
    if subdomains is None:
        subdomains = 1
    if isinstance(subdomains, (int, np.integer)):
        subdomains = (int(subdomains),) + (1,) * (ndim - 1)
    subdomains = tuple(subdomains)
    if len(subdomains) != ndim:
        raise HpclabError(f"subdomains must give {ndim} block counts (one per axis), got {subdomains!r}")
    for s in subdomains:
        check_positive("subdomains", s, integer=True)
    return tuple(int(s) for s in subdomains)


def _check_ndim(ndim) -> int:
    if ndim not in (2, 3):
        raise HpclabError(f"ndim must be one of 2, 3; got {ndim!r}")
    return int(ndim)


def grid_coords(n, ndim: int = 2, length=1.0) -> dict[str, np.ndarray]:
    """Node coordinates per axis: ``n`` points from 0 to ``length`` (both may be per axis)."""
    ndim = _check_ndim(ndim)
    ns = (n,) * ndim if np.isscalar(n) else tuple(n)
    ls = (length,) * ndim if np.isscalar(length) else tuple(length)
    if len(ns) != ndim or len(ls) != ndim:
        raise HpclabError(f"n and length must be scalars or give {ndim} values")
    for v in ns:
        check_positive("n", v, integer=True)
        if v < 3:
            raise HpclabError(f"n must be >= 3 grid points per axis (two boundary nodes and one interior), got {v}")
    for v in ls:
        check_positive("length", v)
    return {DIMS[i]: np.linspace(0.0, float(ls[i]), int(ns[i])) for i in range(ndim)}


def _field(coords: dict, subdomains, func, name: str, units: str = "") -> xr.DataArray:
    """A DataArray whose dask chunks are the sub-domains, each computed on its worker from 1-D
    coordinate chunks (no big array travels through the client)."""
    dims = tuple(coords)
    ndim = len(dims)
    blocks = _subdomains(ndim, subdomains)
    axes = []
    for i, d in enumerate(dims):
        n = coords[d].size
        if blocks[i] > n:
            raise HpclabError(f"subdomains[{i}] must be <= {n} (grid points on axis {d}), got {blocks[i]}")
        c = da.from_array(coords[d], chunks=chunks_for((n,), (blocks[i],)))  # exactly blocks[i], balanced
        shape = [1] * ndim
        shape[i] = n
        axes.append(c.reshape(shape))
    data = func(*axes)
    return xr.DataArray(data, coords=coords, dims=dims, name=name, attrs={"units": units} if units else {})


def spacing(u: xr.DataArray) -> tuple[float, ...]:
    """Grid spacing per dimension from the coordinates (checked uniform)."""
    hs = []
    for d in u.dims:
        if d not in u.coords:
            raise HpclabError(f"field needs a coordinate for dimension {d!r} to know the grid spacing")
        c = np.asarray(u[d].values, dtype=float)
        if c.size < 3:
            raise HpclabError(f"dimension {d!r} must have >= 3 grid points, got {c.size}")
        dif = np.diff(c)
        if not np.allclose(dif, dif[0], rtol=1e-9, atol=0) or dif[0] <= 0:
            raise HpclabError(f"coordinate {d!r} must be uniformly spaced and increasing")
        hs.append(float(dif[0]))
    return tuple(hs)


def sine_mode(n, ndim: int = 2, length=1.0, subdomains=None) -> xr.DataArray:
    """The lowest sine eigenmode ``prod_i sin(pi x_i / L_i)`` (zero on the boundary), chunked."""
    coords = grid_coords(n, ndim, length)
    ls = [coords[d][-1] for d in coords]

    def f(*xs):
        out = None
        for x, L in zip(xs, ls):
            term = np.sin(np.pi * x / L)
            out = term if out is None else out * term
        return out

    return _field(coords, subdomains, f, "u", "1")


def heat_decay_rate(u_or_lengths, kappa) -> float:
    """``kappa * pi**2 * sum_i 1 / L_i**2`` (1/s): the sine mode decays as ``exp(-rate t)``."""
    if isinstance(u_or_lengths, xr.DataArray):
        lengths = [float(u_or_lengths[d].values[-1] - u_or_lengths[d].values[0]) for d in u_or_lengths.dims]
    else:
        lengths = list(u_or_lengths)
    return float(kappa) * math.pi ** 2 * sum(1.0 / L ** 2 for L in lengths)


def heat_analytic(u0: xr.DataArray, t, kappa) -> xr.DataArray:
    """Exact solution of ``du/dt = kappa lap(u)`` from the sine mode ``u0`` at time ``t``:
    ``u0 * exp(-kappa pi**2 (1/Lx**2 + 1/Ly**2 [+ 1/Lz**2]) t)``."""
    return u0 * math.exp(-heat_decay_rate(u0, kappa) * float(t))


def stable_dt(u: xr.DataArray, kappa) -> float:
    """Largest stable explicit time step: ``1 / (2 kappa sum_i 1/h_i**2)`` (``= h**2/(2 d kappa)``
    on a uniform grid; von Neumann analysis of the forward-time centred-space scheme)."""
    check_positive("kappa", kappa)
    return 1.0 / (2.0 * float(kappa) * sum(1.0 / h ** 2 for h in spacing(u)))


def _check_halo(u: xr.DataArray, depth: int, field: str) -> None:
    for axis, chunks in enumerate(u.data.chunks):
        if len(chunks) > 1 and min(chunks) < depth:
            raise HpclabError(f"{field} needs a halo {depth} cells wide but the smallest sub-domain on axis "
                              f"{u.dims[axis]!r} is {min(chunks)} cells: use fewer subdomains or a smaller "
                              f"{field}")


def _as_dask(u: xr.DataArray) -> xr.DataArray:
    if not isinstance(u, xr.DataArray):
        raise HpclabError(f"u must be an xarray.DataArray, got {type(u).__name__}")
    if u.ndim not in (2, 3):
        raise HpclabError(f"u must be 2-D or 3-D, got {u.ndim} dimensions")
    if not isinstance(u.data, da.Array):
        u = u.chunk({d: -1 for d in u.dims})
    return u


# --------------------------------------------------------------------------- heat equation
def _heat_block(block, r, k, owned=False, nonce=None):
    return _kernels.heat_steps(block, r, k, owned)


def heat(u0: xr.DataArray, kappa, dt, steps, steps_per_exchange: int = 1, *, nonce=None) -> xr.DataArray:
    """Advance the heat equation ``du/dt = kappa lap(u)`` ``steps`` explicit Euler steps, lazily.

    Parameters
    ----------
    u0 : xarray.DataArray
        Initial field, 2-D or 3-D, with uniform coordinates; its dask chunks are the sub-domains
        (a NumPy-backed field is one sub-domain). Boundary nodes are Dirichlet values, held fixed.
    kappa : float
        Diffusivity (m^2/s).
    dt : float
        Time step (s); must satisfy ``dt <= 1 / (2 kappa sum_i 1/h_i**2)`` (:func:`stable_dt`).
    steps : int
        Number of time steps (>= 0).
    steps_per_exchange : int
        Temporal blocking ``k``: one halo exchange ``k`` cells wide per ``k`` steps.
    nonce : optional
        Anything hashable that makes the task keys new (to time a repeated run, whose keys
        would otherwise hit results a cluster still holds).

    Returns
    -------
    xarray.DataArray
        The field after ``steps`` steps, still lazy (one graph for all rounds); attrs ``time``
        (s), ``steps``, ``steps_per_exchange``.

    Notes
    -----
    Scheme: ``u^{n+1} = u^n + sum_i (kappa dt / h_i**2) (u_{i-1} - 2 u_i + u_{i+1})``, second
    order in space, first in time (forward-time centred-space; e.g. LeVeque, *Finite Difference
    Methods for ODEs and PDEs*, SIAM 2007, ch. 9).
    """
    u0 = _as_dask(u0)
    check_positive("kappa", kappa)
    check_positive("dt", dt)
    steps = check_nonnegative("steps", steps, integer=True)
    k = check_positive("steps_per_exchange", steps_per_exchange, integer=True)
    dtmax = stable_dt(u0, kappa)
    if dt > dtmax * (1 + 1e-12):
        raise HpclabError(f"dt must be <= {dtmax:.6g} s for a stable explicit step "
                          f"(dt <= h^2/(2*d*kappa)), got {dt:.6g}")
    _check_halo(u0, min(k, max(steps, 1)), "steps_per_exchange")
    hs = spacing(u0)
    r = tuple(float(kappa) * float(dt) / h ** 2 for h in hs)
    data = u0.data.astype(np.float64)
    # with more than one block on some axis, map_overlap hands every task a freshly concatenated
    # padded block that nobody else holds: the kernel may reuse it as a buffer
    owned = any(len(c) > 1 for c in data.chunks)
    done = 0
    while done < steps:
        kk = min(k, steps - done)
        data = da.map_overlap(_heat_block, data, depth={i: kk for i in range(data.ndim)}, boundary="none",
                              trim=True, allow_rechunk=False, dtype=np.float64, meta=np.empty((0,) * data.ndim),
                              r=r, k=kk, owned=owned, nonce=nonce)
        done += kk
    attrs = dict(u0.attrs)
    attrs.update(time=float(u0.attrs.get("time", 0.0)) + steps * float(dt), steps=steps,
                 steps_per_exchange=k)
    return xr.DataArray(data, coords=u0.coords, dims=u0.dims, name=u0.name, attrs=attrs)


# --------------------------------------------------------------------------- Poisson
def manufactured_poisson(n, ndim: int = 2, subdomains=None, modes=(1, 2, 1)) -> xr.Dataset:
    """A manufactured Poisson problem ``-lap(u) = f`` on the unit square/cube.

    ``u = prod_i sin(m_i pi x_i) + x y**2`` so ``f = pi**2 (sum_i m_i**2) prod_i sin(m_i pi x_i) - 2 x``;
    the boundary carries ``u`` (non-zero Dirichlet data). Returns a Dataset with ``u_exact``,
    ``f`` and ``u0`` (``u`` on the boundary, 0 inside), all chunked into ``subdomains``.
    """
    ndim = _check_ndim(ndim)
    coords = grid_coords(n, ndim, 1.0)
    m = tuple(modes)[:ndim]

    def sines(*xs):
        out = None
        for x, mi in zip(xs, m):
            term = np.sin(mi * np.pi * x)
            out = term if out is None else out * term
        return out

    def exact(*xs):
        return sines(*xs) + xs[0] * xs[1] ** 2

    def rhs(*xs):
        return math.pi ** 2 * sum(mi ** 2 for mi in m) * sines(*xs) - 2.0 * xs[0] + 0.0 * xs[1]

    def guess(*xs):
        edge = None
        for x in xs:
            e = (x == 0.0) | (x == x.max())
            edge = e if edge is None else edge | e
        return da.where(edge, exact(*xs), 0.0) if isinstance(xs[0], da.Array) else np.where(edge, exact(*xs), 0.0)

    def mk(fn, name):
        return _field(coords, subdomains, lambda *xs: fn(*xs) * (1.0 + 0.0 * sum(xs)), name)

    return xr.Dataset({"u_exact": mk(exact, "u_exact"), "f": mk(rhs, "f"), "u0": mk(guess, "u0")})


def _parity(block_info, chunks, depth) -> int:
    loc = block_info[0]["chunk-location"]
    off = 0
    for axis, b in enumerate(loc):
        start = sum(chunks[axis][:b])
        off += start - (depth if b > 0 else 0)
    return off % 2


def _jacobi_block(u, f, a, k):
    return _kernels.jacobi_sweeps(u, f, a, k)


def _sor_block(u, f, a, omega, k, orig_chunks, halo, block_info=None):
    return _kernels.sor_sweeps(u, f, a, omega, _parity(block_info, orig_chunks, halo), k)


def _residual_block(u, f, a):
    return _kernels.residual(u, f, a)


def _sweeps(u, f, a, method, omega, nsweeps, k):
    done = 0
    while done < nsweeps:
        kk = min(k, nsweeps - done)
        depth = kk if method == "jacobi" else 2 * kk
        common = dict(depth={i: depth for i in range(u.ndim)}, boundary="none", trim=True,
                      allow_rechunk=False, dtype=np.float64, meta=np.empty((0,) * u.ndim))
        if method == "jacobi":
            u = da.map_overlap(_jacobi_block, u, f, a=a, k=kk, **common)
        else:
            u = da.map_overlap(_sor_block, u, f, a=a, omega=omega, k=kk, orig_chunks=u.chunks, halo=depth, **common)
        done += kk
    return u


def poisson(f: xr.DataArray, u0: xr.DataArray, *, method: str = "sor", omega=None, tol=1e-8,
            sweeps_per_exchange: int = 4, check_every: int = 20, max_sweeps: int = 100_000,
            client=None) -> xr.Dataset:
    """Solve ``-lap(u) = f`` with Dirichlet data (the boundary of ``u0``) iteratively.

    Parameters
    ----------
    f, u0 : xarray.DataArray
        Right-hand side and initial guess (its boundary nodes are the Dirichlet values), same grid
        and chunks (the sub-domains).
    method : {"sor", "jacobi"}
        Red-black successive over-relaxation (halo ``2k`` for ``k`` sweeps) or Jacobi (halo ``k``).
    omega : float, optional
        Relaxation factor for SOR, default Young's optimum for the model problem (Young 1954),
        ``2 / (1 + sqrt(1 - rho**2))`` with the Jacobi spectral radius
        ``rho = sum_i cos(pi h_i / L_i) / h_i**2 / sum_i 1 / h_i**2``; on a square of side ``L``
        with ``h`` on both axes this is ``2 / (1 + sin(pi h / L))``.
    tol : float
        Stop when ``||r||_2 / ||f||_2 < tol`` with ``r = f + lap_h(u)`` (discrete L2 norms).
    sweeps_per_exchange : int
        Sweeps per halo exchange (temporal blocking).
    check_every : int
        Sweeps between residual checks; each check is one global reduction (an allreduce on a
        real cluster), computed on the cluster.
    max_sweeps : int
        Give up after this many sweeps (``converged`` is then False).
    client : distributed.Client, optional
        Where to run; default Dask's current scheduler.

    Returns
    -------
    xarray.Dataset
        ``u`` (the solution, persisted) and ``residual`` (relative residual norm after each check,
        dim ``check``, coordinate ``sweeps``); attrs ``converged``, ``sweeps``, ``reductions``.
    """
    check_choice("method", method, ("sor", "jacobi"))
    f, u0 = _as_dask(f), _as_dask(u0)
    if f.shape != u0.shape or f.data.chunks != u0.data.chunks:
        raise HpclabError("f and u0 must have the same shape and chunks (the same sub-domains)")
    check_positive("tol", tol)
    k = check_positive("sweeps_per_exchange", sweeps_per_exchange, integer=True)
    check_every = check_positive("check_every", check_every, integer=True)
    max_sweeps = check_positive("max_sweeps", max_sweeps, integer=True)
    hs = spacing(u0)
    _check_halo(u0, k if method == "jacobi" else 2 * k, "sweeps_per_exchange")
    a = tuple(1.0 / h ** 2 for h in hs)
    if omega is None:  # Young's optimum from the Jacobi spectral radius of the model problem on this box
        lengths = [float(u0[d].values[-1] - u0[d].values[0]) for d in u0.dims]
        rho = sum(ai * math.cos(math.pi * h / L) for ai, h, L in zip(a, hs, lengths)) / sum(a)
        omega = 2.0 / (1.0 + math.sqrt(1.0 - rho * rho))
    if method == "sor" and not 0 < omega < 2:
        raise HpclabError(f"omega must be in (0, 2) for SOR to converge, got {omega!r}")
    cell = math.prod(hs)
    fd = f.data.astype(np.float64)
    persist = client.persist if client is not None else dask.persist
    if client is not None:  # sub-domain i of f and of u on the same worker, one per worker
        fd, u = distribute(fd, client), distribute(u0.data.astype(np.float64), client)
    else:
        fd, u = _persist(persist, fd), _persist(persist, u0.data.astype(np.float64))
    fnorm = math.sqrt(_compute(client, (fd ** 2).sum()) * cell) or 1.0
    history, at = [], []
    sweeps, converged = 0, False
    while sweeps < max_sweeps:
        n = min(check_every, max_sweeps - sweeps)
        u = _persist(persist, _sweeps(u, fd, a, method, omega, n, k))
        sweeps += n
        r = da.map_overlap(_residual_block, u, fd, depth={i: 1 for i in range(u.ndim)}, boundary="none",
                           trim=True, allow_rechunk=False, dtype=np.float64, meta=np.empty((0,) * u.ndim), a=a)
        rel = math.sqrt(_compute(client, (r ** 2).sum()) * cell) / fnorm
        history.append(rel)
        at.append(sweeps)
        if not math.isfinite(rel):
            raise HpclabError("the iteration diverged (residual is not finite); lower omega")
        if rel < tol:
            converged = True
            break
    out = xr.Dataset(
        {"u": xr.DataArray(u, coords=u0.coords, dims=u0.dims, attrs={"units": u0.attrs.get("units", "1")}),
         "residual": xr.DataArray(np.array(history), dims=("check",), coords={"sweeps": ("check", np.array(at))},
                                  attrs={"units": "1", "long_name": "relative residual ||f + lap_h u|| / ||f||"})},
        attrs={"converged": converged, "sweeps": sweeps, "reductions": len(history), "method": method,
               "omega": float(omega), "sweeps_per_exchange": k, "tol": float(tol)})
    return out


def _persist(persist, x):
    return persist(x)[0] if persist is dask.persist else persist(x)


def _compute(client, x) -> float:
    if client is not None:
        return float(client.compute(x).result())
    return float(x.compute())


# --------------------------------------------------------------------------- running on a cluster
def halo_per_step(chunks, steps: int, steps_per_exchange: int, itemsize: int = 8) -> dict:
    """Halo traffic of :func:`heat` per step, whole domain, over the rounds it really does:
    ``steps // k`` rounds of halo ``k`` and, if ``steps % k``, one last round of halo ``steps % k``.
    Returns ``nbytes``, ``messages`` and ``exchanges`` per step (floats)."""
    from hpclab.workloads.cae.decomposition import halo_exchange

    steps = check_positive("steps", steps, integer=True)
    k = check_positive("steps_per_exchange", steps_per_exchange, integer=True)
    rounds = [k] * (steps // k) + ([steps % k] if steps % k else [])
    counts = [halo_exchange(chunks, kk, itemsize=itemsize) for kk in rounds]
    return {"nbytes": sum(h.total_nbytes for h in counts) / steps,
            "messages": sum(h.total_messages for h in counts) / steps, "exchanges": len(rounds) / steps}


def _check_run(n, ndim, subdomains, kappa, dt, steps, steps_per_exchange) -> None:
    """Raise the errors :func:`heat` would raise, without building anything on a cluster."""
    u0 = sine_mode(n, ndim, 1.0, _subdomains(ndim, subdomains))
    heat(u0, kappa, stable_dt(u0, kappa) if dt is None else dt, steps, steps_per_exchange)


def distribute(u, client, workers=None):
    """Compute each sub-domain (dask chunk) of ``u`` on its own worker and keep it there.

    Block ``i`` (in C order) goes to ``workers[i % len(workers)]`` (default: the client's workers,
    sorted), so one sub-domain per worker when there are as many blocks as workers. Dask's own
    placement would put the small root tasks, and so the first round of big blocks, together on
    one worker. Later rounds stay put: a sub-domain's task runs where its (largest) input lives.

    Parameters
    ----------
    u : xarray.DataArray or dask.array.Array
    client : distributed.Client
    workers : list of str, optional

    Returns
    -------
    The same kind of object, backed by the computed blocks (same chunks).
    """
    import itertools

    from distributed import wait

    data = u.data if isinstance(u, xr.DataArray) else u
    if not isinstance(data, da.Array):
        raise HpclabError(f"u must be backed by a dask array to distribute, got {type(data).__name__}")
    addrs = list(workers) if workers else sorted(client.scheduler_info()["workers"])
    if not addrs:
        raise HpclabError("the Dask cluster has no workers to place sub-domains on")
    futures = {}
    for i, idx in enumerate(itertools.product(*(range(b) for b in data.numblocks))):
        futures[idx] = client.compute(data.blocks[idx], workers=[addrs[i % len(addrs)]], allow_other_workers=False)
    wait(list(futures.values()))
    blocks = np.empty(data.numblocks, dtype=object)
    for idx, fut in futures.items():
        shape = tuple(data.chunks[a][b] for a, b in enumerate(idx))
        blocks[idx] = da.from_delayed(dask.delayed(fut), shape=shape, dtype=data.dtype,
                                      meta=np.empty((0,) * data.ndim, dtype=data.dtype))
    out = client.persist(da.block(blocks.tolist()))  # concrete keys: later graphs start from here
    wait(out)
    del futures
    return u.copy(data=out) if isinstance(u, xr.DataArray) else out


@contextlib.contextmanager
def default_client(client=None, workers: int = 2):
    """Yield ``client`` if given, else a new ``LocalCluster`` on 127.0.0.1 with ``workers``
    single-threaded worker processes (closed on exit). Any ``distributed.Client`` works,
    including one connected to an :class:`hpclab.elastic.ElasticPool`."""
    if client is not None:
        yield client
        return
    check_positive("workers", workers, integer=True)
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", memory_limit=0)
    try:
        with Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def run_heat(n=256, ndim: int = 2, *, steps: int = 100, kappa: float = 1.0, dt=None, safety: float = 0.9,
             subdomains=None, steps_per_exchange: int = 10, client=None, workers: int = 2,
             repeat: int = 1) -> xr.Dataset:
    """Run the real heat solver on a Dask cluster and check it against the analytical decay.

    The initial field is the sine eigenmode on the unit square/cube, built on the workers; kernels
    are compiled on every worker before the clock starts; the solve is one graph of
    ``ceil(steps / steps_per_exchange)`` rounds, timed from submission until every sub-domain is
    done (best of ``repeat``).

    Parameters
    ----------
    n, ndim : int
        Grid points per axis and dimensions (2 or 3).
    steps, kappa, dt, safety
        Time steps, diffusivity, time step (default ``safety * stable_dt``).
    subdomains : int or tuple, optional
        Sub-domains per axis (default: one per worker along x).
    steps_per_exchange : int
        Temporal blocking ``k``.
    client : distributed.Client, optional
        Any Dask client (an ElasticPool's too); default a LocalCluster of ``workers`` processes.

    Returns
    -------
    xarray.Dataset
        ``u`` (final field, NumPy), ``u_exact`` and ``error`` (``u - u_exact``); attrs
        ``seconds_per_step``, ``seconds_per_cell_step``, ``max_abs_error``, ``rel_l2_error``,
        ``halo_nbytes_per_step`` and ``halo_messages_per_step`` (whole domain),
        ``exchanges_per_step``, ``workers``, ``subdomains``.
    """
    ndim = _check_ndim(ndim)
    check_positive("steps", steps, integer=True)  # a run of 0 steps has no time per step
    check_positive("repeat", repeat, integer=True)
    check_positive("safety", safety)
    if client is None:  # check the input before paying for a cluster
        check_positive("workers", workers, integer=True)
        _check_run(n, ndim, subdomains if subdomains is not None else workers, kappa, dt, steps, steps_per_exchange)
    with default_client(client, workers) as c:
        nworkers = len(c.scheduler_info()["workers"]) or 1
        blocks = _subdomains(ndim, subdomains if subdomains is not None else nworkers)
        u0 = sine_mode(n, ndim, 1.0, blocks)
        if dt is None:
            dt = float(safety) * stable_dt(u0, kappa)
        _check_run(n, ndim, blocks, kappa, dt, steps, steps_per_exchange)
        from distributed import wait

        u0p = distribute(u0, c)  # one sub-domain per worker, computed there
        c.run(_kernels.warmup, ndim, ("heat",))
        best = math.inf
        for rep in range(int(repeat)):
            out = heat(u0p, kappa, dt, steps, steps_per_exchange, nonce=(rep, time.time_ns()))
            t0 = time.perf_counter()
            fut = c.persist(out)
            wait(fut.data)
            best = min(best, time.perf_counter() - t0)
        exact = heat_analytic(u0p, out.attrs["time"], kappa)
        err = fut - exact
        max_err, l2, norm = c.compute([abs(err.data).max(), (err.data ** 2).sum(), (exact.data ** 2).sum()],
                                      sync=True)
        small = math.prod(u0.shape) <= 2_000_000
        u_np, exact_np = c.compute([fut, exact], sync=True) if small else (None, None)
        halo = halo_per_step(u0.data.chunks, steps, steps_per_exchange)
    cells = math.prod(u0.shape)
    per_step = best / max(steps, 1)
    attrs = dict(seconds_per_step=per_step, seconds_per_cell_step=per_step / cells,
                 max_abs_error=float(max_err), rel_l2_error=float(math.sqrt(l2 / norm)) if norm else 0.0,
                 time=float(out.attrs["time"]), dt=float(dt), steps=int(steps), kappa=float(kappa),
                 steps_per_exchange=int(steps_per_exchange), workers=int(nworkers), subdomains=list(blocks),
                 halo_nbytes_per_step=halo["nbytes"], halo_messages_per_step=halo["messages"],
                 exchanges_per_step=halo["exchanges"],
                 grid=list(u0.shape))
    data = {}
    if small:
        data = {"u": u_np.rename("u").assign_attrs(units="1"),
                "u_exact": exact_np.rename("u_exact").assign_attrs(units="1"),
                "error": (u_np - exact_np).rename("error").assign_attrs(units="1")}
    return xr.Dataset(data, attrs=attrs)
