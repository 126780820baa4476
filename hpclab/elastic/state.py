"""What a policy sees and what it says: the contract between policies and both clocks.

A policy is any object with ``decide(state: PoolState) -> Decision``. The real pool
(:mod:`hpclab.elastic.pool`) and the virtual-clock simulator (:mod:`hpclab.elastic.simulate`)
both build a :class:`PoolState` snapshot on their own clock and apply the :class:`Decision`;
neither policy nor decision knows which clock it runs on.

Times are in *pool seconds*: virtual seconds in the simulator; in the real pool, wall seconds
divided by its ``time_scale`` (so a 45 s boot with ``time_scale=0.01`` takes 0.45 s of wall time
and is still 45 pool seconds). Money is in USD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Mapping, Protocol

from hpclab._validate import HpclabError, check_nonnegative

__all__ = ["InstanceView", "PoolLimits", "PoolState", "Launch", "Decision", "Policy",
           "LIFECYCLE", "MARKETS"]

_MAKERS: dict = {}


def maker(cls):
    """A function building an instance of the frozen dataclass ``cls`` from all its field values
    in order (positional), without the per-field ``object.__setattr__`` of the generated
    ``__init__``: it writes the instance's ``__dict__`` directly, as generated code (one per
    class, made once, as ``dataclasses`` makes ``__init__``): an 11-field PoolState in 1.1 us,
    against 3.6 us through the frozen dataclass's ``__init__`` and 1.8-2.5 us through a
    ``__dict__.update`` of its fields; for the clocks' per-decision snapshots. No defaults are
    filled and nothing is checked."""
    make = _MAKERS.get(cls)
    if make is None:
        names = tuple(cls.__dataclass_fields__)
        args = [f"_{k}" for k in range(len(names))]  # field names may shadow the globals used
        body = "".join(f"    d[{n!r}] = {a}\n" for n, a in zip(names, args))
        src = f"def make({', '.join(args)}):\n    o = new(cls)\n    d = o.__dict__\n{body}    return o\n"
        ns = {"new": object.__new__, "cls": cls}
        exec(src, ns)  # noqa: S102 - source built above from the dataclass's own field names
        make = _MAKERS[cls] = ns["make"]
        make.__qualname__ = f"maker({cls.__name__})"
    return make


def fast(cls, *values):
    """An instance of the frozen dataclass ``cls`` from all its field values in order (see
    :func:`maker`, which hot loops bind once)."""
    return maker(cls)(*values)


#: instance lifecycle, in order
LIFECYCLE = ("requested", "booting", "running", "draining", "terminated")
MARKETS = ("on-demand", "spot")
Market = Literal["on-demand", "spot"]


def fixed_boots(boot, types) -> dict[str, float]:
    """``boot`` (a mapping instance type -> fixed boot seconds, request to running, or None) checked
    against the pool's ``types``: the one rule of both clocks' ``boot`` argument."""
    boot = dict(boot or {})
    for t, b in boot.items():
        if t not in types:
            raise HpclabError(f"boot names {t!r}, which is not in the pool's types ({', '.join(types)})")
        boot[t] = float(check_nonnegative(f"boot[{t}]", b))
    return boot


@dataclass(frozen=True)
class InstanceView:
    """One instance as a policy sees it."""

    id: str
    itype: str
    zone: str
    market: Market
    state: str  # one of LIFECYCLE (a snapshot holds no terminated ones)
    cores: int  # task slots (threads) it gives the pool
    launched_at: float  # pool seconds
    running_tasks: int = 0
    idle_since: float | None = None  # pool seconds; None while busy or not yet running
    notice: bool = False  # a spot reclaim notice has been received


@dataclass(frozen=True)
class PoolLimits:
    """What a pool may hold: instance types, zones, per-type bounds, a quota of cores."""

    types: tuple[str, ...]
    zones: tuple[str, ...]
    min_per_type: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_per_type: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    quota_cores: int | None = None

    def __post_init__(self):
        if not self.types:
            raise HpclabError("types must name at least one instance type")
        if not self.zones:
            raise HpclabError("zones must name at least one zone")
        for name, bound in (("min_per_type", self.min_per_type), ("max_per_type", self.max_per_type)):
            for itype, n in bound.items():
                if itype not in self.types:
                    raise HpclabError(f"{name} names {itype!r}, which is not in types "
                                      f"({', '.join(self.types)})")
                check_nonnegative(f"{name}[{itype}]", n, integer=True)
        for itype in self.types:
            lo, hi = self.min_per_type.get(itype, 0), self.max_per_type.get(itype)
            if hi is not None and hi < lo:
                raise HpclabError(f"max_per_type[{itype}] must be >= min_per_type[{itype}] ({lo}), got {hi}")
        if self.quota_cores is not None and (isinstance(self.quota_cores, bool)
                                             or not isinstance(self.quota_cores, int)
                                             or self.quota_cores <= 0):
            raise HpclabError(f"quota_cores must be a whole number > 0 (or None for no quota), "
                              f"got {self.quota_cores!r}")
        object.__setattr__(self, "min_per_type", MappingProxyType(dict(self.min_per_type)))
        object.__setattr__(self, "max_per_type", MappingProxyType(dict(self.max_per_type)))


@dataclass(frozen=True)
class PoolState:
    """A snapshot of a pool at one moment on its clock."""

    time: float
    queued: int  # tasks waiting for a slot
    running: int  # tasks running
    instances: tuple[InstanceView, ...]
    limits: PoolLimits
    spent: float = 0.0  # USD billed so far
    mean_task_seconds: float | None = None  # pool seconds per task per core, if known
    done: int = 0  # tasks finished
    refused: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    # (itype, zone) -> pool time of the latest capacity refusal there; a key may also carry the
    # market, (itype, zone, market), for a refusal of that market only (e.g. no spot capacity)
    slots: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # itype -> task slots one new instance of that type gives (if the pool scales vCPUs down);
    # policies fall back to running instances of the type, then to the catalog's cores
    queued_whole: int = 0  # of ``queued``, slots asked by jobs that take whole instances (gangs)

    def count(self, *, itype: str | None = None, zone: str | None = None, market: str | None = None,
              states: tuple[str, ...] = ("requested", "booting", "running")) -> int:
        """How many instances match (by default: not draining, i.e. capacity that will serve)."""
        return sum(1 for i in self.instances
                   if (itype is None or i.itype == itype) and (zone is None or i.zone == zone)
                   and (market is None or i.market == market) and i.state in states)

    def cores(self, states: tuple[str, ...] = ("requested", "booting", "running")) -> int:
        return sum(i.cores for i in self.instances if i.state in states)


@dataclass(frozen=True)
class Launch:
    """Launch ``count`` instances of ``itype`` in ``zone`` on ``market``."""

    itype: str
    zone: str
    market: Market = "on-demand"
    count: int = 1


@dataclass(frozen=True)
class Decision:
    """What to launch and which instances (by id) to retire, with a reason for the event log."""

    launch: tuple[Launch, ...] = ()
    retire: tuple[str, ...] = ()
    reason: str = ""

    @property
    def empty(self) -> bool:
        return not self.launch and not self.retire


class Policy(Protocol):
    name: str

    def decide(self, state: PoolState) -> Decision: ...
