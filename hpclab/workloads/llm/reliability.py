"""Failures, checkpoints and goodput (effective training time) of a synchronous training run.

Failures arrive as a Poisson process at ``lambda = nodes * node_failure_rate`` (catalog
``reliability``; ``h100-llama3`` is Llama 3's 419 unexpected interruptions on 2,048 hosts in 54
days), so the run's mean time between failures is ``M = 1 / lambda``. Every ``tau`` seconds of
training the job writes a checkpoint of ``delta`` seconds; a failure loses the work since the last
checkpoint and costs a restart ``R`` (which a failure may also interrupt).

Checkpoint write time: ``delta = latency + bytes / min(throughput, nodes * client_throughput)``,
``bytes = checkpoint_bytes_per_param * params`` (bf16 weights + fp32 Adam states).

Expected wall time of one segment (Daly, 'A higher order estimate of the optimum checkpoint
interval for restart dumps', FGCS 22, 2006, Eq. 7; exact for exponential failures)::

    E[T(tau)] = M * exp(R/M) * (exp((tau + delta)/M) - 1),    goodput = tau / E[T(tau)]

Optimum interval: Young (1974) ``sqrt(2 delta M)``; Daly (2006, Eq. 37)
``sqrt(2 delta M) * (1 + sqrt(delta/(2M))/3 + delta/(18 M)) - delta`` for ``delta < 2M`` else ``M``.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from hpclab._validate import HpclabError, check_finite_array, check_positive

#: random draws one Monte-Carlo goodput estimate may take (each a few float arrays of this size:
#: about 0.5 GB at the bound); beyond it the estimate says so in one line instead
MAX_DRAWS = 20_000_000

__all__ = ["checkpoint_bytes", "checkpoint_time", "mtbf", "young_daly", "goodput", "simulate_goodput",
           "goodput_curve", "goodput_at_optimum", "interruptions"]


def checkpoint_bytes(model) -> float:
    """Bytes of a full training checkpoint: ``checkpoint_bytes_per_param * params``."""
    from hpclab.workloads.llm.model import transformer
    from hpclab.workloads.llm.validation import assumption

    return assumption("checkpoint_bytes_per_param") * transformer(model).params


def checkpoint_time(nbytes, storage, nodes, nic_bandwidth=None):
    """Seconds to write ``nbytes`` from ``nodes`` hosts to ``storage`` (a catalog Storage):
    ``latency + nbytes / min(throughput, nodes * min(client_throughput, nic_bandwidth))``
    (``nic_bandwidth``, B/s per host: the NICs the writes leave by; default no limit)."""
    n = check_finite_array("nbytes", nbytes, minimum=0, strict=False)
    k = check_finite_array("nodes", nodes, minimum=0)
    per_client = storage.client_throughput or storage.throughput
    if nic_bandwidth is not None:
        per_client = np.minimum(per_client, check_finite_array("nic_bandwidth", nic_bandwidth, minimum=0))
    bw = np.minimum(storage.throughput, k * per_client)
    t = storage.latency + n / bw
    return t if t.ndim else float(t)


def mtbf(cluster, nodes):
    """Mean time between failures of a job on ``nodes`` hosts: ``1 / (nodes * rate)`` seconds."""
    k = check_finite_array("nodes", nodes, minimum=0)
    rate = cluster.node_failure_rate
    if rate <= 0:
        return np.full(k.shape, np.inf) if k.ndim else float("inf")
    t = 1.0 / (k * rate)
    return t if t.ndim else float(t)


def young_daly(checkpoint, mtbf_, *, method="daly"):
    """Optimal checkpoint interval (seconds of training between checkpoints)."""
    d = check_finite_array("checkpoint", checkpoint, minimum=0)
    M = check_finite_array("mtbf", mtbf_, minimum=0)
    young = np.sqrt(2 * d * M)
    if method == "young":
        t = young
    elif method == "daly":
        t = np.where(d < 2 * M, young * (1 + np.sqrt(d / (2 * M)) / 3 + d / (18 * M)) - d, M)
    else:
        raise HpclabError(f"method must be one of young, daly; got {method!r}")
    return t if t.ndim else float(t)


def goodput(interval, checkpoint, mtbf_, restart):
    """Expected share of wall time spent on useful training (module docstring formula);
    arguments broadcast."""
    tau = check_finite_array("interval", interval, minimum=0)
    d = check_finite_array("checkpoint", checkpoint, minimum=0, strict=False)
    M = check_finite_array("mtbf", mtbf_, minimum=0)
    R = check_finite_array("restart", restart, minimum=0, strict=False)
    with np.errstate(over="ignore"):  # failures far more often than a segment: E[T] = inf, goodput 0
        expected = M * np.exp(R / M) * np.expm1((tau + d) / M)
    g = tau / expected
    return g if g.ndim else float(g)


def goodput_at_optimum(checkpoint, mtbf_, restart):
    """(Daly interval, goodput there), broadcast over the arguments."""
    tau = young_daly(checkpoint, mtbf_)
    return tau, goodput(tau, checkpoint, mtbf_, restart)


def simulate_goodput(interval, checkpoint, mtbf_, restart, *, work=30 * 86400.0, runs=200,
                     seed=0) -> xr.Dataset:
    """Seeded Monte-Carlo of whole runs: ``work`` seconds of training cut into segments of
    ``interval``; each segment (interval + checkpoint) is retried after every failure, with a
    restart before each retry; failures are exponential with mean ``mtbf``. Vectorised over
    runs x segments x intervals.

    Returns a Dataset along ``interval`` with ``goodput`` (total work / total wall time over runs),
    ``stderr``, ``failures`` (mean count per run) and the analytic ``goodput_analytic``.
    """
    taus = check_finite_array("interval", np.atleast_1d(interval), minimum=0)
    d = float(check_finite_array("checkpoint", checkpoint, minimum=0, strict=False))
    M = float(check_finite_array("mtbf", mtbf_, minimum=0))
    R = float(check_finite_array("restart", restart, minimum=0, strict=False))
    check_positive("runs", runs, integer=True)
    check_positive("work", work)
    rng = np.random.default_rng(seed)
    mean, se, fails = [], [], []
    for tau in taus:
        segs = max(1, int(round(work / tau)))
        L0 = tau + d  # first attempt: no restart
        L1 = R + tau + d  # retries: restart first; a failure during restart also counts
        # what the draws cost: runs x segments first attempts, and on average 1/p - 1 retries
        # after a failed one (p = exp(-L1/M), a retry's chance to get through)
        if runs * segs > MAX_DRAWS:
            raise HpclabError(f"interval {tau:g} s: {float(segs):.3g} checkpoint intervals in {work:g} s of work x "
                              f"{int(runs):,} runs is more than {MAX_DRAWS:,} draws; take a longer "
                              f"interval or fewer runs")
        retries = runs * segs * -math.expm1(-L0 / M) * math.expm1(min(L1 / M, 700.0))
        if retries > MAX_DRAWS:
            raise HpclabError(f"interval {tau:g} s: with a failure every {M:g} s on average, an interval "
                              f"and its checkpoint ({L1:g} s with the restart) almost never complete "
                              f"(about {retries:.3g} retries to draw, more than {MAX_DRAWS:,}): the "
                              f"goodput is near 0; take a shorter interval or fewer GPUs")
        shape = (int(runs), segs)
        first_fails = rng.random(shape) >= np.exp(-L0 / M)
        # retries after the first failure: failures before success ~ Geometric(p = exp(-L1/M))
        k = np.where(first_fails, rng.geometric(np.exp(-L1 / M), size=shape) - 1, 0)
        # time lost in the first attempt: exponential truncated to [0, L0)
        u = rng.random(shape)
        lost0 = np.where(first_fails, -M * np.log1p(-u * -np.expm1(-L0 / M)), 0.0)
        # time lost in each failed retry: exponential truncated to [0, L1); sum k of them
        total_k = int(k.sum())
        u2 = rng.random(total_k)
        lost1 = -M * np.log1p(-u2 * -np.expm1(-L1 / M))
        owner = np.repeat(np.arange(k.size), k.ravel())
        lost_retries = np.bincount(owner, weights=lost1, minlength=k.size).reshape(shape)
        wall = np.where(first_fails, lost0 + lost_retries + L1, L0).sum(axis=1)
        g = segs * tau / wall
        # pooled ratio (total work / total wall) estimates tau / E[T] without Jensen's bias
        mean.append(segs * tau * runs / wall.sum())
        se.append(g.std(ddof=1) / np.sqrt(runs) if runs > 1 else np.nan)
        fails.append((first_fails.sum(axis=1) + k.sum(axis=1)).mean())
    return xr.Dataset(
        {"goodput": ("interval", np.array(mean), {"units": "1", "long_name": "Monte-Carlo goodput"}),
         "stderr": ("interval", np.array(se), {"units": "1"}),
         "failures": ("interval", np.array(fails), {"units": "1", "long_name": "failures per run"}),
         "goodput_analytic": ("interval", goodput(taus, d, M, R), {"units": "1"})},
        coords={"interval": ("interval", taus, {"units": "s"})},
        attrs={"checkpoint": d, "mtbf": M, "restart": R, "work": float(work), "runs": int(runs),
               "seed": seed})


def goodput_curve(model, cluster, gpus, *, storages=("cpfs", "oss"), intervals=None,
                  restart=None, catalog=None, simulate=False, runs=100, work=30 * 86400.0,
                  seed=0) -> xr.Dataset:
    """Goodput against checkpoint interval for each storage, with the Young/Daly optimum.

    Returns a Dataset with dims ``storage`` x ``interval``: ``goodput`` (analytic), optionally
    ``goodput_mc``/``stderr_mc``; per storage ``checkpoint_time``, ``optimal_interval`` (Daly),
    ``optimal_goodput``; attrs ``mtbf`` and ``restart``.
    """
    from hpclab.catalog import default

    cat = catalog or default()
    gpus = check_positive("gpus", gpus, integer=True)
    nodes = int(np.ceil(gpus / cluster.gpus_per_node))
    M = mtbf(cluster, nodes)
    R = cluster.restart_time if restart is None else float(restart)
    size = checkpoint_bytes(model)
    if intervals is None:
        intervals = np.geomspace(30.0, 12 * 3600.0, 60)
    taus = np.asarray(intervals, dtype=float)
    rows, ck, opt, optg, mc, mcse = [], [], [], [], [], []
    for name in storages:
        d = checkpoint_time(size, cat.storage(name), nodes)
        ck.append(d)
        rows.append(goodput(taus, d, M, R))
        t_opt, g_opt = goodput_at_optimum(d, M, R)
        opt.append(t_opt)
        optg.append(g_opt)
        if simulate:
            sim = simulate_goodput(taus, d, M, R, work=work, runs=runs, seed=seed)
            mc.append(sim.goodput.values)
            mcse.append(sim.stderr.values)
    ds = xr.Dataset(
        {"goodput": (("storage", "interval"), np.array(rows), {"units": "1", "long_name": "goodput (analytic)"}),
         "checkpoint_time": ("storage", np.array(ck), {"units": "s"}),
         "optimal_interval": ("storage", np.array(opt), {"units": "s", "long_name": "Young/Daly interval"}),
         "optimal_goodput": ("storage", np.array(optg), {"units": "1"})},
        coords={"storage": list(storages), "interval": ("interval", taus, {"units": "s"})},
        attrs={"mtbf": M, "restart": R, "nodes": nodes, "checkpoint_bytes": size})
    if simulate:
        ds["goodput_mc"] = (("storage", "interval"), np.array(mc), {"units": "1"})
        ds["stderr_mc"] = (("storage", "interval"), np.array(mcse), {"units": "1"})
    return ds


def interruptions(cluster, nodes, days, *, runs=1000, seed=0) -> xr.Dataset:
    """Expected and sampled (seeded Poisson) interruption counts of ``nodes`` hosts over ``days``."""
    nodes = check_positive("nodes", nodes, integer=True)
    days = check_positive("days", days)
    check_positive("runs", runs, integer=True)
    lam = cluster.node_failure_rate * nodes * days * 86400.0
    rng = np.random.default_rng(seed)
    sample = rng.poisson(lam, size=int(runs))
    return xr.Dataset({"expected": ((), lam), "sampled_mean": ((), sample.mean()),
                       "sampled_std": ((), sample.std(ddof=1))},
                      attrs={"nodes": nodes, "days": days, "runs": runs, "seed": seed})
