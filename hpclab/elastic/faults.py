"""Seeded fault model for pools: spot reclaims (a notice, then a hard kill) and node failures.

Two layers:

- :class:`SpotMarket` is the spot market both clocks share: for each (type, zone) market a
  seeded schedule of reclaim *waves* (the market's spot capacity goes, and most of its spot
  instances with it), or independent reclaims; a protection period; a bid; a seeded moving
  price (or the user's price history). Given an instance's (type, zone, grant time) it returns
  its reclaim time (:meth:`MarketSchedule.reclaim_times`), and it prices spot seconds for the
  meter (:meth:`MarketSchedule.spot_cost`). The virtual clock calls it at each spot grant; the
  real pool through :class:`SpotFaults` ``(market=...)``: the same seed and the same grants give
  the same reclaims on both clocks.
- :class:`SpotFaults` is the real pool's fault configuration (reclaims, failures, scripted
  preemptions); without ``market`` it draws each reclaim on its own, as below.

Without a market, a spot instance is reclaimed after an exponentially distributed running time: with a reclaim
rate :math:`\\lambda` per instance-hour, :math:`P(T > t) = e^{-\\lambda t}` (a Poisson process
per instance, the memoryless model behind public "interruption frequency" advisories, and the
rate the catalog gives per zone, ``Zone.spot_reclaim_rate``). A reclaim starts with a notice
(``InstanceType.spot_notice``, 5 minutes on Alibaba Cloud preemptible instances): the pool
drains the instance gracefully; if it is still there when the notice runs out, it is killed
hard. A node failure (``failure_rate``) is a hard kill without notice. Scripted preemptions
(:class:`Preemption`) fire at given pool times, for reproducible demos and tests.

The model is pure bookkeeping on the pool clock, so the real pool and the simulator share it.
Times are pool seconds; rates are per pool hour.
"""

from __future__ import annotations

import csv
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive

__all__ = ["Preemption", "Fault", "SpotFaults", "FaultSchedule", "SpotMarket", "MarketSchedule",
           "MARKET_MODELS", "clustered_share", "price_check"]

#: how reclaims of one (type, zone) market relate (``markets`` in data/catalog/markets.yaml)
MARKET_MODELS = ("correlated", "independent")
_CHUNK = 1024  # waves / price periods generated at a time


def _catalog(catalog):
    if catalog is None:
        from hpclab import catalog as _c

        return _c.default()
    return catalog


def _key(*parts) -> list[int]:
    """Stable integers for a seed sequence (crc32 of each name: independent of Python's hash)."""
    return [int(p) if isinstance(p, (int, np.integer)) else zlib.crc32(str(p).encode()) for p in parts]


@dataclass(frozen=True)
class SpotMarket:
    """The spot market of a run: reclaim waves or independent reclaims, protection, bid, prices.

    Parameters
    ----------
    model : {"correlated", "independent"}
        ``correlated`` (default): each (type, zone) market has waves, a Poisson process of rate
        ``rate / wave_share`` (``rate``: the zone's mean reclaims per spot instance, catalog
        ``spot_reclaim_rate`` or the clock's override); a wave reclaims each spot instance of
        the market (past its protection) with probability ``wave_share``, at a uniform offset
        in ``[0, wave_spread]`` after the wave starts. So the mean reclaim rate per instance is
        the zone's, as in the independent model, but reclaims arrive together.
        ``independent``: each instance after an exponential time of rate ``rate``.
    wave_share, wave_spread : float, optional
        Override the catalog's (``markets`` in ``data/catalog/markets.yaml``); spread in s.
    option : str
        How spot is bought (catalog ``spot_options``): ``"none"`` (no protection period, the
        catalog's ``price_spot``) or ``"protected-1h"`` (never reclaimed in its first hour after
        the grant, at the option's ``price_factor`` x the spot price).
    prices : "fixed", "path" or a path to a CSV file
        ``fixed``: the catalog's ``price_spot``. ``path``: a seeded mean-reverting price per
        market (an AR(1) of memory ``price_memory`` and standard deviation ``price_volatility``
        in shares of on-demand around the catalog's spot share, clipped to ``[price_floor, 1]``
        x on-demand, constant over each ``price_period``). A CSV file: the user's price history,
        columns ``time`` (s, pool time at which a price starts), ``itype``, ``zone``,
        ``price`` (USD/h), piecewise constant (markets absent from the file: ``price_spot``).
    bid : float, optional
        The highest price accepted, as a share of the on-demand price (0, 1]; an instance is
        reclaimed when the market price passes it (after its protection). None: pay the market
        price (never reclaimed for price; the path never exceeds on-demand).
    price_period : float, optional
        Seconds per price period (default: the catalog's, 1 h: as billed).
    """

    model: str = "correlated"
    wave_share: float | None = None
    wave_spread: float | None = None
    option: str = "none"
    prices: str = "fixed"
    bid: float | None = None
    price_period: float | None = None

    def __post_init__(self):
        check_choice("model", self.model, MARKET_MODELS)
        if self.wave_share is not None and not (isinstance(self.wave_share, (int, float))
                                                and 0 < self.wave_share <= 1):
            raise HpclabError(f"wave_share must be a number in (0, 1], got {self.wave_share!r}")
        if self.wave_spread is not None:
            check_nonnegative("wave_spread (s)", self.wave_spread)
        if self.bid is not None and not (isinstance(self.bid, (int, float)) and 0 < self.bid <= 1):
            raise HpclabError(f"bid must be a share of the on-demand price in (0, 1], got {self.bid!r}")
        if self.price_period is not None:
            check_positive("price_period (s)", self.price_period)
        if not isinstance(self.prices, (str, Path)):
            raise HpclabError(f"prices must be 'fixed', 'path' or a CSV file, got {self.prices!r}")

    def schedule(self, catalog=None, seed: int = 0) -> "MarketSchedule":
        """The runtime schedule of this market for one run (seeded)."""
        return MarketSchedule(self, _catalog(catalog), seed)


