"""Per-sub-domain stencil kernels, compiled with numba.

Every kernel works on one padded sub-domain (its own cells plus a halo of width ``k`` copied
from its neighbours, or the Dirichlet boundary nodes at the edge of the global domain) and does
``k`` sweeps in place without talking to anyone. The outermost layer of the padded block is never
updated: at the global edge it holds the Dirichlet values, inside the domain it is the oldest halo
layer, and after ``k`` sweeps the cells at depth ``>= k`` are exact (one layer of the halo goes
stale per sweep). That is temporal blocking: ``k`` steps per exchange for a halo ``k`` wide.

Kernels compile on first call (``parallel=False, cache=False``: one core each, so that a Dask
worker with one thread runs exactly one sub-domain at a time). :func:`numpy_heat_step` is the
plain NumPy update a user would write, kept as the baseline and as an independent reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["heat_steps", "jacobi_sweeps", "sor_sweeps", "residual", "numpy_heat_step", "warmup"]


# --------------------------------------------------------------------------- heat (explicit Euler)
@njit(parallel=False, cache=False)
def _copy_edges2(src, dst):
    nx, ny = src.shape
    for j in range(ny):
        dst[0, j] = src[0, j]
        dst[nx - 1, j] = src[nx - 1, j]
    for i in range(nx):
        dst[i, 0] = src[i, 0]
        dst[i, ny - 1] = src[i, ny - 1]


@njit(parallel=False, cache=False)
def _heat2(u, rx, ry, k, owned):
    a = np.empty_like(u)
    b = u if owned else np.empty_like(u)
    _copy_edges2(u, a)
    _copy_edges2(u, b)
    nx, ny = u.shape
    c = 1.0 - 2.0 * rx - 2.0 * ry
    src = u
    dst = a
    for s in range(k):
        dst = a if s % 2 == 0 else b
        for i in range(1, nx - 1):
            for j in range(1, ny - 1):
                dst[i, j] = (c * src[i, j] + rx * (src[i - 1, j] + src[i + 1, j])
                             + ry * (src[i, j - 1] + src[i, j + 1]))
        src = dst
    return src


@njit(parallel=False, cache=False)
def _copy_edges3(src, dst):
    nx, ny, nz = src.shape
    for i in range(nx):
        for j in range(ny):
            for m in range(nz):
                if i == 0 or j == 0 or m == 0 or i == nx - 1 or j == ny - 1 or m == nz - 1:
                    dst[i, j, m] = src[i, j, m]


@njit(parallel=False, cache=False)
def _heat3(u, rx, ry, rz, k, owned):
    a = np.empty_like(u)
    b = u if owned else np.empty_like(u)
    _copy_edges3(u, a)
    _copy_edges3(u, b)
    nx, ny, nz = u.shape
    c = 1.0 - 2.0 * (rx + ry + rz)
    src = u
    dst = a
    for s in range(k):
        dst = a if s % 2 == 0 else b
        for i in range(1, nx - 1):
            for j in range(1, ny - 1):
                for m in range(1, nz - 1):
                    dst[i, j, m] = (c * src[i, j, m] + rx * (src[i - 1, j, m] + src[i + 1, j, m])
                                    + ry * (src[i, j - 1, m] + src[i, j + 1, m])
                                    + rz * (src[i, j, m - 1] + src[i, j, m + 1]))
        src = dst
    return src


def heat_steps(u: np.ndarray, r, k: int, owned: bool = False) -> np.ndarray:
    """``k`` explicit Euler steps of the heat equation on a padded block.

    ``u_new = u + sum_i r_i (u[i-1] - 2 u + u[i+1])`` with ``r_i = kappa dt / h_i**2`` on every
    cell but the outermost layer. The result is a new array unless ``owned`` is true: then ``u``
    (which the caller gives away, e.g. a freshly concatenated padded block) is reused as the
    second ping-pong buffer, saving one allocation.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    if u.ndim == 2:
        return _heat2(u, float(r[0]), float(r[1]), int(k), bool(owned))
    return _heat3(u, float(r[0]), float(r[1]), float(r[2]), int(k), bool(owned))


# --------------------------------------------------------------------------- Poisson: -lap(u) = f
@njit(parallel=False, cache=False)
def _jacobi2(u, f, ax, ay, k):
    a = np.empty_like(u)
    b = np.empty_like(u)
    _copy_edges2(u, a)
    _copy_edges2(u, b)
    nx, ny = u.shape
    inv = 1.0 / (2.0 * ax + 2.0 * ay)
    src = u
    dst = a
    for s in range(k):
        dst = a if s % 2 == 0 else b
        for i in range(1, nx - 1):
            for j in range(1, ny - 1):
                dst[i, j] = (ax * (src[i - 1, j] + src[i + 1, j]) + ay * (src[i, j - 1] + src[i, j + 1])
                             + f[i, j]) * inv
        src = dst
    return src


