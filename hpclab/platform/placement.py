"""Network segments and what crossing them costs a gang job.

Hosts are grouped into *segments*: the hosts under one tier-1 switch group, joined to each other
with full bandwidth in ``hops_within`` switch hops. Between segments, traffic crosses
``hops_across`` hops and an aggregation tier oversubscribed ``oversubscription``:1, so a message
of ``n`` bytes costs (Hockney, with the fabric's per-hop latency; :func:`hpclab.network.p2p_time`)::

    t_within = alpha + hops_within * per_hop_latency + n * beta
    t_across = alpha + hops_across * per_hop_latency + n * beta * oversubscription

A bulk-synchronous gang job runs at the pace of its slowest exchange, so when it spans more than
one segment all of its communication share ``s`` is slowed::

    slowdown = (1 - s) + s * t_across / t_within          (1 inside one segment)

Segment sizes: 1024 GPUs per segment (Alibaba HPN, SIGCOMM 2024) and, for CPU hosts, one
top-of-rack pair (32 hosts, illustrative); all figures in ``data/traces/platform_model.yaml``.
"""

from __future__ import annotations

import numpy as np

from hpclab._validate import HpclabError, check_finite_array
from hpclab.platform import _model

__all__ = ["cross_segment_slowdown", "segment_nodes", "node_fabric"]


def node_fabric(itype, catalog=None):
    """The inter-node :class:`hpclab.network.Fabric` an instance type's gang jobs talk over: the
    first inter-node fabric in its catalog ``fabrics`` list (e.g. eRDMA, HPN 7.0 RDMA)."""
    from hpclab import catalog as _cat
    from hpclab.network import Fabric

    cat = catalog or _cat.default()
    rec = cat.instance(itype) if isinstance(itype, str) else itype
    for name in rec.fabrics:
        if name in cat.fabrics and cat.fabric(name).scope == "inter-node":
            return Fabric.from_spec(cat.fabric(name))
    raise HpclabError(f"instance type {rec.name!r} lists no inter-node fabric the catalog knows "
                      f"(fabrics: {', '.join(rec.fabrics)})")


def segment_nodes(itype, catalog=None) -> int:
    """Hosts per segment for an instance type: 1024 GPUs / GPUs per host for GPU hosts (HPN),
    else the CPU hosts per segment of the parameter file."""
    from hpclab import catalog as _cat

    cat = catalog or _cat.default()
    rec = cat.instance(itype) if isinstance(itype, str) else itype
    if rec.gpus > 0:
        return max(1, int(_model.figure("segments", "gpus_per_segment")) // rec.gpus)
    return int(_model.figure("segments", "cpu_hosts_per_segment"))


def cross_segment_slowdown(fabric, *, share, nbytes, hops_within=None, hops_across=None,
                           oversubscription=None, gpu: bool = False):
    """Run-time factor of a gang job placed across segments (see the module docstring).

    Parameters
    ----------
    fabric : Fabric or str
        The inter-node fabric (a catalog name or :class:`hpclab.network.Fabric`).
    share : float or array
        Share of the run time spent communicating inside one segment (0..1).
    nbytes : float or array
        Typical message size of that communication (bytes).
    hops_within, hops_across, oversubscription : float, optional
        Default: the parameter file (``oversubscription_gpu`` if ``gpu`` else ``_cpu``).

    Returns
    -------
    float or numpy.ndarray
        ``(1 - share) + share * t_across / t_within`` (>= 1), broadcast over the inputs.
    """
    from hpclab.network import fabric as _fabric, p2p_time

    f = _fabric(fabric)
    s = check_finite_array("share", share, minimum=0, strict=False)
    if np.any(s > 1):
        raise HpclabError(f"share must be in [0, 1], got {s.max():g}")
    n = check_finite_array("nbytes", nbytes, minimum=0)
    hw = _model.figure("segments", "hops_within") if hops_within is None else hops_within
    ha = _model.figure("segments", "hops_across") if hops_across is None else hops_across
    ov = oversubscription if oversubscription is not None else _model.figure(
        "segments", "oversubscription_gpu" if gpu else "oversubscription_cpu")
    if ov < 1:
        raise HpclabError(f"oversubscription must be >= 1, got {ov!r}")
    t_in = np.asarray(p2p_time(n, f, hops=hw))
    t_x = np.asarray(p2p_time(n, f.with_(beta=f.beta * ov), hops=ha))
    out = (1.0 - s) + s * t_x / t_in
    return out if out.ndim else float(out)
