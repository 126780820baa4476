"""The catalog's record types and the schema every YAML entry is validated against."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from hpclab._validate import MAX_CORES, MAX_NBYTES, MAX_SECONDS

# A field spec: (dimension, required, constraint) where constraint is ">0", ">=0", "0..1" (0 < x <= 1)
# or None.
# Non-numeric fields: dimension "str", "bool", "int", "list".


@dataclass(frozen=True)
class Figure:
    """One catalog figure: the value in SI base units, the unit it was written in and its source."""

    value: float
    unit: str
    source: str
    written: float  # the value as written, in ``unit``


@dataclass(frozen=True)
class _Record:
    name: str
    description: str
    figures: Mapping[str, Figure] = field(repr=False, compare=False)

    def source(self, field_name: str) -> str:
        """Where the figure ``field_name`` comes from."""
        return self.figures[field_name].source

    def unit(self, field_name: str) -> str:
        """The unit ``field_name`` was written in (the attribute itself is in SI base units)."""
        return self.figures[field_name].unit


@dataclass(frozen=True)
class Generation(_Record):
    """A CPU generation: its per-core speed relative to the reference generation."""

    vendor: str = ""
    speed_factor: float = 1.0


@dataclass(frozen=True)
class InstanceType(_Record):
    """An instance type. Times in s, memory in bytes, bandwidth in B/s, prices in USD/s."""

    family: str = ""
    generation: str = ""
    vcpus: int = 0
    memory: float = 0.0
    gpus: int = 0
    gpu_model: str = ""
    gpu_peak_flops: float = 0.0
    gpu_memory: float = 0.0
    gpu_memory_bandwidth: float = 0.0
    nvlink_bandwidth: float = 0.0
    network_bandwidth: float = 0.0
    rdma_bandwidth: float = 0.0
    erdma: bool = False
    fabrics: tuple[str, ...] = ()
    boot_time: float = 0.0
    boot_time_sd: float = 0.0
    price_on_demand: float = 0.0
    price_spot: float = 0.0
    min_charge: float = 0.0
    spot_notice: float = 0.0

    @property
    def cores(self) -> int:
        """Physical cores (vCPUs / 2, hyper-threading)."""
        return max(1, self.vcpus // 2)

    @property
    def price_on_demand_per_hour(self) -> float:
        return self.price_on_demand * 3600.0

    @property
    def price_spot_per_hour(self) -> float:
        return self.price_spot * 3600.0


@dataclass(frozen=True)
class FabricSpec(_Record):
    """A fabric as the catalog states it (see :class:`hpclab.network.Fabric` for the model)."""

    scope: str = "inter-node"
    alpha: float = 0.0
    bandwidth: float = 0.0
    gamma: float = 0.0
    per_hop_latency: float = 0.0
    message_rate: float = 0.0
    mtu: float = 0.0
    links_per_host: int = 1
    efficiency: float = 1.0


@dataclass(frozen=True)
class Storage(_Record):
    """A storage service: aggregate throughput (B/s), IOPS, latency (s), per-client throughput."""

    kind: str = ""
    throughput: float = 0.0
    client_throughput: float = 0.0
    iops: float = 0.0
    latency: float = 0.0


@dataclass(frozen=True)
class Zone(_Record):
    """An availability zone: its spot reclaim rate and its capacity (cores) per instance type."""

    region: str = ""
    spot_reclaim_rate: float = 0.0
    capacity: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Reliability(_Record):
    """A failure model: interruption rate per node (1/s), restart time (s)."""

    node_failure_rate: float = 0.0
    restart_time: float = 0.0


@dataclass(frozen=True)
class Provisioning(_Record):
    """How machines are obtained: a lead time before the first one (s) and, for a cloud, how many
    instances per second the launch API brings up (0 = no limit)."""

    lead_time: float = 0.0
    launch_rate: float = 0.0


# Bounds: the largest value a figure may take, in SI base units, per dimension (a real system's
# figure with headroom; beyond is a typo and would overflow the models). docs/bounds.md lists them.
MAX_BY_DIMENSION = {
    "time": MAX_SECONDS,     # 10 years
    "bytes": MAX_NBYTES,     # 1 PiB
    "bandwidth": 1e15,       # 1 PB/s (HBM3e: 8 TB/s per GPU)
    "rate": 1e12,            # 10^12 messages or operations per second
    "frequency": 1.0,        # one event per second (spot reclaims, node failures)
    "price": 100.0,          # 100 USD/s = 360,000 USD/h per instance
    "flops": 1e18,           # 1 EFLOP/s per GPU (H800: 2e15 FP8)
    "ratio": 1e3,            # speed factors, efficiencies
}
MAX_LABEL = {"time": "10 years", "bytes": "1 PiB", "bandwidth": "1 PB/s", "rate": "", "frequency": "",
             "price": "360,000 USD/h", "flops": "1 EFLOP/s", "ratio": ""}
#: whole-number fields: largest value
MAX_INT = {"vcpus": 10**5, "gpus": 10**3, "links_per_host": 10**3}
#: cores of one instance type in one zone
MAX_CAPACITY = MAX_CORES

# kind -> (yaml section, record class, {field: (dimension, required, constraint)})
SCHEMA = {
    "generation": ("generations", Generation, {
        "vendor": ("str", False, None),
        "speed_factor": ("ratio", True, ">0"),
    }),
    "instance": ("instances", InstanceType, {
        "family": ("str", True, None),
        "generation": ("str", True, None),
        "vcpus": ("int", True, ">0"),
        "memory": ("bytes", True, ">0"),
        "gpus": ("int", False, ">=0"),
        "gpu_model": ("str", False, None),
        "gpu_peak_flops": ("flops", False, ">=0"),
        "gpu_memory": ("bytes", False, ">=0"),
        "gpu_memory_bandwidth": ("bandwidth", False, ">=0"),  # HBM bandwidth per GPU
        "nvlink_bandwidth": ("bandwidth", False, ">=0"),
        "network_bandwidth": ("bandwidth", True, ">0"),
        "rdma_bandwidth": ("bandwidth", False, ">=0"),
        "erdma": ("bool", True, None),
        "fabrics": ("list", True, None),
        "boot_time": ("time", True, ">0"),
        "boot_time_sd": ("time", False, ">=0"),
        "price_on_demand": ("price", True, ">0"),
        "price_spot": ("price", True, ">0"),
        "min_charge": ("time", False, ">=0"),
        "spot_notice": ("time", False, ">=0"),
    }),
    "fabric": ("fabrics", FabricSpec, {
        "scope": ("str", True, None),
        "alpha": ("time", True, ">0"),
        "bandwidth": ("bandwidth", True, ">0"),
        "gamma": ("time", False, ">=0"),  # seconds per byte reduced
        "per_hop_latency": ("time", False, ">=0"),
        "message_rate": ("rate", False, ">=0"),
        "mtu": ("bytes", False, ">=0"),
        "links_per_host": ("int", False, ">0"),
        "efficiency": ("ratio", False, "0..1"),
    }),
    "storage": ("storage", Storage, {
        "kind": ("str", True, None),
        "throughput": ("bandwidth", True, ">0"),
        "client_throughput": ("bandwidth", False, ">=0"),
        "iops": ("rate", True, ">0"),
        "latency": ("time", True, ">0"),
    }),
    "zone": ("zones", Zone, {
        "region": ("str", True, None),
        "spot_reclaim_rate": ("frequency", True, ">=0"),
        "capacity": ("capacity", True, None),
    }),
    "reliability": ("reliability", Reliability, {
        "node_failure_rate": ("frequency", True, ">=0"),
        "restart_time": ("time", True, ">=0"),
    }),
    "provisioning": ("provisioning", Provisioning, {
        "lead_time": ("time", True, ">=0"),
        "launch_rate": ("rate", False, ">=0"),
    }),
}

SCOPES = ("same-host", "intra-node", "inter-node")
