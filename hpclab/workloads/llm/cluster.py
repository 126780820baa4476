"""A GPU training cluster from the catalog: node type, backend fabric, topology, storage, failures."""

from __future__ import annotations

from dataclasses import dataclass

from hpclab._validate import HpclabError

__all__ = ["Cluster", "cluster"]


@dataclass(frozen=True)
class Cluster:
    """GPU nodes joined by a backend fabric, with checkpoint storage and a failure model.

    Parameters
    ----------
    node : hpclab.catalog.InstanceType
        The GPU node (``gpus``, ``gpu_peak_flops``, ``gpu_memory``, ``gpu_memory_bandwidth``).
    fabric : hpclab.network.Fabric
        The backend (GPU-to-GPU, inter-node) network, one rail as the catalog states it, with
        ``links_per_host`` set from the node's NIC count.
    intra : hpclab.network.Fabric
        The fabric inside a node (NVLink).
    storage : hpclab.catalog.Storage
        Where checkpoints go (``throughput`` aggregate, ``client_throughput`` per node).
    reliability : hpclab.catalog.Reliability
        Interruptions per node per second and the restart time.
    topology : hpclab.network.Topology or None
        Fat-tree / rail-optimised network (hosts per segment, tiers, oversubscription) that the
        collective models use for hops and oversubscription (None: one non-blocking switch).
    """

    node: object
    fabric: object
    intra: object
    storage: object
    reliability: object
    topology: object = None

    def __post_init__(self):
        if not getattr(self.node, "gpus", 0) or not self.node.gpu_peak_flops:
            raise HpclabError(f"node must be a GPU instance type with gpus and gpu_peak_flops; "
                              f"{getattr(self.node, 'name', self.node)!r} has none")

    @property
    def gpus_per_node(self) -> int:
        return int(self.node.gpus)

    @property
    def peak_flops(self) -> float:
        """Dense BF16 FLOP/s of one GPU."""
        return float(self.node.gpu_peak_flops)

    @property
    def gpu_memory(self) -> float:
        return float(self.node.gpu_memory)

    @property
    def memory_bandwidth(self) -> float:
        """HBM bytes/s of one GPU (0 if the catalog does not say: element-wise time is then 0)."""
        return float(getattr(self.node, "gpu_memory_bandwidth", 0.0))

    @property
    def nic_share(self) -> float:
        """How many GPUs of a node share one backend link when all talk across nodes at once:
        ``max(1, gpus_per_node / links_per_host)`` (1 on a rail-optimised HPN host, 8 when eight
        GPUs share one eRDMA or TCP NIC)."""
        return max(1.0, self.gpus_per_node / float(self.fabric.links_per_host))

    @property
    def node_failure_rate(self) -> float:
        return float(self.reliability.node_failure_rate)

    @property
    def restart_time(self) -> float:
        return float(self.reliability.restart_time)

    @property
    def network_options(self) -> dict:
        """Options for :func:`hpclab.network.collective_time` on the backend fabric."""
        return {} if self.topology is None else {"topology": self.topology}

    def describe(self) -> str:
        topo = f", topology {self.topology.name}" if self.topology is not None else ""
        return (f"{self.node.name} ({self.gpus_per_node}x {self.node.gpu_model}), backend "
                f"{self.fabric.name}{topo}, intra {self.intra.name}, checkpoints on {self.storage.name}")


#: Default topology per backend fabric (presets of ``data/reference/topologies.yaml``).
DEFAULT_TOPOLOGY = {"rdma-hpn7": "hpn7", "ib-ndr400": "nonblocking", "ib-hdr200": "nonblocking",
                    "erdma": "vpc-placement-group", "tcp-vpc": "vpc-placement-group"}


def cluster(node: str = "lingjun.8xh800", fabric: str = "rdma-hpn7", *, intra: str | None = None,
            storage: str = "cpfs", reliability: str = "h100-llama3", topology="auto",
            catalog=None) -> Cluster:
    """Build a :class:`Cluster` from catalog names.

    ``intra`` defaults to the node's NVLink fabric (``nvlink`` or ``nvlink3``, whichever the node
    lists), with the node's own NVLink bandwidth. ``fabric`` need not be one the node lists:
    planning "this node on eRDMA" is allowed. The backend's links per host are the node's
    ``nics`` (instance type), capped by the fabric's ``links_per_host`` (1 for VPC fabrics). ``topology="auto"`` takes
    ``DEFAULT_TOPOLOGY[fabric]`` (HPN 7.0 segments for ``rdma-hpn7``, a placement group on a
    3:1 Clos for ``erdma``/``tcp-vpc``, a non-blocking fat tree for InfiniBand); None for none.
    """
    from hpclab.catalog import default
    from hpclab.network import fabric as _fabric

    cat = catalog or default()
    inst = cat.instance(node)
    if intra is None:
        intra = next((f for f in inst.fabrics if f.startswith("nvlink")), None)
        if intra is None:
            intra = "nvlink"
    intra_fab = _fabric(intra, cat)
    if inst.nvlink_bandwidth > 0:  # the node's own NVLink figure (H800: 200 GB/s, not H100's 450)
        nominal = cat.fabric(intra).bandwidth
        intra_fab = intra_fab.with_(beta=intra_fab.beta * nominal / inst.nvlink_bandwidth)
    if isinstance(topology, str) and topology == "auto":
        topology = DEFAULT_TOPOLOGY.get(fabric)
    if topology is not None:
        from hpclab.network import topology as _topology

        topology = _topology(topology)
    backend = _fabric(fabric, cat)
    # the host owns its link count: a fabric describes one link and may drive up to
    # links_per_host of the host's NICs (1 for the VPC fabrics)
    links = max(1, min(int(backend.links_per_host), int(getattr(inst, "nics", 1))))
    backend = backend.with_(links_per_host=links)
    return Cluster(node=inst, fabric=backend, intra=intra_fab,
                   storage=cat.storage(storage), reliability=cat.reliability(reliability),
                   topology=topology)
