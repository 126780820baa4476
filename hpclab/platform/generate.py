"""Seeded synthetic workloads, so that replays need no download.

* :func:`lublin_feitelson` -- HPC jobs from the Lublin-Feitelson (2003) model of rigid parallel
  jobs: sizes from a two-stage log-uniform with serial and power-of-two jobs, run times from a
  hyper-gamma on ln(seconds) whose mixing probability falls with the size, arrivals from a gamma
  on ln(inter-arrival) stretched by a daily cycle. Parameters (with their source) in
  ``data/traces/platform_model.yaml``; requested times from the "f-model" of Mu'alem and
  Feitelson (2001).
* :func:`gpu_jobs` -- a simple, documented generator of AI jobs: training gangs, inference and
  data pods with heavy-tailed (lognormal) run times and Poisson arrivals (illustrative shape).
* :func:`mixed_workload` -- both, with arrival rates set so that each kind offers a chosen load
  to a cluster of a chosen size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpclab._validate import HpclabError, check_positive
from hpclab.platform import _model
from hpclab.platform.jobs import check_jobs

__all__ = ["lublin_feitelson", "gpu_jobs", "mixed_workload", "requested_times", "offered_load"]

_SECONDS_IN_BUCKET = 1800.0


def _truncated_gamma(rng, shape, scale, limit, size):
    """Gamma draws with values above ``limit`` redrawn (as the reference generator does)."""
    shape = np.broadcast_to(shape, (size,)).astype(float)
    scale = np.broadcast_to(scale, (size,)).astype(float)
    out = rng.gamma(shape, scale)
    bad = out > limit
    while bad.any():
        out[bad] = rng.gamma(shape[bad], scale[bad])
        bad = out > limit
    return out


def _sizes(rng, n, p, uhi_shift):
    u = rng.random(n)
    serial = u <= p["serial_prob"]
    ulow, umed, uhi = p["ulow"], p["umed"] + uhi_shift, p["uhi"] + uhi_shift
    first = rng.random(n) <= p["uprob"]
    lo = np.where(first, ulow, umed)
    hi = np.where(first, umed, uhi)
    par = lo + rng.random(n) * (hi - lo)
    pow2 = u <= p["serial_prob"] + p["pow2_prob"]
    par = np.where(pow2, np.floor(par + 0.5), par)
    size = np.floor(2.0 ** par + 0.5).astype(np.int64)
    return np.where(serial, 1, np.maximum(size, 1))


def _runtimes(rng, sizes, p, limit):
    prob = np.clip(p["pa"] * sizes + p["pb"], 0.0, 1.0)
    first = rng.random(sizes.size) <= prob
    a = np.where(first, p["a1"], p["a2"])
    b = np.where(first, p["b1"], p["b2"])
    return np.floor(np.exp(_truncated_gamma(rng, a, b, limit, sizes.size)))


def _bucket_weights(p, buckets, day_start):
    from scipy.stats import gamma

    i = np.arange(day_start, buckets + day_start)
    w = np.empty(buckets)
    w[(i - 1) % buckets] = (gamma.cdf(i + 0.5, p["anum"], scale=p["bnum"])
                            - gamma.cdf(i - 0.5, p["anum"], scale=p["bnum"]))
    return w / w.mean()


def _arrivals(rng, n, p, limit, buckets, day_start):
    """Arrival times of one job class: rush-hour inter-arrivals exp(gamma) stretched by the daily
    cycle. Vectorised form of the reference generator's point-paying loop: the cumulative
    "points" P reach time t where the integral of the bucket weights equals P."""
    w = _bucket_weights(p, buckets, day_start)
    gam = _truncated_gamma(rng, p["aarr"] * p["arar"], p["barr"], limit, n)
    points = np.cumsum(np.exp(gam) / _SECONDS_IN_BUCKET)
    day, rem = np.divmod(points, float(buckets))
    cum = np.concatenate([[0.0], np.cumsum(w)])
    b = np.clip(np.searchsorted(cum, rem, side="right") - 1, 0, buckets - 1)
    frac = (rem - cum[b]) / w[b]
    return (day * buckets + b + frac) * _SECONDS_IN_BUCKET


def requested_times(rng, run_time, *, f: float | None = None, round_to: float | None = None):
    """User estimates by the f-model: ``req = r * U(1, f + 1)``, rounded up to ``round_to`` s."""
    f = _model.figure("runtime_estimates", "f") if f is None else f
    round_to = _model.figure("runtime_estimates", "round_to") if round_to is None else round_to
    run_time = np.asarray(run_time, dtype=float)
    req = run_time * (1.0 + f * rng.random(run_time.size))
    if round_to > 0:
        req = np.maximum(np.ceil(req / round_to) * round_to, round_to)
    return np.maximum(req, run_time)


def lublin_feitelson(n_jobs: int, *, max_nodes: int = 128, seed: int = 0, f: float | None = None,
                     interactive: bool = True) -> pd.DataFrame:
    """HPC jobs from the Lublin-Feitelson (2003) model.

    Parameters
    ----------
    n_jobs : int
        Number of jobs.
    max_nodes : int
        Largest job (the machine size the model is fitted to, 128 in the paper). Sizes are
        shifted in log2 so that ``uhi = log2(max_nodes)`` (the paper's advice for other machines).
    seed : int
        Seed of the generator (same seed, same trace).
    f : float, optional
        Over-estimate factor of the f-model for requested times (default from the parameter file).
    interactive : bool
        Mix interactive and batch jobs as the model does (True) or batch jobs only.

    Returns
    -------
    pandas.DataFrame
        A job table of kind ``hpc`` (see :mod:`hpclab.platform.jobs`).

    Notes
    -----
    Size: serial with probability ``serial_prob``; otherwise ``log2(size)`` ~ U(ulow, umed) with
    probability ``uprob`` else U(umed, uhi), rounded to a whole power with probability
    ``pow2_prob``. Run time: ``ln r ~ p Gamma(a1, b1) + (1 - p) Gamma(a2, b2)``, ``p = pa*size + pb``.
    Arrivals: ``ln(inter-arrival) ~ Gamma(aarr*arar, barr)`` in rush hours, spread over the day by
    weights ``G(i + 0.5) - G(i - 0.5)`` of ``G = Gamma(anum, bnum)`` cdf per half-hour bucket.
    Source: Lublin & Feitelson, JPDC 63(11) 2003, with the parameters of their generator.
    """
    n_jobs = check_positive("n_jobs", n_jobs, integer=True)
    max_nodes = check_positive("max_nodes", max_nodes, integer=True)
    m = _model.model()["lublin_feitelson"]
    limit_run = _model.figure("lublin_feitelson", "too_much_time")
    limit_arr = _model.figure("lublin_feitelson", "too_much_arrive_time")
    buckets = int(_model.figure("lublin_feitelson", "buckets_per_day"))
    day_start = int(_model.figure("lublin_feitelson", "cyclic_day_start"))
    shift = np.log2(max_nodes) - _model.figure("lublin_feitelson", "reference_uhi")
    rng = np.random.default_rng(seed)
    classes = ("batch", "interactive") if interactive else ("batch",)
    parts = []
    for c in classes:
        p = {k: float(v) for k, v in m[c].items()}
        t = _arrivals(rng, n_jobs, p, limit_arr, buckets, day_start)
        sizes = np.minimum(_sizes(rng, n_jobs, p, shift), max_nodes)
        run = _runtimes(rng, sizes, p, limit_run)
        parts.append(pd.DataFrame({"submit": t, "pods": sizes, "run_time": run, "cls": c}))
    df = pd.concat(parts).sort_values("submit", kind="stable").head(n_jobs).reset_index(drop=True)
    df["submit"] = np.floor(df["submit"].to_numpy())
    df["req_time"] = requested_times(rng, df["run_time"].to_numpy(), f=f)
    df["job_id"] = np.arange(1, len(df) + 1)
    df["kind"] = "hpc"
    df["slots"] = 0
    df["priority"] = 0
    out = check_jobs(df.drop(columns="cls"))
    out.attrs["model"] = "Lublin-Feitelson 2003"
    return out


def _choice(rng, spec, n):
    values = np.asarray(spec["values"])
    w = np.asarray(spec["weights"], dtype=float)
    return values[rng.choice(values.size, size=n, p=w / w.sum())]


def _lognormal(rng, spec, n):
    med = spec["median"]
    unit = {"s": 1.0, "min": 60.0, "h": 3600.0}[med["unit"]]
    return np.maximum(np.round(rng.lognormal(np.log(med["value"] * unit), float(spec["sigma"]), n)), 1.0)


def gpu_jobs(n_jobs: int, *, seed: int = 0, mean_interarrival: float = 300.0, gpus_per_node: int = 8,
             kind_share: dict | None = None, f: float | None = None) -> pd.DataFrame:
    """AI jobs: training gangs, inference pods and data pods (a simple, documented generator).

    Kinds are drawn with ``kind_share``; training jobs are gangs of ``pods`` pods (one pod per
    node, ``gpus_per_node`` GPUs each, when more than one pod; a single pod asks 1-8 GPUs);
    inference jobs are independent pods of 1-2 GPUs; data jobs independent CPU pods of 4-16
    cores. Run times are lognormal (median and sigma per kind), arrivals Poisson with
    ``mean_interarrival`` seconds. All shares and shapes are in ``data/traces/platform_model.yaml``
    (illustrative, shaped after published GPU-cluster trace studies).
    """
    n_jobs = check_positive("n_jobs", n_jobs, integer=True)
    check_positive("mean_interarrival", mean_interarrival)
    m = _model.model()["gpu_jobs"]
    share = dict(m["kind_share"] if kind_share is None else kind_share)
    kinds = list(share)
    for k in kinds:
        if k not in ("train", "infer", "data"):
            raise HpclabError(f"kind_share keys must be train, infer, data; got {k!r}")
    rng = np.random.default_rng(seed)
    w = np.array([share[k] for k in kinds], dtype=float)
    kind = np.asarray(kinds)[rng.choice(len(kinds), size=n_jobs, p=w / w.sum())]
    pods = np.ones(n_jobs, dtype=np.int64)
    slots = np.ones(n_jobs, dtype=np.int64)
    run = np.ones(n_jobs)
    for k, pk, sk, rk in (("train", "train_pods", None, "train_runtime"),
                          ("infer", "infer_pods", "infer_gpus", "infer_runtime"),
                          ("data", "data_pods", "data_cores", "data_runtime")):
        sel = kind == k
        n = int(sel.sum())
        if not n:
            continue
        pods[sel] = _choice(rng, m[pk], n)
        if k == "train":
            single = _choice(rng, m["train_single_pod_gpus"], n)
            slots[sel] = np.where(pods[sel] > 1, gpus_per_node, np.minimum(single, gpus_per_node))
        else:
            slots[sel] = _choice(rng, m[sk], n)
            if k == "infer":
                slots[sel] = np.minimum(slots[sel], gpus_per_node)
        run[sel] = _lognormal(rng, m[rk], n)
    submit = np.floor(np.cumsum(rng.exponential(mean_interarrival, n_jobs)))
    df = pd.DataFrame({"job_id": np.arange(1, n_jobs + 1), "kind": kind, "submit": submit, "pods": pods,
                       "slots": slots, "run_time": run,
                       "req_time": requested_times(rng, run, f=f), "priority": 0})
    out = check_jobs(df)
    out.attrs["model"] = "hpclab GPU job generator (illustrative)"
    return out


def offered_load(jobs: pd.DataFrame, *, slots_per_node: dict | int = 1, nodes: float = 1.0) -> float:
    """Offered load: sum of node-seconds asked / (nodes * span of submit times)."""
    df = check_jobs(jobs)
    if not len(df):
        return 0.0
    span = max(float(df["submit"].max() - df["submit"].min()), 1.0)
    work = _node_seconds(df, slots_per_node).sum()
    return float(work / (nodes * span))


def _node_seconds(df, slots_per_node):
    if isinstance(slots_per_node, dict):
        g = df["kind"].map(lambda k: slots_per_node.get(k, 1)).to_numpy(dtype=float)
    else:
        g = float(slots_per_node)
    slots = df["slots"].to_numpy(dtype=float)
    frac = np.where(slots == 0, 1.0, slots / g)
    return df["pods"].to_numpy() * frac * df["run_time"].to_numpy()


def mixed_workload(n_jobs: int, *, ai_share: float = 0.3, cpu_nodes: int = 128, gpu_nodes: int = 16,
                   load: float = 0.7, seed: int = 0, cores_per_node: int = 64,
                   gpus_per_node: int = 8, max_hpc_nodes: int | None = None) -> pd.DataFrame:
    """A mixed HPC + AI workload whose arrivals are scaled to a target offered load.

    HPC jobs come from :func:`lublin_feitelson` (sizes up to ``max_hpc_nodes``, default
    ``cpu_nodes // 2``), AI jobs from :func:`gpu_jobs` (training gangs capped at half the GPU
    nodes). The submit times of each part are scaled
    so that HPC jobs offer ``load`` to ``cpu_nodes`` nodes and AI jobs offer ``load`` to
    ``gpu_nodes`` GPU nodes (data pods count on the CPU side) -- the Lublin-Feitelson daily cycle
    is kept, stretched in time. Returns one job table sorted by submit time.
    """
    n_jobs = check_positive("n_jobs", n_jobs, integer=True)
    if not 0.0 <= ai_share <= 1.0:
        raise HpclabError(f"ai_share must be in [0, 1], got {ai_share!r}")
    check_positive("load", load)
    cpu_nodes = check_positive("cpu_nodes", cpu_nodes, integer=True)
    gpu_nodes = check_positive("gpu_nodes", gpu_nodes, integer=True)
    n_ai = int(round(n_jobs * ai_share))
    n_hpc = n_jobs - n_ai
    parts = []
    if n_hpc:
        hpc = lublin_feitelson(n_hpc, max_nodes=max_hpc_nodes or max(1, cpu_nodes // 2), seed=seed)
        hpc["pods"] = np.minimum(hpc["pods"], cpu_nodes)
        work = float((hpc["pods"] * hpc["run_time"]).sum())
        span = work / (load * cpu_nodes)
        t = hpc["submit"].to_numpy()
        t = (t - t.min()) / max(t.max() - t.min(), 1.0) * span
        hpc["submit"] = np.floor(t)
        parts.append(hpc)
    if n_ai:
        ai = gpu_jobs(n_ai, seed=seed + 1, gpus_per_node=gpus_per_node)
        # a training gang takes at most half the GPU nodes (larger gangs would hold the cluster)
        ai["pods"] = np.where(ai["kind"] == "train", np.minimum(ai["pods"], max(1, gpu_nodes // 2)), ai["pods"])
        gpu = ai["kind"] != "data"
        work = float((_node_seconds(ai[gpu], gpus_per_node)).sum())
        span = work / (load * gpu_nodes)
        t = ai["submit"].to_numpy()
        t = (t - t.min()) / max(t.max() - t.min(), 1.0) * span
        ai["submit"] = np.floor(t)
        parts.append(ai)
    df = pd.concat(parts, ignore_index=True)
    df["job_id"] = np.arange(1, len(df) + 1)
    out = check_jobs(df)
    out.attrs["model"] = "Lublin-Feitelson 2003 (hpc) + hpclab GPU generator (ai)"
    return out
