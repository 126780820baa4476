"""Zone capacity: how many instances of a type a zone can still grant.

A catalog zone has a capacity per instance type in cores (``Zone.capacity``; a type the zone does
not list has none). A run may scale it (``capacity``, a factor) and open only a share of it to
spot (``spot_capacity``). A request for ``count`` instances is granted up to what fits::

    fit      = floor((capacity - cores in use) / cores per instance)
    spot fit = floor((floor(spot_capacity * capacity) - spot cores in use) / cores per instance)

and the rest is *refused* (the cloud's "insufficient capacity" answer, not clipped silently).
Cores in use count every instance granted and not yet terminated, booting and draining ones
included. :class:`ZoneCapacity` keeps that bookkeeping for an engine on the virtual clock (the
platform's pools, which share a zone's capacity when they hold the same type).

A *capacity curve* ``(times, factors)`` scales every zone's capacity from each time on
(piecewise constant, 1 before the first time; :func:`curve_factor`), on both virtual-clock
engines: a drop below the cores in use reclaims spot instances (a notice, newest first) until
the zone fits again; on-demand instances are never reclaimed, but no more are granted; a rise
lets a refused pool ask again.
"""

from __future__ import annotations

import math

import numpy as np

from hpclab._validate import HpclabError, check_nonnegative

__all__ = ["ZoneCapacity", "grantable", "spot_limit", "reclaim_excess", "check_curve", "curve_factor"]


def check_curve(curve):
    """``curve`` (times, factors) as two float arrays, checked (one line if not): equal-length 1-D,
    finite, times non-decreasing and >= 0, factors >= 0; None stays None."""
    if curve is None:
        return None
    from hpclab._validate import check_finite_array

    try:
        times, factors = curve
    except (TypeError, ValueError):
        raise HpclabError("capacity_curve must be (times, factors)") from None
    times = check_finite_array("capacity_curve times", times, minimum=0.0, strict=False)
    factors = check_finite_array("capacity_curve factors", factors, minimum=0.0, strict=False)
    if times.shape != factors.shape or times.ndim != 1 or np.any(np.diff(times) < 0):
        raise HpclabError("capacity_curve must be two equal-length 1-D arrays, times non-decreasing")
    return times, factors


def curve_factor(curve, t: float) -> float:
    """The capacity curve's factor at ``t`` (1 before its first time, or without a curve)."""
    if curve is None:
        return 1.0
    times, factors = curve
    k = int(np.searchsorted(times, t, side="right")) - 1
    return float(factors[k]) if k >= 0 else 1.0


def spot_limit(capacity, spot_capacity: float):
    """Cores of a zone's ``capacity`` open to spot, ``floor(spot_capacity * capacity)`` (a number,
    or an array of them)."""
    if isinstance(capacity, np.ndarray):
        return np.floor(spot_capacity * capacity + 1e-9)
    return math.floor(spot_capacity * capacity + 1e-9)


def reclaim_excess(in_use, spot_use, leaving, capacity, spot_capacity: float):
    """Cores of spot instances a zone must reclaim after its capacity shrank: what is in use beyond
    the capacity, or spot in use beyond its share, less the cores already ``leaving`` (under a
    notice); <= 0: nothing. The one rule of both virtual-clock engines."""
    return max(in_use - leaving - capacity, spot_use - leaving - spot_limit(capacity, spot_capacity))


def grantable(count: int, capacity: float, in_use: float, cores: int, *, spot: bool = False,
              spot_capacity: float = 1.0, spot_use: float = 0.0) -> tuple[int, str | None]:
    """Instances of ``cores`` cores each that a zone grants of ``count`` asked (module docstring),
    and what refused the rest: ``"zone"`` (its capacity), ``"spot"`` (its spot share) or None.
    The one rule of both clocks' engines (the task-bag simulator's ``grant``, the platform's pools)."""
    n = min(int(count), max(int((capacity - in_use) // cores), 0))
    why = "zone" if n < count else None
    if spot:
        sfit = int((spot_limit(capacity, spot_capacity) - spot_use) // cores)
        if sfit < n:
            n = max(sfit, 0)
            why = why or "spot"
    return n, why


class ZoneCapacity:
    """Cores in use per (zone, type) against the catalog's capacity (module docstring).

    ``factor`` scales every zone's capacity; ``spot_capacity`` is the share open to spot;
    ``curve`` (times, factors) scales it over time (the engine calls :meth:`set_time` at each of
    its times). ``version[(zone, itype)]`` bumps whenever cores are given back or the curve
    raises or lowers the capacity, so that an engine asks again only when the answer may have
    changed.
    """

    def __init__(self, catalog, *, factor: float = 1.0, spot_capacity: float = 1.0, curve=None):
        self.catalog = catalog
        self.factor = check_nonnegative("capacity", factor)
        if isinstance(spot_capacity, bool) or not isinstance(spot_capacity, (int, float)) \
                or not 0 <= spot_capacity <= 1:
            raise HpclabError(f"spot_capacity must be a number in [0, 1], got {spot_capacity!r}")
        self.spot_capacity = float(spot_capacity)
        self.cap: dict = {}
        self.in_use: dict = {}
        self.spot_use: dict = {}
        self.version: dict = {}
        self.curve = check_curve(curve)
        self.scale = curve_factor(self.curve, 0.0)  # the curve's factor now

    def capacity(self, zone: str, itype: str) -> float:
        key = (zone, itype)
        c = self.cap.get(key)
        if c is None:
            c = self.cap[key] = math.floor(self.catalog.zone(zone).capacity.get(itype, 0) * self.factor
                                           * self.scale + 1e-9)
        return c

    def set_time(self, t: float) -> bool:
        """Apply the curve's factor at ``t``; True if it changed (every (zone, type) asked so far
        then has a new version). The keys now over capacity are :meth:`over`."""
        scale = curve_factor(self.curve, t)
        if scale == self.scale:
            return False
        self.scale = scale
        for key in self.cap:
            self.version[key] = self.version.get(key, 0) + 1
        self.cap.clear()
        return True

    def over(self):
        """(zone, itype) whose cores in use exceed the capacity or its spot share."""
        return [key for key, used in self.in_use.items() if used > self.capacity(*key)
                or self.spot_use.get(key, 0) > spot_limit(self.capacity(*key), self.spot_capacity)]

    def grant(self, zone: str, itype: str, cores: int, count: int, *, spot: bool = False):
        """Take up to ``count`` instances; how many were granted and what refused the rest
        (:func:`grantable`)."""
        key = (zone, itype)
        n, why = grantable(count, self.capacity(zone, itype), self.in_use.get(key, 0), cores, spot=spot,
                           spot_capacity=self.spot_capacity, spot_use=self.spot_use.get(key, 0))
        if n > 0:
            self.in_use[key] = self.in_use.get(key, 0) + n * cores
            if spot:
                self.spot_use[key] = self.spot_use.get(key, 0) + n * cores
        return n, why

    def release(self, zone: str, itype: str, cores: int, *, spot: bool = False) -> None:
        """One instance of the type terminated: its cores are free again."""
        key = (zone, itype)
        self.in_use[key] -= cores
        if spot:
            self.spot_use[key] -= cores
        self.version[key] = self.version.get(key, 0) + 1
