"""Stragglers: a synchronous step waits for its slowest rank.

Each rank's step time is ``T0 * (1 + sigma * Z + delta * B)`` with ``Z`` standard normal (jitter)
and ``B`` Bernoulli(``q``) (a slow node this step). The step of ``n`` ranks takes the maximum, so
its expectation is (order statistics, e.g. David & Nagaraja, *Order Statistics*, 2003)::

    E[max] = T0 * (x0 + integral_{x0}^{inf} (1 - F(x)^n) dx),
    F(x) = (1 - q) Phi((x - 1)/sigma) + q Phi((x - 1 - delta)/sigma)

which grows like ``sigma * sqrt(2 ln n)`` for jitter alone (Gumbel limit) and jumps towards
``1 + delta`` once ``n q`` approaches 1: the article's "legs tied together". The analytic value is
checked against a seeded sample of the same model.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import ndtr

from hpclab._validate import HpclabError, check_finite_array

__all__ = ["straggler_step_time"]


def _params(jitter, slow_probability, slowdown):
    from hpclab.workloads.llm.validation import assumption

    sigma = assumption("straggler_jitter") if jitter is None else float(jitter)
    q = assumption("slow_node_probability") if slow_probability is None else float(slow_probability)
    delta = assumption("slow_node_slowdown") if slowdown is None else float(slowdown)
    if not sigma > 0:
        raise HpclabError(f"jitter must be > 0, got {jitter!r}")
    if not 0 <= q <= 1:
        raise HpclabError(f"slow_probability must be in [0, 1], got {slow_probability!r}")
    if not delta >= 0:
        raise HpclabError(f"slowdown must be >= 0, got {slowdown!r}")
    return sigma, q, delta


def _expected_max(n, sigma, q, delta, points=4001):
    lo = 1.0 - 10.0 * sigma
    hi = 1.0 + delta + 10.0 * sigma
    x = np.linspace(lo, hi, points)
    F = (1 - q) * ndtr((x - 1) / sigma) + q * ndtr((x - 1 - delta) / sigma)
    logF = np.log(np.clip(F, 1e-300, 1.0))
    tail = -np.expm1(np.outer(n, logF))  # 1 - F^n
    return lo + np.trapezoid(tail, x, axis=1)


def straggler_step_time(step_time, ranks, *, jitter=None, slow_probability=None, slowdown=None,
                        samples: int = 0, seed: int = 0) -> xr.Dataset:
    """Expected synchronous step time of ``ranks`` ranks whose own step times vary.

    Parameters
    ----------
    step_time : float
        Step time of one rank without noise, seconds (``T0``).
    ranks : int or array
        Ranks that synchronise every step (GPUs); a ``ranks`` dimension.
    jitter, slow_probability, slowdown : float, optional
        ``sigma``, ``q``, ``delta`` of the module docstring; defaults from
        ``data/reference/llm_training.yaml`` (``assumptions``).
    samples : int
        If > 0, also draw this many steps per rank count (seeded) and report their mean.

    Returns
    -------
    xarray.Dataset
        ``expected_step`` (analytic), ``slowdown_factor`` (``E[max] / T0``), and with samples
        ``sampled_step`` and ``sampled_stderr``, along ``ranks``.
    """
    t0 = float(check_finite_array("step_time", step_time, minimum=0))
    n = check_finite_array("ranks", np.atleast_1d(ranks), minimum=1, strict=False, integer=True)
    sigma, q, delta = _params(jitter, slow_probability, slowdown)
    factor = _expected_max(n, sigma, q, delta)
    data = {"expected_step": ("ranks", t0 * factor, {"units": "s", "long_name": "E[max over ranks]"}),
            "slowdown_factor": ("ranks", factor, {"units": "1", "long_name": "E[max] / T0"})}
    if samples:
        rng = np.random.default_rng(seed)
        mean, se = np.empty(n.size), np.empty(n.size)
        for i, k in enumerate(n.astype(int)):
            maxima = np.empty(int(samples))
            chunk = max(1, int(4_000_000 // k))
            for start in range(0, int(samples), chunk):
                size = min(chunk, int(samples) - start)
                x = 1 + sigma * rng.standard_normal((size, k)) + delta * (rng.random((size, k)) < q)
                maxima[start:start + size] = x.max(axis=1)
            mean[i], se[i] = maxima.mean(), maxima.std(ddof=1) / np.sqrt(samples)
        data["sampled_step"] = ("ranks", t0 * mean, {"units": "s", "long_name": "sampled mean of max"})
        data["sampled_stderr"] = ("ranks", t0 * se, {"units": "s"})
    return xr.Dataset(data, coords={"ranks": n.astype(int)},
                      attrs={"step_time": t0, "jitter": sigma, "slow_probability": q, "slowdown": delta,
                             "seed": seed})
