"""Network topology: how far apart the hosts of a job sit, and how much bandwidth the tiers keep.

A :class:`Topology` turns the number of hosts a collective spans into two numbers that the cost
models use on every inter-node step:

* ``extra_hops(hosts)`` -- switch hops beyond the single switch a fabric's ``alpha`` already
  includes: 0 while all hosts hang off one leaf (ToR, or one rail switch of a segment), 2 when the
  job spans leaves of one pod (leaf -> spine -> leaf), 4 when it spans pods (up to the core and
  down). Each hop adds the fabric's ``per_hop_latency`` to ``alpha``.
* ``oversubscription(hosts)`` -- the ratio of down-link to up-link capacity of the highest tier
  the job crosses (the largest ratio on the way, since a flow that crosses the core also crossed
  its leaf's up-links). A collective whose steps send every host's traffic across that tier at
  once (recursive doubling/halving, Bruck, pairwise exchange, trees) sees ``beta`` multiplied by
  it; a ring sends only one flow per leaf boundary, so it sees ``max(1, ratio / hosts_per_leaf)``.

``placement`` says how the cloud places the hosts: ``packed`` (a placement group / deployment
set with a low-latency strategy: hosts fill one leaf, then one pod, before spilling over) or
``spread`` (no placement group: any two hosts are assumed to sit in different pods).

A rail-optimised network (``kind="rail-optimised"``, e.g. Alibaba HPN 7.0: 8 rails, 1,024 GPUs =
128 hosts per segment, 15 segments per pod, two tiers, dual plane) connects GPU *i* of every host
to rail switch *i*; same-rail traffic of hosts in one segment crosses one switch, which is the
traffic that rings and hierarchical collectives generate (NCCL keeps traffic on its rail with
PXN). It is modelled as a fat tree whose leaf is the segment (``hosts_per_leaf`` = hosts per
segment).

Topology presets with sources live in ``data/reference/topologies.yaml``; :func:`topology` loads
one by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpclab._validate import HpclabError, check_choice, check_positive

__all__ = ["Topology", "topology", "KINDS", "PLACEMENTS"]

KINDS = ("single-switch", "fat-tree", "rail-optimised")
PLACEMENTS = ("packed", "spread")


@dataclass(frozen=True)
class Topology:
    """A folded-Clos (fat-tree) network, optionally rail-optimised.

    Parameters
    ----------
    kind : {"single-switch", "fat-tree", "rail-optimised"}
        ``single-switch``: every host on one switch (no extra hops, no oversubscription).
    hosts_per_leaf : int
        Hosts under one leaf switch (for rail-optimised: hosts per segment).
    leaves_per_pod : int
        Leaves joined by one spine layer (a pod); beyond a pod traffic crosses the core tier.
    oversubscription : tuple of two floats
        Down/up capacity ratio at the leaf tier and at the spine tier (1 = non-blocking).
    placement : {"packed", "spread"}
        Hosts placed together (placement group) or spread across the region.
    name : str
        A label.

    Examples
    --------
    >>> t = Topology(hosts_per_leaf=32, leaves_per_pod=16, oversubscription=(1.0, 3.0))
    >>> t.extra_hops([1, 32, 33, 600]).tolist()
    [0.0, 0.0, 2.0, 4.0]
    >>> t.oversubscription_at([1, 32, 33, 600]).tolist()
    [1.0, 1.0, 1.0, 3.0]
    """

    kind: str = "fat-tree"
    hosts_per_leaf: int = 32
    leaves_per_pod: int = 32
    oversubscription: tuple = (1.0, 1.0)
    placement: str = "packed"
    name: str = "custom"

    def __post_init__(self):
        check_choice("topology kind", self.kind, KINDS)
        check_choice("placement", self.placement, PLACEMENTS)
        check_positive("hosts_per_leaf", self.hosts_per_leaf, integer=True)
        check_positive("leaves_per_pod", self.leaves_per_pod, integer=True)
        try:
            ratios = tuple(float(x) for x in self.oversubscription)
        except (TypeError, ValueError):
            raise HpclabError(f"oversubscription must be two numbers >= 1 (leaf, spine), "
                              f"got {self.oversubscription!r}") from None
        if len(ratios) != 2 or not all(np.isfinite(r) and r >= 1 for r in ratios):
            raise HpclabError(f"oversubscription must be two numbers >= 1 (leaf, spine), "
                              f"got {self.oversubscription!r}")
        object.__setattr__(self, "oversubscription", ratios)

    @property
    def hosts_per_pod(self) -> int:
        return self.hosts_per_leaf * self.leaves_per_pod

    def _tier(self, hosts) -> np.ndarray:
        """0: one leaf, 1: one pod, 2: several pods (vectorised over ``hosts``)."""
        h = np.asarray(hosts, dtype=float)
        if self.kind == "single-switch":
            return np.zeros_like(h)
        if self.placement == "spread":
            return np.where(h <= 1, 0.0, 2.0)
        return np.where(h <= self.hosts_per_leaf, 0.0, np.where(h <= self.hosts_per_pod, 1.0, 2.0))

    def extra_hops(self, hosts) -> np.ndarray:
        """Switch hops beyond the first for a job spanning ``hosts`` hosts: 0, 2 or 4."""
        return 2.0 * self._tier(hosts)

    def oversubscription_at(self, hosts) -> np.ndarray:
        """Largest down/up ratio on the way up to the highest tier crossed (1 within a leaf)."""
        tier = self._tier(hosts)
        leaf, spine = self.oversubscription
        return np.where(tier == 0, 1.0, np.where(tier == 1, leaf, max(leaf, spine)))

    def ring_oversubscription_at(self, hosts) -> np.ndarray:
        """A ring sends one flow per leaf boundary: ``max(1, ratio / hosts_per_leaf)``."""
        return np.maximum(1.0, self.oversubscription_at(hosts) / self.hosts_per_leaf)


def topology(name_or_topology) -> Topology:
    """Return a :class:`Topology`: pass one through, or load a preset from
    ``data/reference/topologies.yaml`` by name (KeyError listing the known names)."""
    if isinstance(name_or_topology, Topology):
        return name_or_topology
    if not isinstance(name_or_topology, str):
        raise HpclabError(f"topology must be a Topology or a preset name, got {name_or_topology!r}")
    presets = _presets()
    if name_or_topology not in presets:
        from hpclab.catalog import UnknownNameError

        raise UnknownNameError(f"unknown topology {name_or_topology!r}; known: {', '.join(presets)}")
    return presets[name_or_topology]


_PRESETS: dict | None = None


def _presets() -> dict:
    global _PRESETS
    if _PRESETS is None:
        from hpclab._yaml import load_yaml

        from hpclab._paths import data_dir

        path = data_dir() / "reference" / "topologies.yaml"
        doc = load_yaml(path) or {}
        out = {}
        for name, e in (doc.get("topologies") or {}).items():
            if not str(e.get("source", "")).strip():
                raise HpclabError(f"{path}: topology {name!r}: missing source")
            out[name] = Topology(kind=e["kind"], hosts_per_leaf=int(e["hosts_per_leaf"]),
                                 leaves_per_pod=int(e["leaves_per_pod"]),
                                 oversubscription=tuple(e["oversubscription"]),
                                 placement=e.get("placement", "packed"), name=name)
        _PRESETS = out
    return _PRESETS