class MarketSchedule:
    """A :class:`SpotMarket` over one run: waves, per-instance draws and prices, all seeded.

    Each (type, zone) market has its own random streams keyed by (seed, type, zone), so the
    schedule of one market does not depend on what happens in another; within a market, the
    k-th spot instance granted gets the k-th draw. Both clocks call :meth:`reclaim_times` at
    each grant, in grant order.
    """

    def __init__(self, config: SpotMarket, catalog, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise HpclabError(f"seed must be a whole number, got {seed!r}")
        self.config, self.catalog, self.seed = config, catalog, int(seed)
        rec = catalog.market(config.model)
        self.model = rec.model
        self.wave_share = float(config.wave_share if config.wave_share is not None else rec.wave_share)
        self.wave_spread = float(config.wave_spread if config.wave_spread is not None else rec.wave_spread)
        self.price_period = float(config.price_period or rec.price_period)
        self.price_floor, self.price_volatility = rec.price_floor, rec.price_volatility
        self.price_memory = rec.price_memory
        opt = catalog.spot_option(config.option)
        self.protection, self.price_factor = float(opt.protection), float(opt.price_factor)
        self.bid = config.bid
        self._waves: dict = {}  # (itype, zone) -> [times array, rng, wave rate]
        self._draws: dict = {}  # (itype, zone) -> rng of the per-instance draws
        self._paths: dict = {}  # (itype, zone) -> [starts, shares, rng, last AR state]
        self._history = None
        if config.prices not in ("fixed", "path"):
            self._history = _read_history(Path(config.prices), catalog)
        self.granted: list = []  # (itype, zone, grant, reclaim) of every call, for inspection

    # -- reclaims --------------------------------------------------------------------------------
    def wave_times(self, itype: str, zone: str, rate: float, until: float) -> np.ndarray:
        """The market's wave start times up to pool time ``until`` (``rate``: mean reclaims per
        instance-second; waves come at ``rate / wave_share``)."""
        w = self._wave_state(itype, zone, rate)
        self._extend_waves(w, until=until)
        return w[0][w[0] <= until]

    def _wave_state(self, itype, zone, rate):
        w = self._waves.get((itype, zone))
        if w is None:
            rng = np.random.default_rng(np.random.SeedSequence(_key(self.seed, itype, zone, 1)))
            w = self._waves[itype, zone] = [np.zeros(0), rng, float(rate)]
        elif not math.isclose(w[2], rate, rel_tol=1e-12):
            raise HpclabError(f"market {itype} in {zone}: reclaim rate changed within a run "
                              f"({w[2]:g} then {rate:g} per second)")
        return w

    def _extend_waves(self, w, *, until=-np.inf, count=0):
        rate = w[2] / self.wave_share
        while w[0].size < count or (w[0][-1] if w[0].size else 0.0) <= until:
            last = w[0][-1] if w[0].size else 0.0
            w[0] = np.concatenate([w[0], last + np.cumsum(w[1].exponential(1.0 / rate, _CHUNK))])

    def reclaim_times(self, itype: str, zone: str, grant, rate: float) -> np.ndarray:
        """Pool times at which spot instances granted at ``grant`` (array) in this market are
        reclaimed (``inf``: never). ``rate``: the zone's mean reclaims per instance-second.

        Correlated: instance ``k`` is caught by wave ``j0 + G_k - 1`` (``j0`` the first wave at or
        after its protection ends, ``G_k`` geometric in ``wave_share``) at offset ``U_k
        wave_spread``. Independent: ``grant + protection + Exp(rate)``. A bid below the market
        price ends it earlier: at the first time after its protection that the price passes it.
        """
        grant = np.atleast_1d(np.asarray(grant, dtype=float))
        check_nonnegative("rate (reclaims per instance-second)", rate)
        n = grant.size
        rng = self._draws.get((itype, zone))
        if rng is None:
            rng = self._draws[itype, zone] = np.random.default_rng(
                np.random.SeedSequence(_key(self.seed, itype, zone, 2)))
        t0 = grant + self.protection
        out = np.full(n, np.inf)
        # two uniforms per instance, in grant order: one call for n instances draws what n
        # calls for one instance each draw (the real pool grants one at a time)
        uu = rng.random((n, 2))
        if self.model == "correlated":
            if self.wave_share < 1:  # geometric in the share, by inversion
                g = np.maximum(np.ceil(np.log1p(-uu[:, 0]) / math.log1p(-self.wave_share)), 1).astype(np.int64)
            else:
                g = np.ones(n, dtype=np.int64)
            u = uu[:, 1]
            if rate > 0 and n:
                w = self._wave_state(itype, zone, rate)
                self._extend_waves(w, until=float(t0.max()))
                j0 = np.searchsorted(w[0], t0, side="left")
                self._extend_waves(w, count=int((j0 + g).max()))
                out = w[0][j0 + g - 1] + u * self.wave_spread
        else:
            e = -np.log1p(-uu[:, 0])
            if rate > 0:
                with np.errstate(over="ignore"):  # a vanishing rate: never (inf)
                    out = t0 + e / rate
        if self.bid is not None and self.config.prices != "fixed":
            out = np.minimum(out, self._bid_crossing(itype, zone, t0))
        self.granted.extend(zip([itype] * n, [zone] * n, grant.tolist(), out.tolist()))
        return out

    def _bid_crossing(self, itype, zone, t0):
        """First time >= t0 at which the market price exceeds the bid (inf if it never does
        within the path generated, at most ``_CHUNK * 64`` periods past t0)."""
        od = self.catalog.instance(itype).price_on_demand
        bid = self.bid * od
        out = np.full(t0.size, np.inf)
        horizon = float(t0.max()) + self.price_period
        for _ in range(64):
            starts, prices = self.path(itype, zone, horizon)
            over = prices > bid * (1 + 1e-12)
            idx = np.where(over, np.arange(starts.size), starts.size)
            nxt = np.minimum.accumulate(idx[::-1])[::-1]  # first period at or after k above the bid
            k0 = np.searchsorted(starts, t0, side="right") - 1
            j = nxt[np.maximum(k0, 0)]
            found = j < starts.size
            out = np.where(found, np.maximum(starts[np.minimum(j, starts.size - 1)], t0), np.inf)
            if found.all() or self._history is not None:
                break
            horizon += _CHUNK * self.price_period
        return out

    # -- prices ----------------------------------------------------------------------------------
    def path(self, itype: str, zone: str, until: float) -> tuple[np.ndarray, np.ndarray]:
        """The market price (USD/s, before the option's ``price_factor``) as ``(starts,
        prices)``: ``prices[k]`` from ``starts[k]`` to ``starts[k+1]`` (the last one on), covering
        pool times ``[0, until]``."""
        inst = self.catalog.instance(itype)
        if self.config.prices == "fixed":
            return np.zeros(1), np.array([inst.price_spot])
        if self._history is not None:
            h = self._history.get((itype, zone))
            return h if h is not None else (np.zeros(1), np.array([inst.price_spot]))
        p = self._paths.get((itype, zone))
        if p is None:
            rng = np.random.default_rng(np.random.SeedSequence(_key(self.seed, itype, zone, 3)))
            p = self._paths[itype, zone] = [np.zeros(0), rng, None]
        need = int(math.floor(max(until, 0.0) / self.price_period)) + 1
        if p[0].size < need:
            from scipy.signal import lfilter

            rho = math.exp(-self.price_period / self.price_memory)
            k = max(need - p[0].size, _CHUNK)
            eps = p[1].standard_normal(k) * self.price_volatility
            if p[2] is None:  # a stationary start: the first deviation has the full variance
                e = eps * math.sqrt(1 - rho**2)
                e[0] = eps[0]
                y, zi = lfilter([1.0], [1.0, -rho], e, zi=[0.0])
            else:
                y, zi = lfilter([1.0], [1.0, -rho], eps * math.sqrt(1 - rho**2), zi=[rho * p[2]])
            p[2] = float(y[-1])
            p[0] = np.concatenate([p[0], y])
        mean = inst.price_spot / inst.price_on_demand
        shares = np.clip(mean + p[0][:max(need, 1)], self.price_floor, 1.0)
        starts = np.arange(shares.size) * self.price_period
        return starts, shares * inst.price_on_demand

    def price_path(self, itype: str, zone: str, until: float) -> xr.Dataset:
        """The market's price per period up to ``until`` (dim ``time``: period starts, s):
        ``price`` (USD/h, as billed with the option's factor) and ``share`` of on-demand."""
        starts, prices = self.path(itype, zone, until)
        keep = starts <= until
        od = self.catalog.instance(itype).price_on_demand
        return xr.Dataset(
            {"price": ("time", prices[keep] * self.price_factor * 3600.0, {"units": "USD/h"}),
             "share": ("time", prices[keep] / od, {"units": "1", "long_name": "share of on-demand"})},
            coords={"time": ("time", starts[keep], {"units": "s"})},
            attrs={"itype": itype, "zone": zone, "prices": str(self.config.prices),
                   "option": self.config.option, "price_factor": self.price_factor})

    def spot_cost(self, itype: str, zone: str, start, end) -> np.ndarray:
        """USD for spot instances of a market billed from ``start`` to ``end`` (arrays, s): the
        integral of the piecewise-constant price (:func:`hpclab.elastic.billing.path_cost`)
        times the option's ``price_factor``."""
        from hpclab.elastic.billing import path_cost

        start = np.asarray(start, dtype=float)
        end = np.asarray(end, dtype=float)
        until = float(end.max()) if end.size else 0.0
        starts, prices = self.path(itype, zone, until)
        return path_cost(start, end, starts, prices) * self.price_factor


def _read_history(path: Path, catalog) -> dict:
    """A user's spot price history: CSV ``time,itype,zone,price`` (s, names, USD/h)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise HpclabError(f"{path}: cannot read price history ({exc.strerror})") from None
    rows: dict = {}
    reader = csv.DictReader(text.splitlines())
    need = ("time", "itype", "zone", "price")
    if reader.fieldnames is None or any(c not in reader.fieldnames for c in need):
        raise HpclabError(f"{path}: line 1: price history needs columns {', '.join(need)} "
                          f"(time s, price USD/h); got {', '.join(reader.fieldnames or []) or 'none'}")
    for line, row in enumerate(reader, start=2):
        try:
            t, p = float(row["time"]), float(row["price"])
        except (TypeError, ValueError):
            raise HpclabError(f"{path}: line {line}: time and price must be numbers, got "
                              f"{row['time']!r}, {row['price']!r}") from None
        if not (math.isfinite(t) and t >= 0 and math.isfinite(p) and p >= 0):
            raise HpclabError(f"{path}: line {line}: time and price must be finite and >= 0")
        itype, zone = row["itype"], row["zone"]
        try:
            catalog.instance(itype)
            catalog.zone(zone)
        except KeyError as exc:
            raise HpclabError(f"{path}: line {line}: {exc}") from None
        rows.setdefault((itype, zone), []).append((t, p / 3600.0, line))
    out = {}
    for key, vals in rows.items():
        times = np.array([v[0] for v in vals])
        if np.any(np.diff(times) <= 0):
            bad = vals[int(np.flatnonzero(np.diff(times) <= 0)[0]) + 1][2]
            raise HpclabError(f"{path}: line {bad}: times of {key[0]} in {key[1]} must increase")
        out[key] = (times, np.array([v[1] for v in vals]))
    return out


def clustered_share(times, markets, window: float = 180.0) -> float:
    """Share of reclaims that come within ``window`` seconds of another reclaim of the same
    market (``markets``: one label per reclaim, e.g. ``"itype@zone"``); NaN if there are none."""
    t = np.asarray(times, dtype=float)
    m = np.asarray(markets)
    if t.size == 0:
        return math.nan
    codes = np.unique(m, return_inverse=True)[1]
    order = np.lexsort((t, codes))
    t, c = t[order], codes[order]
    gap = np.diff(t)
    same = c[1:] == c[:-1]
    close = same & (gap <= window)
    near = np.zeros(t.size, dtype=bool)
    near[1:] |= close
    near[:-1] |= close
    return float(near.mean())


def price_check(catalog=None, *, unit_price: str = "alibaba-eci-cn", rate: str = "cny-usd") -> xr.Dataset:
    """The catalog's illustrative on-demand prices against published per-resource prices.

    For each instance type: ``vcpus x vcpu_price + memory GiB x memory_price`` (CNY/s, the ECI
    unit prices) converted with the catalog's one exchange rate, against ``price_on_demand``.
    Returns a Dataset (dim ``itype``): ``catalog`` and ``published`` (USD/h) and ``ratio``
    (catalog / published).
    """
    cat = _catalog(catalog)
    up, fx = cat.unit_price(unit_price), cat.exchange_rate(rate)
    names = [n for n, r in cat.instances.items() if r.gpus == 0]  # unit prices price CPU and memory
    rec = [cat.instance(n) for n in names]
    vcpu = np.array([r.vcpus for r in rec], dtype=float)
    mem = np.array([r.memory for r in rec]) / 2.0**30
    published = (vcpu * up.vcpu_price + mem * up.memory_price) / fx.rate * 3600.0
    ours = np.array([r.price_on_demand for r in rec]) * 3600.0
    return xr.Dataset(
        {"catalog": ("itype", ours, {"units": "USD/h", "long_name": "catalog price_on_demand"}),
         "published": ("itype", published, {"units": "USD/h",
                                            "long_name": f"{unit_price} unit prices at {fx.rate:g} CNY/USD"}),
         "ratio": ("itype", ours / published, {"units": "1"})},
        coords={"itype": names},
        attrs={"unit_price": unit_price, "unit_price_date": up.date, "exchange_rate": fx.rate,
               "exchange_rate_date": fx.date, "source": up.source("vcpu_price")})


@dataclass(frozen=True)
class Preemption:
    """A scripted reclaim at pool time ``at``.

    ``instance``: the instance id to reclaim, or None for the longest-running spot instance at
    that time (the preemption waits until one runs). ``notice``: pool seconds between the notice
    and the hard kill; None takes the instance type's catalog ``spot_notice``; 0 kills at once.
    """

    at: float
    instance: str | None = None
    notice: float | None = None

    def __post_init__(self):
        check_nonnegative("Preemption.at", self.at)
        if self.notice is not None:
            check_nonnegative("Preemption.notice", self.notice)


@dataclass(frozen=True)
class Fault:
    """A fault due now: reclaim ``instance`` with ``notice`` pool seconds (0: hard kill)."""

    instance: str
    notice: float | None  # None: the catalog spot_notice of the instance type
    reason: str  # "spot-notice" (reclaim) or "failure"


@dataclass(frozen=True)
class SpotFaults:
    """Configuration of the fault model.

    Parameters
    ----------
    rate : float or "catalog"
        Spot reclaims per spot instance-hour of pool time; ``"catalog"`` uses the zone's
        ``spot_reclaim_rate``. Default 0 (no random reclaims).
    times : sequence of Preemption or float
        Scripted reclaims (a float ``t`` is ``Preemption(at=t)``).
    notice : float, optional
        Notice period in pool seconds for every reclaim (default: the catalog ``spot_notice``).
    failure_rate : float
        Hard failures (no notice) per instance-hour, any market. Default 0.
    seed : int
        Seed of the random draws: the same seed and the same launches give the same faults.
    market : SpotMarket, optional
        Draw spot reclaims from this market's seeded schedule at each grant (the virtual clock's
        schedule for the same seed and grants), at ``rate``; None: one independent exponential
        draw per instance when it starts running.
    """

    rate: float | str = 0.0
    times: tuple = ()
    notice: float | None = None
    failure_rate: float = 0.0
    seed: int = 0
    market: SpotMarket | None = None

    def __post_init__(self):
        if isinstance(self.rate, str):
            if self.rate != "catalog":
                raise HpclabError(f"rate must be a number >= 0 (per instance-hour) or 'catalog', "
                                  f"got {self.rate!r}")
        else:
            check_nonnegative("rate (spot reclaims per instance-hour)", self.rate)
        check_nonnegative("failure_rate (per instance-hour)", self.failure_rate)
        if self.notice is not None:
            check_nonnegative("notice (pool seconds)", self.notice)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise HpclabError(f"seed must be a whole number, got {self.seed!r}")
        times = []
        for t in (self.times or ()):
            times.append(t if isinstance(t, Preemption) else Preemption(at=float(t)))
        object.__setattr__(self, "times", tuple(sorted(times, key=lambda p: p.at)))
        if self.market is not None and not isinstance(self.market, SpotMarket):
            raise HpclabError(f"market must be a SpotMarket or None, got {type(self.market).__name__}")

    def schedule(self, catalog=None) -> "FaultSchedule":
        """A fresh schedule (runtime state) for one pool run."""
        sched = FaultSchedule(self)
        if self.market is not None:
            sched.market = self.market.schedule(catalog, self.seed)
        return sched


@dataclass
class FaultSchedule:
    """Runtime state of a :class:`SpotFaults` model over one pool run.

    The pool calls :meth:`on_running` when an instance starts running and :meth:`due` on every
    tick; :meth:`due` returns each fault once.
    """

    config: SpotFaults
    market: MarketSchedule | None = None  # the shared spot market schedule, if any
    _next: dict = field(default_factory=dict)  # instance -> (pool time, reason)
    _fired: set = field(default_factory=set)  # indices of scripted preemptions done
    _n: int = 0

    def _rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng([int(self.config.seed), k])

    def _rate(self, zone_rate: float) -> float:
        return zone_rate if self.config.rate == "catalog" else float(self.config.rate)

    def on_granted(self, instance: str, itype: str, zone: str, market: str, t: float,
                   zone_rate: float = 0.0) -> None:
        """The cloud granted ``instance`` at pool time ``t``: with a market, its reclaim time
        comes from the market's schedule (``zone_rate`` per instance-hour, used with
        ``rate="catalog"``); a reclaim due before it runs fires once it runs."""
        if self.market is None or market != "spot":
            return
        rate = self._rate(zone_rate) / 3600.0
        (when,) = self.market.reclaim_times(itype, zone, [t], rate)
        if math.isfinite(when):
            old = self._next.get(instance)
            self._next[instance] = min(old, (float(when), "spot-notice")) if old else \
                (float(when), "spot-notice")

    def on_running(self, instance: str, market: str, t: float, zone_rate: float = 0.0) -> None:
        """Draw when ``instance`` (running since pool time ``t``) will fail, and (without a
        market) when it will be reclaimed."""
        k = self._n
        self._n += 1
        rng = self._rng(k)
        u_spot, u_fail = rng.random(2)
        rate = self._rate(zone_rate)
        candidates = []
        if instance in self._next:
            candidates.append(self._next[instance])
        if market == "spot" and rate > 0 and self.market is None:
            candidates.append((t - math.log1p(-u_spot) * 3600.0 / rate, "spot-notice"))
        if self.config.failure_rate > 0:
            candidates.append((t - math.log1p(-u_fail) * 3600.0 / self.config.failure_rate,
                               "failure"))
        if candidates:
            self._next[instance] = min(candidates)

    def forget(self, instance: str) -> None:
        """The instance left the pool: drop its pending draw."""
        self._next.pop(instance, None)

    def due(self, now: float, running: list[tuple[str, str, float]]) -> list[Fault]:
        """Faults due at pool time ``now``.

        ``running``: (instance, market, running_since) of the instances that are running and
        not already under notice.
        """
        out: list[Fault] = []
        alive = {r[0] for r in running}
        taken: set[str] = set()
        for i, p in enumerate(self.config.times):
            if i in self._fired or p.at > now:
                continue
            if p.instance is not None:
                if p.instance in alive:
                    self._fired.add(i)
                    taken.add(p.instance)
                    out.append(Fault(p.instance, p.notice, "spot-notice"))
                continue
            spot = sorted((r for r in running if r[1] == "spot" and r[0] not in taken),
                          key=lambda r: (r[2], r[0]))
            if spot:
                self._fired.add(i)
                taken.add(spot[0][0])
                out.append(Fault(spot[0][0], p.notice, "spot-notice"))
        for inst in sorted(alive - taken):
            when = self._next.get(inst)
            if when is not None and when[0] <= now:
                del self._next[inst]
                taken.add(inst)
                notice = 0.0 if when[1] == "failure" else self.config.notice
                out.append(Fault(inst, notice, when[1]))
        return out