@njit(parallel=False, cache=False)
def _jacobi3(u, f, ax, ay, az, k):
    a = np.empty_like(u)
    b = np.empty_like(u)
    _copy_edges3(u, a)
    _copy_edges3(u, b)
    nx, ny, nz = u.shape
    inv = 1.0 / (2.0 * (ax + ay + az))
    src = u
    dst = a
    for s in range(k):
        dst = a if s % 2 == 0 else b
        for i in range(1, nx - 1):
            for j in range(1, ny - 1):
                for m in range(1, nz - 1):
                    dst[i, j, m] = (ax * (src[i - 1, j, m] + src[i + 1, j, m])
                                    + ay * (src[i, j - 1, m] + src[i, j + 1, m])
                                    + az * (src[i, j, m - 1] + src[i, j, m + 1]) + f[i, j, m]) * inv
        src = dst
    return src


@njit(parallel=False, cache=False)
def _sor2(u, f, ax, ay, omega, parity, k):
    v = u.copy()
    nx, ny = u.shape
    inv = 1.0 / (2.0 * ax + 2.0 * ay)
    for s in range(k):
        for colour in range(2):
            for i in range(1, nx - 1):
                j0 = 1 + (i + 1 + parity + colour) % 2
                for j in range(j0, ny - 1, 2):
                    gs = (ax * (v[i - 1, j] + v[i + 1, j]) + ay * (v[i, j - 1] + v[i, j + 1])
                          + f[i, j]) * inv
                    v[i, j] += omega * (gs - v[i, j])
    return v


@njit(parallel=False, cache=False)
def _sor3(u, f, ax, ay, az, omega, parity, k):
    v = u.copy()
    nx, ny, nz = u.shape
    inv = 1.0 / (2.0 * (ax + ay + az))
    for s in range(k):
        for colour in range(2):
            for i in range(1, nx - 1):
                for j in range(1, ny - 1):
                    m0 = 1 + (i + j + 1 + parity + colour) % 2
                    for m in range(m0, nz - 1, 2):
                        gs = (ax * (v[i - 1, j, m] + v[i + 1, j, m]) + ay * (v[i, j - 1, m] + v[i, j + 1, m])
                              + az * (v[i, j, m - 1] + v[i, j, m + 1]) + f[i, j, m]) * inv
                        v[i, j, m] += omega * (gs - v[i, j, m])
    return v


def jacobi_sweeps(u, f, a, k):
    """``k`` Jacobi sweeps for ``-sum_i a_i (u[i-1] - 2u + u[i+1]) = f`` (``a_i = 1/h_i**2``)."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    f = np.ascontiguousarray(f, dtype=np.float64)
    if u.ndim == 2:
        return _jacobi2(u, f, float(a[0]), float(a[1]), int(k))
    return _jacobi3(u, f, float(a[0]), float(a[1]), float(a[2]), int(k))


def sor_sweeps(u, f, a, omega, parity, k):
    """``k`` red-black SOR sweeps; a cell is red when ``(sum of global indices) % 2 == 0`` and
    ``parity`` is that sum's parity at the block's first cell."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    f = np.ascontiguousarray(f, dtype=np.float64)
    if u.ndim == 2:
        return _sor2(u, f, float(a[0]), float(a[1]), float(omega), int(parity), int(k))
    return _sor3(u, f, float(a[0]), float(a[1]), float(a[2]), float(omega), int(parity), int(k))


def residual(u, f, a):
    """``r = f + sum_i a_i (u[i-1] - 2u + u[i+1])`` on every cell but the outermost layer (0 there)."""
    r = np.zeros_like(u, dtype=np.float64)
    inner = tuple(slice(1, -1) for _ in range(u.ndim))
    lap = np.zeros(tuple(s - 2 for s in u.shape))
    for axis in range(u.ndim):
        lo = list(inner)
        hi = list(inner)
        lo[axis] = slice(0, -2)
        hi[axis] = slice(2, None)
        lap += a[axis] * (u[tuple(lo)] - 2.0 * u[inner] + u[tuple(hi)])
    r[inner] = f[inner] + lap
    return r


def numpy_heat_step(u: np.ndarray, r) -> np.ndarray:
    """One explicit step in plain NumPy slicing (the baseline a user would write); returns a new
    array, boundary layer unchanged."""
    new = u.copy()
    inner = tuple(slice(1, -1) for _ in range(u.ndim))
    acc = u[inner].copy()
    for axis in range(u.ndim):
        lo = list(inner)
        hi = list(inner)
        lo[axis] = slice(0, -2)
        hi[axis] = slice(2, None)
        acc += r[axis] * (u[tuple(lo)] - 2.0 * u[inner] + u[tuple(hi)])
    new[inner] = acc
    return new


def warmup(ndim=None, kinds=("heat", "jacobi", "sor")) -> None:
    """Compile kernels once (numba compiles per process: call this on each Dask worker, e.g.
    ``client.run(warmup, 2)``). ``ndim`` 2 or 3 (default both); ``kinds`` which kernels."""
    for nd in ((2, 3) if ndim is None else (ndim,)):
        u = np.zeros((4,) * nd)
        if "heat" in kinds:
            heat_steps(u, (0.1,) * nd, 1)
        if "jacobi" in kinds:
            jacobi_sweeps(u, u, (1.0,) * nd, 1)
        if "sor" in kinds:
            sor_sweeps(u, u, (1.0,) * nd, 1.5, 0, 1)
