"""The platform's use of placement: the slowdown of its gang kinds across segments.

The model (segments, hops, oversubscription and what crossing them costs) is the network
layer's, :mod:`hpclab.network.placement`; which nodes a job gets is
:mod:`hpclab.elastic.placement`. Here only the platform's own figures: the communication share
and message size of HPC and training gangs (``data/traces/platform_model.yaml``, illustrative).
"""

from __future__ import annotations

from hpclab.network.placement import (TIERS, cross_segment_slowdown, node_fabric, node_topology,
                                      segment_nodes, tier_slowdowns)
from hpclab.platform import _model

__all__ = ["cross_segment_slowdown", "segment_nodes", "node_fabric", "node_topology", "TIERS", "slowdowns"]


def slowdowns(itype, topology=None, catalog=None) -> dict:
    """``{kind: (1, factor across segments of a pod, factor across pods)}`` for the gang kinds
    (hpc, train) on hosts of ``itype``."""
    comm = _model.model()["communication"]
    return tier_slowdowns(itype, {kind: (float(comm[kind]["share"]),
                                         _model.figure("communication", kind, "nbytes"))
                                  for kind in ("hpc", "train")}, topology, catalog)
