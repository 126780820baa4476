"""The catalog's record types and the schema every YAML entry is validated against."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

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
    nics: int = 1
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


@dataclass(frozen=True)
class MarketModel(_Record):
    """How spot capacity of a (type, zone) market comes and goes, and how its price moves.

    ``model``: ``correlated`` (reclaims in waves) or ``independent`` (each instance on its own).
    A wave reclaims each spot instance of the market with probability ``wave_share``, within
    ``wave_spread`` seconds of the wave's start. The price is a mean-reverting path (memory
    ``price_memory`` s, standard deviation ``price_volatility`` as a share of on-demand) clipped to
    ``[price_floor, 1]`` x on-demand, constant over each ``price_period`` (s).
    """

    model: str = "correlated"
    wave_share: float = 1.0
    wave_spread: float = 0.0
    price_period: float = 3600.0
    price_floor: float = 0.1
    price_volatility: float = 0.0
    price_memory: float = 3600.0


@dataclass(frozen=True)
class SpotOption(_Record):
    """A way to buy spot: a protection period (s) without reclaims, at ``price_factor`` x the
    spot price."""

    protection: float = 0.0
    price_factor: float = 1.0


@dataclass(frozen=True)
class BillingRule(_Record):
    """A provider's meter: metering unit and bill period (s), minimum charge per instance
    lifecycle (in CNY, as published) and any minimum billed time (s)."""

    provider: str = ""
    metering_unit: float = 1.0
    bill_period: float = 3600.0
    min_charge_amount: float = 0.0
    min_charge_time: float = 0.0


@dataclass(frozen=True)
class UnitPrice(_Record):
    """Published per-resource prices in their currency (CNY): per vCPU-second, per GiB-second."""

    provider: str = ""
    date: str = ""
    vcpu_price: float = 0.0
    memory_price: float = 0.0


@dataclass(frozen=True)
class ExchangeRate(_Record):
    """One dated exchange rate (CNY per USD)."""

    date: str = ""
    rate: float = 0.0


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
        "nics": ("int", False, ">0"),  # backend NICs (links) per host; a fabric describes one
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
    "market": ("markets", MarketModel, {
        "model": ("str", True, None),
        "wave_share": ("ratio", True, "0..1"),
        "wave_spread": ("time", True, ">=0"),
        "price_period": ("time", True, ">0"),
        "price_floor": ("ratio", True, "0..1"),
        "price_volatility": ("ratio", True, ">=0"),
        "price_memory": ("time", True, ">0"),
    }),
    "spot_option": ("spot_options", SpotOption, {
        "protection": ("time", True, ">=0"),
        "price_factor": ("ratio", True, ">0"),
    }),
    "billing_rule": ("billing_rules", BillingRule, {
        "provider": ("str", True, None),
        "metering_unit": ("time", True, ">0"),
        "bill_period": ("time", True, ">0"),
        "min_charge_amount": ("cny", False, ">=0"),
        "min_charge_time": ("time", False, ">=0"),
    }),
    "unit_price": ("unit_prices", UnitPrice, {
        "provider": ("str", True, None),
        "date": ("str", True, None),
        "vcpu_price": ("cny_per_vcpu", True, ">0"),
        "memory_price": ("cny_per_gib", True, ">0"),
    }),
    "exchange_rate": ("exchange_rates", ExchangeRate, {
        "date": ("str", True, None),
        "rate": ("exchange", True, ">0"),
    }),
}

MARKET_MODELS = ("correlated", "independent")

SCOPES = ("same-host", "intra-node", "inter-node")
