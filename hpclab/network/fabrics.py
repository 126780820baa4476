"""Fabrics as the cost models see them: Hockney's alpha-beta(-gamma) parameters.

A message of ``n`` bytes between two ranks costs ``alpha + hops * per_hop_latency + n * beta``
seconds, where ``beta = 1 / (bandwidth * efficiency)``; ``gamma`` is the time per byte of a
reduction's arithmetic. A fabric may also cap messages per second (``message_rate``), which puts
a floor of ``1 / message_rate`` under each message when many are in flight.
"""

from __future__ import annotations


from dataclasses import dataclass, replace

import numpy as np

from hpclab._validate import HpclabError, check_finite_array, check_nonnegative, check_positive

__all__ = ["Fabric", "fabric", "p2p_time"]


@dataclass(frozen=True)
class Fabric:
    """A network (or NVLink, or shared memory) as an alpha-beta-gamma model.

    Parameters
    ----------
    alpha : float
        Start-up latency of one message, seconds (> 0).
    beta : float
        Seconds per byte on one rank's link (> 0), i.e. 1 / effective bandwidth.
    gamma : float
        Seconds per byte of reduction arithmetic (>= 0).
    per_hop_latency : float
        Seconds added per switch hop (>= 0); a topology says how many hops a message crosses.
    message_rate : float
        Messages per second one host can issue (0 means no limit).
    name, scope : str
        A label, and where the fabric is: ``same-host``, ``intra-node`` or ``inter-node``.
    links_per_host : int
        Rails/NICs/links per host (8 for a rail-optimised GPU host).
    """

    alpha: float
    beta: float
    gamma: float = 0.0
    per_hop_latency: float = 0.0
    message_rate: float = 0.0
    name: str = "custom"
    scope: str = "inter-node"
    links_per_host: int = 1

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        check_positive("beta", self.beta)
        check_nonnegative("gamma", self.gamma)
        check_nonnegative("per_hop_latency", self.per_hop_latency)
        check_nonnegative("message_rate", self.message_rate)
        check_positive("links_per_host", self.links_per_host, integer=True)

    @property
    def bandwidth(self) -> float:
        """Effective bandwidth in bytes per second (1 / beta)."""
        return 1.0 / self.beta

    @property
    def message_gap(self) -> float:
        """Minimum seconds between two messages of one host (0 if no message-rate limit)."""
        return 1.0 / self.message_rate if self.message_rate > 0 else 0.0

    @classmethod
    def from_spec(cls, spec) -> "Fabric":
        """Build from a :class:`hpclab.catalog.FabricSpec` (effective beta = 1/(bandwidth*efficiency))."""
        return cls(alpha=spec.alpha, beta=1.0 / (spec.bandwidth * spec.efficiency), gamma=spec.gamma,
                   per_hop_latency=spec.per_hop_latency, message_rate=spec.message_rate,
                   name=spec.name, scope=spec.scope, links_per_host=spec.links_per_host)

    def with_(self, **changes) -> "Fabric":
        """A copy with some parameters changed (``erdma.with_(alpha=2e-6)``)."""
        return replace(self, **changes)


def fabric(name_or_fabric, catalog=None) -> Fabric:
    """Return a :class:`Fabric`: pass one through, or look a name up in the catalog."""
    if isinstance(name_or_fabric, Fabric):
        return name_or_fabric
    if not isinstance(name_or_fabric, str):
        raise HpclabError(f"fabric must be a Fabric or a catalog fabric name, got {name_or_fabric!r}")
    if catalog is None:
        from hpclab.catalog import default

        catalog = default()
    return Fabric.from_spec(catalog.fabric(name_or_fabric))


def p2p_time(nbytes, fabric_, hops=0, messages=1):
    """Seconds for ``messages`` point-to-point messages of ``nbytes`` each, sent back to back.

    ``T = messages * max(alpha + hops * per_hop_latency + nbytes * beta, 1 / message_rate)``

    (Hockney 1994; the message-rate floor applies when the link pipelines messages). ``nbytes``,
    ``hops`` and ``messages`` broadcast as numpy arrays. ``nbytes`` must be > 0.
    """
    f = fabric(fabric_)
    n = check_finite_array("nbytes", nbytes, minimum=0)
    h = check_finite_array("hops", hops, minimum=0, strict=False)
    m = check_finite_array("messages", messages, minimum=0, strict=False)
    one = f.alpha + h * f.per_hop_latency + n * f.beta
    t = m * np.maximum(one, f.message_gap)
    return t if t.ndim else float(t)


