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
"""

from __future__ import annotations

import math

from hpclab._validate import HpclabError, check_nonnegative

__all__ = ["ZoneCapacity", "grantable"]


def grantable(count: int, capacity: float, in_use: float, cores: int, *, spot: bool = False,
              spot_capacity: float = 1.0, spot_use: float = 0.0) -> tuple[int, str | None]:
    """Instances of ``cores`` cores each that a zone grants of ``count`` asked (module docstring),
    and what refused the rest: ``"zone"`` (its capacity), ``"spot"`` (its spot share) or None.
    The one rule of both clocks' engines (the task-bag simulator's ``grant``, the platform's pools)."""
    n = min(int(count), max(int((capacity - in_use) // cores), 0))
    why = "zone" if n < count else None
    if spot:
        sfit = int((math.floor(spot_capacity * capacity + 1e-9) - spot_use) // cores)
        if sfit < n:
            n = max(sfit, 0)
            why = why or "spot"
    return n, why


class ZoneCapacity:
    """Cores in use per (zone, type) against the catalog's capacity (module docstring).

    ``factor`` scales every zone's capacity; ``spot_capacity`` is the share open to spot.
    ``version[(zone, itype)]`` bumps whenever cores are given back, so that an engine asks again
    only when the answer may have changed.
    """

    def __init__(self, catalog, *, factor: float = 1.0, spot_capacity: float = 1.0):
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

    def capacity(self, zone: str, itype: str) -> float:
        key = (zone, itype)
        c = self.cap.get(key)
        if c is None:
            c = self.cap[key] = math.floor(self.catalog.zone(zone).capacity.get(itype, 0) * self.factor + 1e-9)
        return c

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
