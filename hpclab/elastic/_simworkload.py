"""Workloads for the virtual clock: task work in normalised compute units and arrival times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpclab._validate import HpclabError, check_choice, check_finite_array, check_nonnegative, check_positive

__all__ = ["Workload", "make_workload", "DURATIONS", "ARRIVALS"]

DURATIONS = ("fixed", "lognormal", "empirical")
ARRIVALS = ("burst", "uniform", "poisson")


@dataclass(frozen=True, eq=False)
class Workload:
    """Tasks for the simulator.

    Attributes
    ----------
    work : numpy.ndarray
        Work of each task in *normalised compute units*: seconds on one core of speed factor 1
        (the catalog's reference generation). On a core of generation ``g`` a task takes
        ``work / speed_factor[g]`` seconds.
    arrival : numpy.ndarray
        Pool seconds at which each task is submitted, non-decreasing (tasks are served first in,
        first out, in this order).
    """

    work: np.ndarray
    arrival: np.ndarray

    def __post_init__(self):
        work = check_finite_array("work", self.work, minimum=0.0, strict=True).ravel()
        arrival = check_finite_array("arrival", self.arrival, minimum=0.0, strict=False).ravel()
        if arrival.size == 1 and work.size > 1:
            arrival = np.full(work.size, arrival[0])
        if arrival.size != work.size:
            raise HpclabError(f"arrival must have one time per task ({work.size}), got {arrival.size}")
        if np.any(np.diff(arrival) < 0):
            raise HpclabError("arrival must be non-decreasing (tasks are served in submission order)")
        work.setflags(write=False)
        arrival.setflags(write=False)
        object.__setattr__(self, "work", work)
        object.__setattr__(self, "arrival", arrival)

    @property
    def tasks(self) -> int:
        return int(self.work.size)

    @property
    def total_work(self) -> float:
        """Sum of task work, in normalised compute units (reference core-seconds)."""
        return float(self.work.sum())

    def __repr__(self) -> str:
        return (f"<Workload {self.tasks} tasks, mean work {self.work.mean():.4g} units, "
                f"arrivals {self.arrival[0]:.4g}..{self.arrival[-1]:.4g} s>")


def make_workload(tasks: int | None = None, *, duration: str = "lognormal", mean: float = 60.0,
                  sigma: float = 0.5, samples=None, sample_speed: float = 1.0,
                  arrival: str = "burst", window: float = 0.0, bursts: int = 1, every: float = 0.0,
                  seed: int = 0) -> Workload:
    """Draw a seeded workload.

    Parameters
    ----------
    tasks : int
        Number of tasks (for ``duration="empirical"``: default ``len(samples)``, the samples as
        they are; otherwise a bootstrap draw from them).
    duration : {"fixed", "lognormal", "empirical"}
        ``fixed``: every task has work ``mean``. ``lognormal``: ``work = exp(mu + sigma * Z)`` with
        ``mu = ln(mean) - sigma**2 / 2`` so that the mean is ``mean``. ``empirical``: per-task
        times measured elsewhere (``samples``, seconds, e.g. from a real ElasticPool run), taken on
        cores of speed factor ``sample_speed``: ``work = samples * sample_speed``.
    arrival : {"burst", "uniform", "poisson"}
        ``burst``: ``bursts`` equal batches ``every`` seconds apart (one batch at t=0 by default).
        ``uniform``: sorted uniform times in ``[0, window]``. ``poisson``: a Poisson process of rate
        ``tasks / window``.
    seed : int
        Seed of the random draw (the same seed gives the same workload).
    """
    check_choice("duration", duration, DURATIONS)
    check_choice("arrival", arrival, ARRIVALS)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x574B]))
    if duration == "empirical":
        if samples is None:
            raise HpclabError("duration='empirical' needs samples (measured seconds per task)")
        s = check_finite_array("samples", samples, minimum=0.0, strict=True).ravel()
        check_positive("sample_speed", sample_speed)
        if tasks is None:
            work = s * sample_speed
        else:
            tasks = check_positive("tasks", tasks, integer=True)
            work = rng.choice(s, size=tasks, replace=True) * sample_speed
    else:
        if tasks is None:
            raise HpclabError(f"tasks is needed for duration={duration!r}")
        tasks = check_positive("tasks", tasks, integer=True)
        check_positive("mean", mean)
        if duration == "fixed":
            work = np.full(tasks, float(mean))
        else:
            check_nonnegative("sigma", sigma)
            mu = np.log(mean) - sigma**2 / 2
            work = np.exp(mu + sigma * rng.standard_normal(tasks))
    n = work.size
    if arrival == "burst":
        check_positive("bursts", bursts, integer=True)
        check_nonnegative("every", every)
        arr = (np.arange(n) * int(bursts) // n) * float(every)
    else:
        check_positive("window", window)
        if arrival == "uniform":
            arr = np.sort(rng.uniform(0.0, window, n))
        else:
            arr = np.cumsum(rng.exponential(window / n, n))
    return Workload(work=work, arrival=arr)
