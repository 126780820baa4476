"""Halo exchange counted from a decomposition: who sends how many bytes to whom, per exchange.

A sub-domain receives, from each neighbour that touches it, the slab of cells within ``depth``
of their common face (or edge, or corner). For the offset ``o`` in ``{-1, 0, 1}**d`` of the
neighbour, the slab holds ``prod_i (depth if o_i != 0 else extent_i)`` cells. A star stencil
(5-point in 2-D, 7-point in 3-D) stepped once needs faces only; stepped ``k > 1`` times per
exchange (temporal blocking) it needs the edges and corners too, because the dependency cone
grows diagonally. :func:`dask.array.map_overlap` always ships faces, edges and corners.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_positive

__all__ = ["HaloExchange", "halo_exchange", "chunks_for"]


@dataclass(frozen=True)
class HaloExchange:
    """Messages and bytes of one halo exchange, per sub-domain (arrays over the block grid).

    Attributes
    ----------
    messages : numpy.ndarray
        Messages each sub-domain receives per exchange (one per neighbour), shape = block grid.
    nbytes : numpy.ndarray
        Bytes each sub-domain receives per exchange.
    depth : int
        Halo width (cells) = steps per exchange for the heat equation.
    steps_per_exchange : int
        Time steps (or sweeps) between two exchanges.
    """

    messages: np.ndarray
    nbytes: np.ndarray
    depth: int
    steps_per_exchange: int

    @property
    def total_messages(self) -> int:
        """Messages in the whole domain per exchange (each is sent once and received once)."""
        return int(self.messages.sum())

    @property
    def total_nbytes(self) -> int:
        return int(self.nbytes.sum())

    @property
    def exchanges_per_step(self) -> float:
        return 1.0 / self.steps_per_exchange

    @property
    def messages_per_step(self) -> float:
        return self.total_messages / self.steps_per_exchange

    @property
    def nbytes_per_step(self) -> float:
        return self.total_nbytes / self.steps_per_exchange

    def to_dataset(self) -> xr.Dataset:
        dims = tuple(f"block_{d}" for d in "xyz"[: self.messages.ndim])
        return xr.Dataset({"messages": (dims, self.messages, {"units": "count", "long_name": "messages per exchange"}),
                           "nbytes": (dims, self.nbytes, {"units": "B", "long_name": "bytes received per exchange"})},
                          attrs={"depth": self.depth, "steps_per_exchange": self.steps_per_exchange,
                                 "exchanges_per_step": self.exchanges_per_step})


def chunks_for(shape, subdomains) -> tuple[tuple[int, ...], ...]:
    """Dask-style chunks splitting ``shape`` into exactly ``subdomains`` blocks per axis, balanced:
    sizes differ by at most one, the ``n % b`` larger ones first (``10`` into ``6``: 2, 2, 2, 2, 1, 1;
    a uniform ``ceil(n / b)`` would give 5 blocks, or a 1-cell last block thinner than a halo)."""
    out = []
    for n, b in zip(shape, subdomains):
        n, b = int(n), int(b)
        if not 1 <= b <= n:
            raise HpclabError(f"subdomains must be between 1 and the {n} grid points of the axis, got {b}")
        out.append(tuple(n // b + (1 if i < n % b else 0) for i in range(b)))
    return tuple(out)


def halo_exchange(chunks, steps_per_exchange: int = 1, *, itemsize: int = 8, corners: bool | None = None,
                  depth: int | None = None) -> HaloExchange:
    """Count the halo exchange of a decomposition.

    Parameters
    ----------
    chunks : tuple of tuples, dask array or xarray.DataArray
        The sub-domain extents per axis (dask's ``.chunks``).
    steps_per_exchange : int
        Temporal blocking ``k``; the halo is ``depth = k`` cells (give ``depth`` for other
        stencils, e.g. ``2k`` for red-black SOR).
    itemsize : int
        Bytes per cell (8 for float64).
    corners : bool, optional
        Count edge and corner neighbours too; default ``depth > 1`` (what a star stencil needs).

    Returns
    -------
    HaloExchange
        ``messages`` and ``nbytes`` received per sub-domain and exchange.

    Notes
    -----
    From neighbour offset ``o``: ``prod_i (depth if o_i != 0 else extent_i) * itemsize`` bytes, one
    message; a neighbour exists when the block index plus ``o`` is inside the block grid.
    """
    if hasattr(chunks, "chunks") and not isinstance(chunks, tuple):
        data = getattr(chunks, "data", chunks)
        chunks = data.chunks if hasattr(data, "chunks") and data.chunks is not None else chunks.chunks
    chunks = tuple(tuple(int(c) for c in axis) for axis in chunks)
    k = check_positive("steps_per_exchange", steps_per_exchange, integer=True)
    depth = k if depth is None else check_positive("depth", depth, integer=True)
    check_positive("itemsize", itemsize, integer=True)
    if corners is None:
        corners = depth > 1
    ndim = len(chunks)
    for axis, cs in enumerate(chunks):
        if len(cs) > 1 and min(cs) < depth:
            raise HpclabError(f"halo depth {depth} is wider than the smallest sub-domain ({min(cs)} cells) on "
                              f"axis {axis}: use fewer sub-domains or fewer steps per exchange")
    grid = tuple(len(cs) for cs in chunks)
    messages = np.zeros(grid, dtype=np.int64)
    nbytes = np.zeros(grid, dtype=np.int64)
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=ndim) if any(o)]
    if not corners:
        offsets = [o for o in offsets if sum(map(abs, o)) == 1]
    for idx in itertools.product(*(range(g) for g in grid)):
        for o in offsets:
            if all(0 <= i + d < g for i, d, g in zip(idx, o, grid)):
                cells = math.prod(depth if d else chunks[a][idx[a]] for a, d in enumerate(o))
                messages[idx] += 1
                nbytes[idx] += cells * itemsize
    return HaloExchange(messages=messages, nbytes=nbytes, depth=depth, steps_per_exchange=k)
