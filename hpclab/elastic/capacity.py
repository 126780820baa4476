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

from hpclab._validate import HpclabError, check_nonnegative, check_range

__all__ = ["ZoneCapacity", "ShortageNoise", "grantable", "spot_limit", "reclaim_excess", "check_curve",
           "curve_factor"]

#: the shortage process's memory: the correlation of a zone's log capacity factor from one
#: interval to the next (an AR(1) process; a modelling choice, not a measured figure)
SHORTAGE_MEMORY = 0.8
#: the largest standard deviation of the shortage: at 2 the median factor is exp(-2) = 0.14 and
#: full capacity returns in about one interval of six; far beyond it capacity is never there
#: (at 10 the median is e^-50), and a replay waiting for it would not end
MAX_SHORTAGE_SD = 2.0


def check_shortage(sigma) -> float:
    """``capacity_noise`` checked: a number in [0, :data:`MAX_SHORTAGE_SD`] (one line if not)."""
    return check_range("capacity_noise", sigma, 0.0, MAX_SHORTAGE_SD)


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


class ShortageNoise:
    """A seeded capacity shortage, the same on both virtual-clock engines: in each interval of
    ``interval`` seconds the capacity of every (zone, type) cell of ``shape`` is scaled by
    ``min(1, exp(x - sigma**2 / 2))``, ``x`` an AR(1) process of standard deviation ``sigma`` and
    correlation :data:`SHORTAGE_MEMORY` per interval. Intervals are drawn from ``rng`` in order
    as a run reaches them, so a longer run sees the same factors for the same seed.

    >>> import numpy as np
    >>> n = ShortageNoise(0.5, (1, 2), np.random.default_rng(1))
    >>> f = n.factor(7200.0)
    >>> f.shape, bool(np.all((f > 0) & (f <= 1))), n.step(7200.0)
    ((1, 2), True, 2)
    """

    @classmethod
    def seeded(cls, sigma: float, shape: tuple, seed: int, interval: float = 3600.0) -> "ShortageNoise":
        """The process of a run's ``seed``: the same draws on both virtual-clock engines (the
        third of :func:`run_streams`)."""
        return cls(sigma, shape, run_streams(seed)[2], interval)

    def __init__(self, sigma: float, shape: tuple, rng, interval: float = 3600.0):
        self.sigma = check_shortage(sigma)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < math.inf:
            raise HpclabError(f"capacity_interval must be a number of seconds > 0, got {interval!r}")
        self.interval = float(interval)
        self.shape, self.rng = tuple(shape), rng
        self._x: list = []  # the log factor of each interval drawn so far
        self._f: list = []

    def step(self, t: float) -> int:
        """The interval ``t`` falls in (0 from t = 0)."""
        return int(t // self.interval)

    def factor(self, t: float) -> np.ndarray:
        """The factors of the interval ``t`` falls in, an array of ``shape``."""
        k = self.step(t)
        s, rho = self.sigma, SHORTAGE_MEMORY
        while len(self._f) <= k:
            eps = self.rng.standard_normal(self.shape)
            x = s * eps if not self._x else rho * self._x[-1] + math.sqrt(1 - rho**2) * s * eps
            self._x.append(x)
            self._f.append(np.minimum(1.0, np.exp(x - s**2 / 2)))
        return self._f[k]


def run_streams(seed: int):
    """The seeded random streams of a virtual-clock run: boots, reclaims, capacity shortage."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 0x51AC]).spawn(3)]


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

    def __init__(self, catalog, *, factor: float = 1.0, spot_capacity: float = 1.0, curve=None,
                 noise: ShortageNoise | None = None, cells=None):
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
        # the shortage process over (zone, type) cells: ``cells[(zone, itype)]`` indexes its shape
        self.noise, self.cells = noise, dict(cells or {})
        self.step = 0 if noise is None else noise.step(0.0)
        # whether the last change of set_time raised (lowered) a capacity asked so far
        self.rose = self.fell = False

    def _scaled(self, zone: str, itype: str, f: float) -> float:
        """Whole cores of the catalog capacity times ``f``."""
        return math.floor(self.catalog.zone(zone).capacity.get(itype, 0) * f + 1e-9)

    def full(self, zone: str, itype: str) -> float:
        """The capacity without the shortage (the factor and the curve only): the most that the
        shortage process can give back."""
        return self._scaled(zone, itype, self.factor * self.scale)

    def capacity(self, zone: str, itype: str) -> float:
        key = (zone, itype)
        c = self.cap.get(key)
        if c is None:
            f = self.factor * self.scale
            if self.noise is not None and key in self.cells:
                f *= float(self.noise.factor(self.step * self.noise.interval)[self.cells[key]])
            c = self.cap[key] = self._scaled(zone, itype, f)
        return c

    def set_time(self, t: float) -> bool:
        """Apply the curve's factor and the shortage's interval at ``t``; True if either changed
        (every (zone, type) asked so far then has a new version, and :attr:`rose` says whether
        one of them now has more capacity, :attr:`fell` less). The keys now over capacity are
        :meth:`over`."""
        scale = curve_factor(self.curve, t)
        step = self.step if self.noise is None else self.noise.step(t)
        if scale == self.scale and step == self.step:
            return False
        before = dict(self.cap)
        self.scale, self.step = scale, step
        for key in self.cap:
            self.version[key] = self.version.get(key, 0) + 1
        self.cap.clear()
        self.rose = any(self.capacity(*key) > c for key, c in before.items())
        self.fell = any(self.capacity(*key) < c for key, c in before.items())
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
