"""Seeded fault model for pools: spot reclaims (a notice, then a hard kill) and node failures.

A spot instance is reclaimed after an exponentially distributed running time: with a reclaim
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

import math
from dataclasses import dataclass, field

import numpy as np

from hpclab._validate import HpclabError, check_nonnegative

__all__ = ["Preemption", "Fault", "SpotFaults", "FaultSchedule"]


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
    """

    rate: float | str = 0.0
    times: tuple = ()
    notice: float | None = None
    failure_rate: float = 0.0
    seed: int = 0

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

    def schedule(self) -> "FaultSchedule":
        """A fresh schedule (runtime state) for one pool run."""
        return FaultSchedule(self)


@dataclass
class FaultSchedule:
    """Runtime state of a :class:`SpotFaults` model over one pool run.

    The pool calls :meth:`on_running` when an instance starts running and :meth:`due` on every
    tick; :meth:`due` returns each fault once.
    """

    config: SpotFaults
    _next: dict = field(default_factory=dict)  # instance -> (pool time, reason)
    _fired: set = field(default_factory=set)  # indices of scripted preemptions done
    _n: int = 0

    def _rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng([int(self.config.seed), k])

    def on_running(self, instance: str, market: str, t: float, zone_rate: float = 0.0) -> None:
        """Draw when ``instance`` (running since pool time ``t``) will be reclaimed or fail."""
        k = self._n
        self._n += 1
        rng = self._rng(k)
        u_spot, u_fail = rng.random(2)
        rate = zone_rate if self.config.rate == "catalog" else float(self.config.rate)
        candidates = []
        if market == "spot" and rate > 0:
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
