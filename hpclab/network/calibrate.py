"""Calibrate fabrics from measurements: nccl-tests and OSU text output, and a live ping-pong.

* :func:`parse_nccl_tests` and :func:`parse_osu` read the text the benchmarks print into an
  ``xarray.Dataset`` over ``nbytes`` (seconds and bytes/s, with ``units`` attributes).
* :func:`fit_alpha_beta` fits Hockney's ``t = alpha + n * beta`` by weighted linear least squares
  (relative residuals, so 8-byte and 64-MiB points count alike; non-negative by NNLS).
* :func:`fit_collective` fits ``alpha`` and ``beta`` of a fabric from collective timings (e.g.
  nccl-tests all_reduce_perf) through the collective's own cost model, which is linear in
  ``alpha`` and ``beta`` for ring, recursive doubling, Rabenseifner, binomial, pairwise and Bruck.
* :func:`pingpong` measures the time of messages from 8 B to 64 MiB between two real Dask workers
  on this machine, worker to worker through Dask's comm layer (TCP on 127.0.0.1, with Dask's
  serialisation), and :func:`live_fabric` fits a :class:`~hpclab.network.Fabric` to it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from hpclab._validate import HpclabError, check_choice, check_finite_array, check_positive
from hpclab.network.collectives import ALGORITHMS, OPS, collective_time
from hpclab.network.fabrics import Fabric

__all__ = ["parse_nccl_tests", "parse_osu", "fit_alpha_beta", "fit_collective", "pingpong",
           "live_fabric", "PINGPONG_SIZES"]

#: Ping-pong message sizes: 8 B to 64 MiB by factors of 8 and a last step of 2.
PINGPONG_SIZES = tuple(int(8 * 8**k) for k in range(8)) + (64 * 2**20,)

_NCCL_OPS = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reduce_scatter",
             "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall",
             "sendrecv": "sendrecv", "gather": "gather", "scatter": "scatter", "hypercube": "hypercube"}
_OSU_OPS = {"allreduce": "allreduce", "allgather": "allgather", "reduce scatter": "reduce_scatter",
            "reduce_scatter": "reduce_scatter", "broadcast": "broadcast", "reduce": "reduce",
            "all-to-all": "alltoall", "alltoall": "alltoall", "barrier": "barrier"}


_TAG = re.compile(r"^\[\d+,\d+\]<std(?:out|err)>:", flags=re.M)


def _text(text_or_path) -> tuple[str, str]:
    if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                          and os.path.exists(text_or_path)):
        path = Path(text_or_path)
        try:
            return path.read_text(), str(path)
        except OSError as exc:
            raise HpclabError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(text_or_path, str):
        raise HpclabError(f"expected benchmark text or a path, got {type(text_or_path).__name__}")
    return text_or_path, "<text>"


def _num(tok: str) -> float:
    try:
        return float(tok)
    except ValueError:
        return np.nan  # nccl-tests prints N/A for in-place columns some ops do not have


def parse_nccl_tests(text_or_path, op: str | None = None):
    """Parse the output of an nccl-tests binary (``all_reduce_perf`` ...) into a Dataset.

    The column header (``size count type redop root time algbw busbw #wrong time algbw busbw
    #wrong``; older versions without ``root`` and with ``error`` instead of ``#wrong``) is read
    from the text, so both layouts work. The first ``time/algbw/busbw`` group is out-of-place, the
    second in-place. Lines tagged by ``mpirun --tag-output`` (``[1,0]<stdout>:``) are accepted.

    Parameters
    ----------
    text_or_path : str or Path
        The printed output, or a file holding it.
    op : str, optional
        The collective (hpclab name); by default detected from the ``*_perf`` command, the
        ``# Collective test starting: all_reduce_perf`` line, or the file name.

    Returns
    -------
    xarray.Dataset
        Dim ``nbytes`` (the ``size`` column, B); variables ``time``, ``algbw``, ``busbw`` and
        ``time_inplace``, ``algbw_inplace``, ``busbw_inplace`` (s and B/s), ``count``; attrs
        ``op``, ``ranks`` (number of ``#  Rank`` lines, if printed), ``dtype``, ``source``.
    """
    import xarray as xr

    text, where = _text(text_or_path)
    # mpirun --tag-output prefixes every line with "[job,rank]<stdout>:"; drop it
    text = _TAG.sub("", text)
    lines = text.splitlines()
    header = None
    for line in lines:
        toks = line.lstrip("#").split()
        if line.startswith("#") and "size" in toks and "algbw" in toks and "busbw" in toks:
            header = toks
            break
    if header is None:
        raise HpclabError(f"{where}: not nccl-tests output (no '# size count type ... busbw' header)")
    if op is None:  # from the command, the 'Collective test starting' line, or the file name
        pattern = (r"(?<![a-z])(all_reduce|all_gather|reduce_scatter|broadcast|reduce|alltoall|"
                   r"sendrecv|gather|scatter|hypercube)_perf")
        m = re.search(pattern, text) or re.search(pattern, where)
        op = _NCCL_OPS[m.group(1)] if m else "unknown"
    ranks = len(re.findall(r"^#\s+Rank\s+\d+\s", text, flags=re.M)) or None
    rows = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        toks = s.split()
        if len(toks) != len(header) or not toks[0].isdigit():
            continue
        rows.append(toks)
    if not rows:
        raise HpclabError(f"{where}: nccl-tests header found but no result rows")
    col = {name: [i for i, h in enumerate(header) if h == name] for name in set(header)}

    def column(name, k=0):
        idx = col.get(name, [])
        if len(idx) <= k:
            return np.full(len(rows), np.nan)
        return np.array([_num(r[idx[k]]) for r in rows])

    nbytes = column("size")
    ds = xr.Dataset(
        {"time": ("nbytes", column("time") * 1e-6, {"units": "s", "long_name": "out-of-place time"}),
         "algbw": ("nbytes", column("algbw") * 1e9, {"units": "B/s"}),
         "busbw": ("nbytes", column("busbw") * 1e9, {"units": "B/s"}),
         "time_inplace": ("nbytes", column("time", 1) * 1e-6, {"units": "s"}),
         "algbw_inplace": ("nbytes", column("algbw", 1) * 1e9, {"units": "B/s"}),
         "busbw_inplace": ("nbytes", column("busbw", 1) * 1e9, {"units": "B/s"}),
         "count": ("nbytes", column("count"), {"units": "elements"})},
        coords={"nbytes": ("nbytes", nbytes, {"units": "B"})},
        attrs={"op": op, "ranks": ranks if ranks is not None else 0,
               "dtype": rows[0][header.index("type")] if "type" in header else "",
               "benchmark": "nccl-tests", "source": where})
    return ds


def parse_osu(text_or_path, ranks: int | None = None):
    """Parse OSU micro-benchmark output (osu_latency, osu_bw, osu_bibw, osu_allreduce, ...).

    Recognises the ``# OSU MPI <Name> Test vX.Y`` title and the ``# Size ...`` column header.
    Latency columns (``Latency (us)``, ``Avg/Min/Max Latency(us)``) become ``latency``,
    ``latency_min``, ``latency_max`` in seconds; ``Bandwidth (MB/s)`` (osu_bw, osu_bibw) or a bare
    ``MB/s`` (osu_mbw_mr) becomes ``bandwidth`` in B/s (OSU's MB is 1e6 B); ``Messages/s`` becomes
    ``message_rate`` (1/s). For a collective, ``nbytes`` is converted to the nccl-tests convention
    (OSU prints the per-rank message: allgather and alltoall become ``size * ranks``), which needs
    ``ranks``; the OSU size is kept as ``osu_size``.

    Returns
    -------
    xarray.Dataset
        Dim ``nbytes``; attrs ``benchmark`` (the title), ``op`` (hpclab op, ``p2p`` for
        point-to-point tests), ``kind`` (``latency`` or ``bandwidth``), ``ranks``.
    """
    import xarray as xr

    text, where = _text(text_or_path)
    text = _TAG.sub("", text)  # mpirun --tag-output
    title = re.search(r"^#\s*OSU (?:MPI(?:-CUDA)? )?(.+?) Test v?([\d.]+)", text, flags=re.M)
    if title is None:
        raise HpclabError(f"{where}: not OSU micro-benchmark output (no '# OSU MPI ... Test' title)")
    name = title.group(1).strip()
    header = None
    for line in text.splitlines():
        if re.match(r"^#\s*Size\b", line):
            header = line.lstrip("#").strip()
            break
    if header is None:
        raise HpclabError(f"{where}: OSU title found but no '# Size ...' header")
    cols = re.findall(r"Size|Avg Latency\s*\(us\)|Min Latency\s*\(us\)|Max Latency\s*\(us\)|"
                      r"Latency\s*\(us\)|Bandwidth\s*\(MB/s\)|Messages/s|Iterations|[\w/()]+", header)
    rows = []
    for line in text.splitlines():
        toks = line.split()
        if not toks or line.lstrip().startswith("#") or not toks[0].isdigit():
            continue
        rows.append([_num(x) for x in toks[:len(cols)]])
    if not rows:
        raise HpclabError(f"{where}: OSU header found but no result rows")
    arr = np.array([r + [np.nan] * (len(cols) - len(r)) for r in rows])
    size = arr[:, 0]
    lname = name.lower()
    op = "p2p"
    for key, val in _OSU_OPS.items():
        if lname.startswith(key):
            op = val
            break
    data = {}
    kind = "latency"
    for j, c in enumerate(cols):
        c0 = re.sub(r"\s+", " ", c)
        if c0.startswith("Avg Latency") or c0.startswith("Latency"):
            data["latency"] = ("nbytes", arr[:, j] * 1e-6, {"units": "s"})
        elif c0.startswith("Min Latency"):
            data["latency_min"] = ("nbytes", arr[:, j] * 1e-6, {"units": "s"})
        elif c0.startswith("Max Latency"):
            data["latency_max"] = ("nbytes", arr[:, j] * 1e-6, {"units": "s"})
        elif c0.startswith("Bandwidth") or c0 == "MB/s":
            data["bandwidth"] = ("nbytes", arr[:, j] * 1e6, {"units": "B/s"})
            kind = "bandwidth"
        elif c0 == "Messages/s":
            data["message_rate"] = ("nbytes", arr[:, j], {"units": "1/s"})
    if not data:
        raise HpclabError(f"{where}: OSU header {header!r} has no latency or bandwidth column")
    nbytes = size.astype(float)
    if op in ("allgather", "alltoall"):
        if ranks is None:
            raise HpclabError(f"{where}: ranks is required to convert OSU {name} sizes to nbytes "
                              "(nccl-tests convention: size x ranks)")
        nbytes = nbytes * check_positive("ranks", ranks, integer=True)
    data["osu_size"] = ("nbytes", size, {"units": "B", "long_name": "size as OSU prints it"})
    return xr.Dataset(data, coords={"nbytes": ("nbytes", nbytes, {"units": "B"})},
                      attrs={"benchmark": f"OSU {name} Test v{title.group(2)}", "op": op, "kind": kind,
                             "ranks": int(ranks) if ranks else 0, "source": where})


def _nnls_fit(design: np.ndarray, t: np.ndarray, what: str):
    from scipy.optimize import nnls

    w = 1.0 / t  # relative residuals
    coef, _ = nnls(design * w[:, None], t * w)
    pred = design @ coef
    rel = np.abs(pred / t - 1.0)
    if np.any(coef <= 0):
        bad = "alpha" if coef[0] <= 0 else "beta"
        raise HpclabError(f"cannot fit {what}: the least-squares {bad} is 0 (need times that grow "
                          "with size and a size range that spans latency- and bandwidth-bound points)")
    return coef, rel


def fit_alpha_beta(nbytes, seconds, name: str = "fitted") -> Fabric:
    """Fit Hockney's ``t = alpha + nbytes * beta`` to point-to-point times.

    Weighted least squares on relative residuals ``(alpha + n beta - t) / t`` with ``alpha,
    beta >= 0`` (scipy NNLS), so small and large messages weigh alike. Needs >= 2 sizes.

    Returns
    -------
    Fabric
        ``alpha`` (s) and ``beta`` (s/B) fitted, named ``name``.
    """
    n = check_finite_array("nbytes", nbytes, minimum=0).ravel()
    t = check_finite_array("seconds", seconds, minimum=0).ravel()
    if n.size != t.size:
        raise HpclabError(f"nbytes and seconds must have the same length, got {n.size} and {t.size}")
    if np.unique(n).size < 2:
        raise HpclabError("fit needs at least 2 distinct message sizes")
    (alpha, beta), _ = _nnls_fit(np.column_stack([np.ones_like(n), n]), t, "alpha and beta")
    return Fabric(alpha=float(alpha), beta=float(beta), name=name, scope="inter-node")


def fit_collective(ds, algorithm: str = "ring", ranks: int | None = None, op: str | None = None,
                   variable: str = "time", name: str = "fitted", **options) -> Fabric:
    """Fit ``alpha`` and ``beta`` of a fabric from collective timings through the cost model.

    For ``algorithm`` in ring, recursive_doubling, rabenseifner, binomial, pairwise, bruck,
    scatter_allgather, recursive_halving the model is linear: ``t = alpha * A(n, p) + beta *
    B(n, p)`` with ``A`` and ``B`` from :func:`collective_time` itself; the fit is NNLS on relative
    residuals. With ``ranks_per_node > 1`` (``**options`` as for :func:`collective_time`) the
    node-aware forms take ``max(intra, inter)`` per step and are only piecewise linear, so the NNLS
    result of the flat form is refined by nonlinear least squares (scipy ``least_squares`` on
    ``log alpha, log beta``) through the full model. ``ds`` is a Dataset from :func:`parse_nccl_tests` or :func:`parse_osu` (``op`` and
    ``ranks`` taken from its attributes unless given).
    """
    op = op or ds.attrs.get("op")
    check_choice("op", op, OPS)
    if algorithm not in ALGORITHMS[op] or algorithm in ("double_binary_tree", "hierarchical") or \
            (algorithm == "ring" and op in ("broadcast", "reduce")):
        linear = [a for a in ALGORITHMS[op] if a not in ("double_binary_tree", "hierarchical")
                  and not (a == "ring" and op in ("broadcast", "reduce"))]
        raise HpclabError(f"algorithm for fitting {op} must be one of {', '.join(linear)} "
                          f"(models linear in alpha and beta); got {algorithm!r}")
    p = ranks or ds.attrs.get("ranks")
    if not p:
        raise HpclabError("ranks is required (the Dataset does not say how many ranks ran)")
    p = check_positive("ranks", p, integer=True)
    if variable not in ds:
        raise HpclabError(f"variable must be one of {', '.join(ds.data_vars)}; got {variable!r}")
    n = np.asarray(ds["nbytes"].values, dtype=float)
    t = np.asarray(ds[variable].values, dtype=float)
    ok = np.isfinite(t) & (t > 0)
    n, t = n[ok], t[ok]
    if n.size < 2:
        raise HpclabError("fit needs at least 2 timed message sizes")
    # ranks_per_node > 1 brings in the intra fabric through max(intra, inter) terms, so the model
    # is no longer linear in (alpha, beta): fit the flat form linearly first, then refine below.
    flat_options = {k: v for k, v in options.items() if k == "topology"}
    unit_a = Fabric(alpha=1.0, beta=1e-300)
    unit_b = Fabric(alpha=1e-300, beta=1.0)
    A = np.asarray(collective_time(op, n, p, unit_a, algorithm=algorithm, **flat_options))
    Bc = np.asarray(collective_time(op, n, p, unit_b, algorithm=algorithm, **flat_options))
    (alpha, beta), _ = _nnls_fit(np.column_stack([A, Bc]), t, f"{op}/{algorithm}")
    if options.get("ranks_per_node", 1) != 1:
        from scipy.optimize import least_squares

        def residual(x):
            f = Fabric(alpha=float(np.exp(x[0])), beta=float(np.exp(x[1])))
            return np.asarray(collective_time(op, n, p, f, algorithm=algorithm, **options)) / t - 1.0

        sol = least_squares(residual, np.log([alpha, beta]), x_scale=1.0, diff_step=1e-3)
        alpha, beta = np.exp(sol.x)
    return Fabric(alpha=float(alpha), beta=float(beta), name=name, scope="inter-node")


# --------------------------------------------------------------------------------------------
# Live ping-pong between two Dask workers


def _echo(data=None):
    """Worker handler: send the payload straight back (one Dask comm message each way)."""
    from distributed.protocol import to_serialize

    return {"data": to_serialize(data)}


def _install_echo(dask_worker):
    dask_worker.handlers["hpclab_echo"] = _echo
    return True


async def _pingpong_from(peer, sizes, min_repeats, max_repeats, budget, dask_worker=None):
    """Run on worker A: time round trips of each size to ``peer`` through ``dask_worker.rpc``."""
    from distributed.protocol import to_serialize

    remote = dask_worker.rpc(peer)
    out = []
    for size in sizes:
        payload = bytes(int(size))
        await remote.hpclab_echo(data=to_serialize(payload))  # warm-up (connection, buffers)
        trips = []
        start = time.perf_counter()
        while len(trips) < max_repeats and (len(trips) < min_repeats
                                            or time.perf_counter() - start < budget):
            t0 = time.perf_counter()
            reply = await remote.hpclab_echo(data=to_serialize(payload))
            trips.append(time.perf_counter() - t0)
            if len(reply["data"]) != size:
                raise RuntimeError("echo returned a different payload size")
        out.append(trips)
    return out


def pingpong(sizes=PINGPONG_SIZES, client=None, min_repeats: int = 3, max_repeats: int = 200,
             budget: float = 0.15, progress: bool = False):
    """Measure one-way message time between two real Dask workers on this machine.

    Worker A sends a payload of each size to worker B through Dask's comm layer
    (``worker.rpc(B).hpclab_echo``: TCP on 127.0.0.1, Dask's message framing and
    serialisation); B's handler sends it back. One-way time = round trip / 2. Each size is
    repeated at least ``min_repeats`` times and until ``budget`` seconds are spent (at most
    ``max_repeats``); the median is reported. With default sizes (8 B .. 64 MiB) this takes a few
    seconds including starting the cluster.

    Parameters
    ----------
    sizes : sequence of int
        Payload sizes in bytes (> 0).
    client : distributed.Client, optional
        Use two workers of this client's cluster; by default a ``LocalCluster`` of two worker
        processes (1 thread each) on 127.0.0.1 is started and closed.
    progress : bool
        Show a tqdm bar over sizes.

    Returns
    -------
    xarray.Dataset
        Dim ``nbytes``; ``time`` (median one-way, s), ``time_min`` (s), ``bandwidth``
        (nbytes / time, B/s), ``repeats``; attrs ``workers``, ``method``.
    """
    import xarray as xr

    s = check_finite_array("sizes", sizes, minimum=0, integer=True).ravel().astype(int)
    check_positive("min_repeats", min_repeats, integer=True)
    check_positive("max_repeats", max_repeats, integer=True)
    check_positive("budget", budget)
    own = client is None
    cluster = None
    if own:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", worker_dashboard_address=None)
        client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"]) if _takes_n_workers(client) \
            else sorted(client.scheduler_info()["workers"])
        a, b = workers[:2]
        client.run(_install_echo, workers=[b])
        trips = []
        chunks = [[int(x)] for x in s]
        it = chunks
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(chunks, desc="ping-pong", unit="size")
        for chunk in it:
            res = client.run(_pingpong_from, b, chunk, int(min_repeats), int(max_repeats),
                             float(budget), workers=[a])
            trips.extend(res[a])
    finally:
        if own:
            client.close()
            cluster.close()
    one_way = [np.asarray(tr) / 2.0 for tr in trips]
    med = np.array([np.median(x) for x in one_way])
    return xr.Dataset(
        {"time": ("nbytes", med, {"units": "s", "long_name": "one-way time (median of round trip / 2)"}),
         "time_min": ("nbytes", np.array([x.min() for x in one_way]), {"units": "s"}),
         "bandwidth": ("nbytes", s / med, {"units": "B/s"}),
         "repeats": ("nbytes", np.array([x.size for x in one_way]), {"units": "1"})},
        coords={"nbytes": ("nbytes", s.astype(float), {"units": "B"})},
        attrs={"workers": f"{a} -> {b}", "method": "Dask worker rpc echo over TCP on 127.0.0.1",
               "benchmark": "hpclab ping-pong"})


def _takes_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def live_fabric(sizes=PINGPONG_SIZES, client=None, **kwargs):
    """Run :func:`pingpong` and fit a :class:`Fabric` (name ``"dask-live"``) to it.

    Returns ``(fabric, dataset)``; the dataset gains ``time_fit`` (the fitted model, s).
    """
    ds = pingpong(sizes, client=client, **kwargs)
    fab = fit_alpha_beta(ds["nbytes"].values, ds["time"].values, name="dask-live")
    ds["time_fit"] = ("nbytes", fab.alpha + ds["nbytes"].values * fab.beta, {"units": "s"})
    ds.attrs.update(alpha=fab.alpha, beta=fab.beta)
    return fab, ds
