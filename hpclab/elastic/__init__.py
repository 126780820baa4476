"""Elastic pools: real Dask clusters that behave like cloud pools, the policies that size them,
per-second billing, faults, and the virtual-clock simulator that runs the same policies at scale.

- :class:`ElasticPool` — a ``distributed.SpecCluster`` whose workers are emulated instances
  (type, zone, market, boot delay, lifecycle, spot reclaims); :class:`AttachedPool` — the same
  accounting and policies over a cluster you already run.
- :mod:`~hpclab.elastic.policies` — pure ``decide(PoolState) -> Decision`` objects.
- :mod:`~hpclab.elastic.billing` — the per-second meter over an event log.
- :mod:`~hpclab.elastic.simulate` — the virtual clock: the same policies at 100,000 cores
  (``simulate.simulate``, ``campaign``, ``SimResult``).
- :mod:`~hpclab.elastic.events` — the lifecycle event log; :mod:`~hpclab.elastic.faults` — the
  seeded spot market both clocks share (:class:`SpotMarket`: reclaim waves, protection, bids,
  moving prices) and the real pool's faults; :mod:`~hpclab.elastic.sweep` — one workload over
  markets and market-aware policies.
- :func:`run_burst` — a burst of short tasks on a pool that grows from zero, is preempted and
  shrinks to zero (the demo of ``hpclab pool demo`` and the pools notebook).

The pool classes import ``distributed`` on first use, so policies, billing and the simulator
stay light.
"""

from hpclab.elastic import billing, events, faults, policies, simulate
from hpclab.elastic.billing import bill
from hpclab.elastic.events import EventLog
from hpclab.elastic.faults import Preemption, SpotFaults, SpotMarket
from hpclab.elastic.policies import make_policy
from hpclab.elastic.simulate import SimResult, campaign
from hpclab.elastic.state import (LIFECYCLE, MARKETS, Decision, InstanceView, Launch, PoolLimits,
                                  PoolState)

__all__ = ["ElasticPool", "AttachedPool", "PolicyAdaptive", "EventLog", "SpotFaults", "SpotMarket",
           "Preemption",
           "PoolState", "PoolLimits", "InstanceView", "Launch", "Decision", "LIFECYCLE", "MARKETS",
           "make_policy", "bill", "billing", "events", "faults", "policies", "simulate",
           "SimResult", "campaign", "run_burst", "BurstRun"]

_LAZY = {"ElasticPool": "hpclab.elastic.pool", "PolicyAdaptive": "hpclab.elastic.pool",
         "AttachedPool": "hpclab.elastic.pool", "run_burst": "hpclab.elastic._pool_burst",
         "BurstRun": "hpclab.elastic._pool_burst"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpclab.elastic' has no attribute {name!r}")
