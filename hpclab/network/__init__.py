"""The network layer: fabrics, topology, collective cost models, calibration."""

from hpclab.network.fabrics import Fabric, fabric, p2p_time

__all__ = ["Fabric", "fabric", "p2p_time"]
