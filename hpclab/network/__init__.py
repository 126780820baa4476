"""The network layer: fabrics, topology, collective cost models, calibration."""

from hpclab.network.collectives import (ALGORITHMS, NCCL_ALGORITHMS, NCCL_PROTOCOLS, OPS, algbw,
                                        algorithm_times, best_algorithm, busbw, busbw_factor,
                                        collective_time, nccl_time, sweep)
from hpclab.network.fabrics import Fabric, fabric, p2p_time
from hpclab.network.placement import cross_segment_slowdown
from hpclab.network.topology import Topology, topology

__all__ = ["Fabric", "fabric", "p2p_time", "collective_time", "best_algorithm", "algorithm_times",
           "busbw", "algbw", "busbw_factor", "sweep", "OPS", "ALGORITHMS", "Topology", "topology",
           "nccl_time", "NCCL_ALGORITHMS", "NCCL_PROTOCOLS", "cross_segment_slowdown"]
