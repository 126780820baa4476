"""Network segments and what crossing them costs a gang job.

Below the queues: any queue on the virtual clock (the platform's Slurm-like and Kubernetes-like
queues) gets its segment sizes and cross-segment slowdowns here, and the choice of nodes from
:mod:`hpclab.elastic.placement`; nothing here needs the platform.

Hosts are grouped into *segments*: the hosts under one leaf switch (for a rail-optimised GPU
network, one segment of rail switches), ``hosts_per_leaf`` of a
:class:`hpclab.network.Topology`; ``leaves_per_pod`` segments form a pod. The presets come from
``data/reference/topologies.yaml``: CPU hosts on ``vpc-placement-group`` (32 hosts per leaf, 3:1
leaf uplinks), GPU hosts on ``hpn7`` (Alibaba HPN 7.0: 128 hosts = 1,024 GPUs per segment, 15
segments per pod non-blocking, 15:1 between pods).

A gang placed inside one segment talks across one switch; one spread over segments of a pod
crosses ``extra_hops`` = 2 more hops and the leaf tier's oversubscription; one spread over pods 4
more hops and the larger of the two ratios (:meth:`Topology.extra_hops`,
:meth:`Topology.oversubscription_at`). A message of ``n`` bytes then costs (Hockney, with the
fabric's per-hop latency; :func:`hpclab.network.p2p_time`)::

    t_tier = alpha + extra_hops(tier) * per_hop_latency + n * beta * oversubscription(tier)

A bulk-synchronous gang job runs at the pace of its slowest exchange, so once it spans segments
all of its communication share ``s`` is slowed::

    slowdown(tier) = (1 - s) + s * t_tier / t_0          (1 inside one segment)

The communication share and message size of a job kind are the caller's (the platform's are in
``data/traces/platform_model.yaml``, illustrative; :func:`hpclab.platform.placement.slowdowns`).
"""

from __future__ import annotations

import numpy as np

from hpclab._validate import HpclabError, check_choice, check_finite_array

__all__ = ["cross_segment_slowdown", "tier_slowdowns", "segment_nodes", "node_fabric", "node_topology",
           "TIERS"]

#: where a gang's hosts sit: one segment, several segments of one pod, several pods
TIERS = ("segment", "pod", "pods")


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


def node_topology(itype, topology=None, catalog=None):
    """The :class:`hpclab.network.Topology` of an instance type's hosts: ``topology`` if given
    (a preset name or a Topology), else ``hpn7`` for GPU hosts and ``vpc-placement-group`` for
    CPU hosts."""
    from hpclab import catalog as _cat
    from hpclab.network import topology as _topology

    if topology is not None:
        return _topology(topology)
    cat = catalog or _cat.default()
    rec = cat.instance(itype) if isinstance(itype, str) else itype
    return _topology("hpn7" if rec.gpus > 0 else "vpc-placement-group")


def segment_nodes(itype, topology=None, catalog=None) -> int:
    """Hosts per segment: the topology's ``hosts_per_leaf``."""
    return int(node_topology(itype, topology, catalog).hosts_per_leaf)


def cross_segment_slowdown(fabric, *, share, nbytes, tier="pod", topology="vpc-placement-group"):
    """Run-time factor of a gang job whose hosts span ``tier`` (see the module docstring).

    Parameters
    ----------
    fabric : Fabric or str
        The inter-node fabric (a catalog name or :class:`hpclab.network.Fabric`).
    share : float or array
        Share of the run time spent communicating inside one segment (0..1).
    nbytes : float or array
        Typical message size of that communication (bytes).
    tier : {"segment", "pod", "pods"}
        One segment (factor 1), segments of one pod, or several pods.
    topology : Topology or str
        A :class:`hpclab.network.Topology` or preset name.

    Returns
    -------
    float or numpy.ndarray
        ``(1 - share) + share * t_tier / t_segment`` (>= 1), broadcast over the inputs.

    Examples
    --------
    >>> round(cross_segment_slowdown("erdma", share=0.3, nbytes=256 * 1024), 3)
    1.293
    """
    from hpclab.network import fabric as _fabric, p2p_time, topology as _topology

    check_choice("tier", tier, TIERS)
    f = _fabric(fabric)
    topo = _topology(topology)
    s = check_finite_array("share", share, minimum=0, strict=False)
    if np.any(s > 1):
        raise HpclabError(f"share must be in [0, 1], got {s.max():g}")
    n = check_finite_array("nbytes", nbytes, minimum=0)
    # a host count that puts the job in that tier of a packed topology
    hosts = {"segment": 1, "pod": topo.hosts_per_leaf + 1, "pods": topo.hosts_per_pod + 1}[tier]
    if topo.kind == "single-switch":
        hops, over = 0.0, 1.0
    else:
        packed = topo if topo.placement == "packed" else _replace_placement(topo)
        hops = float(packed.extra_hops(hosts))
        over = float(packed.oversubscription_at(hosts))
    t0 = np.asarray(p2p_time(n, f))
    t1 = np.asarray(p2p_time(n, f.with_(beta=f.beta * over), hops=hops))
    out = (1.0 - s) + s * t1 / t0
    return out if out.ndim else float(out)


def _replace_placement(topo):
    from dataclasses import replace

    return replace(topo, placement="packed")


def tier_slowdowns(itype, comm: dict, topology=None, catalog=None) -> dict:
    """``{kind: (1, factor across segments of a pod, factor across pods)}`` on hosts of ``itype``
    for each job kind of ``comm`` (``{kind: (communication share, message bytes)}``)."""
    fab = node_fabric(itype, catalog)
    topo = node_topology(itype, topology, catalog)
    return {kind: tuple(cross_segment_slowdown(fab, share=share, nbytes=nbytes, tier=tier, topology=topo)
                        for tier in TIERS)
            for kind, (share, nbytes) in comm.items()}
