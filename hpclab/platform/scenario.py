"""An HPC + AI job trace as a scenario (``kind: trace``), on the virtual clock.

The jobs come from a trace file (SWF or the GPU CSV; a relative name is looked up next to the
scenario file, then in ``data/traces/``) or a generator (``mixed``: Lublin-Feitelson HPC jobs with
AI training, inference and data pods at an offered ``load``). They are replayed on the platform
(:func:`hpclab.platform.replay.replay`): the Slurm-like queue for HPC gangs and the
Kubernetes-like queue for AI pods over shared elastic pools (``platform: unified``) or separate
clusters. ``pool.types`` names the CPU type then the GPU type, ``pool.max_per_type`` their node
counts, ``pool.min_per_type`` the nodes kept warm, ``pool.boot`` their boot seconds (default:
the catalog's). The scenario's policy, if it names one, sizes every elastic pool: the very policy class
that drives a real pool (a fresh object per pool); without one the registered ``shortfall``
policy (launch for the queued shortfall, retire after ``pool.idle_timeout``) does.

``pool.zones`` (one zone for both pools, or the CPU zone then the GPU zone) puts the pools in
catalog zones whose capacity (times ``pool.capacity``) limits launches; ``pool.market: spot``
buys spot nodes, reclaimed by the pool's ``spot_market`` (the simulator's seeded schedule) at
``pool.reclaim_rate`` or the zone's rate, with the jobs on a reclaimed node killed and re-queued
(without ``pool.zones``, spot pools are in the first zone offering each type).
"""

from __future__ import annotations

from pathlib import Path

from hpclab._validate import HpclabError
from hpclab.scenario import Field

__all__ = ["JobTrace"]

_DEFAULT_TYPES = ("ecs.c8i.32xlarge", "ecs.ebmgn8is.32xlarge")
_DEFAULT_NODES = (128, 16)  # CPU and GPU nodes when pool.max_per_type does not give them


class JobTrace:
    """``kind: trace`` — see the module docstring."""

    name = "trace"
    clocks = ("virtual",)
    #: the pool keys it reads: the pools' node counts are ``max_per_type``, their warm nodes
    #: ``min_per_type``; their slots are the types' vCPUs and GPUs (the jobs are sized in them)
    #: and the account quota is not modelled
    pool_keys = ("types", "zones", "min_per_type", "max_per_type", "boot", "market", "capacity",
                 "capacity_noise", "capacity_interval",
                 "spot_capacity", "reclaim_rate", "idle_timeout", "spot_market")
    #: the run settings it reads: the seed, the policy and its tick (a policy without the
    #: shortfall and idle triggers is asked every tick); the replay runs until its last job ends
    settings = ("seed", "tick", "policy")
    fields = {
        "trace": Field("str", None, optional=True, help="an SWF or CSV file"),
        "generator": Field("str", "mixed", choices=("mixed",)),
        "jobs": Field("int", 2000, lo=1, hi=10**8, help="jobs of the generator"),
        "load": Field("float", 0.7, lo=0, lo_open=True, hi=10.0, help="offered load of the generator"),
        "ai_share": Field("float", 0.3, lo=0, hi=1.0),
        "procs_per_node": Field("int", 64, lo=1, hi=10**6, help="SWF processors per node"),
        "platform": Field("str", "unified", choices=("unified", "separate")),
        "backfill": Field("bool", True),
        "placement": Field("str", "topology", choices=("topology", "linear")),
        "depth": Field("int", 100, lo=1, hi=10**6),
    }

    @staticmethod
    def check(s) -> None:
        types = s.pool["types"]
        if types and len(types) != 2:
            raise HpclabError(f"{s.source}: pool.types: a trace needs two types (CPU, then GPU), "
                              f"got {len(types)}")
        zones = s.pool["zones"]
        if len(zones) > 2:
            raise HpclabError(f"{s.source}: pool.zones: a trace takes one zone (both pools) or two "
                              f"(CPU, then GPU), got {len(zones)}")
        JobTrace._check_scaling(s)

    @staticmethod
    def _check_scaling(s) -> None:
        """What sizes the pools must be something the replay reads: the separate platform's
        clusters are fixed (no policy, tick, warm nodes, boots or idle retirement); a policy
        asked at its triggers has no tick; a policy's place parameters name a pool's own; no
        type keeps more nodes warm than it may have."""
        from hpclab.elastic.policies import check_limits
        from hpclab.elastic.state import PoolLimits
        from hpclab.platform.replay import _event_driven
        from hpclab.scenario import POOL, TOP

        fixed = s.workload["platform"] == "separate"
        policy = s.__dict__.get("_checked_policy")
        if fixed:
            for key in ("min_per_type", "boot", "idle_timeout"):
                if s.pool[key] != POOL[key].default:
                    raise HpclabError(f"{s.source}: pool.{key}: the separate platform's clusters are fixed "
                                      f"(platform: unified scales its pools), got {s.pool[key]!r}")
            if s.policy is not None:
                raise HpclabError(f"{s.source}: policy: the separate platform's clusters are fixed "
                                  f"(platform: unified scales its pools), got {s.policy['name']!r}")
        if s.tick != TOP["tick"].default and (fixed or policy is None or _event_driven(policy)):
            who = "the separate platform has no policy" if fixed else \
                f"the {getattr(policy, 'name', 'shortfall')} policy is asked at its triggers (a shortfall, an idle node)"
            raise HpclabError(f"{s.source}: tick: {who}, not every tick, got {s.tick!r}")
        cpu_t, gpu_t = JobTrace._types(s)
        if policy is not None:
            for name, itype in (("cpu", cpu_t), ("gpu", gpu_t)):
                try:
                    check_limits(policy, PoolLimits(types=(itype,), zones=(name,)))
                except HpclabError as exc:
                    raise HpclabError(f"{s.source}: policy.params.{exc} (the policy sizes each pool of a "
                                      f"trace: the {name} pool, of one type)") from None
        pool = s.pool
        if policy is not None and _event_driven(policy) and pool["idle_timeout"] != POOL["idle_timeout"].default:
            raise HpclabError(f"{s.source}: pool.idle_timeout: the {getattr(policy, 'name', 'shortfall')} policy "
                              f"keeps its own idle timeout (set policy.params.idle_timeout instead), "
                              f"got {pool['idle_timeout']!r}")
        # what only a zone or a spot market reads (a trace's pools have a zone only with pool.zones,
        # and reclaims only on spot)
        need = [("capacity", "pool.zones", bool(pool["zones"])), ("spot_capacity", "pool.zones", bool(pool["zones"])),
                ("capacity_noise", "pool.zones", bool(pool["zones"])),
                ("reclaim_rate", "pool.market: spot", pool["market"] == "spot"),
                ("spot_market", "pool.market: spot", pool["market"] == "spot")]
        for key, what, ok in need:
            if not ok and pool[key] != POOL[key].default:
                raise HpclabError(f"{s.source}: pool.{key}: a trace reads it only with {what}, "
                                  f"got {pool[key]!r}")
        nodes = dict(zip((cpu_t, gpu_t), JobTrace._nodes(s)))
        for t, n in s.pool["min_per_type"].items():
            top = nodes[t]
            if n > top:
                raise HpclabError(f"{s.source}: pool.min_per_type.{t}: must be at most the pool's nodes "
                                  f"(pool.max_per_type: {top}), got {n}")

    @staticmethod
    def _types(s):
        return tuple(s.pool["types"]) or _DEFAULT_TYPES

    def jobs(self, s):
        from hpclab.platform.generate import mixed_workload
        from hpclab.platform.traces import read_trace, sample_traces

        p = s.workload
        cpu_t, gpu_t = self._types(s)
        cpu_n, gpu_n = self._nodes(s)
        if p["trace"]:
            path = Path(p["trace"])
            if not path.is_absolute():
                near = Path(s.base or ".") / path
                path = near if near.exists() else sample_traces().get(path.name, near)
            if not path.is_file():
                raise HpclabError(f"{s.source}: workload.trace: no such file {p['trace']!r} (next to the "
                                  f"scenario or in data/traces: {', '.join(sample_traces())})")
            kw = {"procs_per_node": p["procs_per_node"]} if path.suffix.lower() == ".swf" else {}
            try:
                return read_trace(path, **kw)
            except HpclabError as exc:  # the file's own line (and line number) after the field
                raise HpclabError(f"{s.source}: workload.trace: {exc}") from None
        from hpclab import catalog

        cat = catalog.default()
        return mixed_workload(p["jobs"], ai_share=p["ai_share"], cpu_nodes=cpu_n, gpu_nodes=gpu_n,
                              load=p["load"], seed=s.seed, cores_per_node=cat.instance(cpu_t).vcpus,
                              gpus_per_node=max(cat.instance(gpu_t).gpus, 1))

    @staticmethod
    def _nodes(s):
        cpu_t, gpu_t = JobTrace._types(s)
        m = s.pool["max_per_type"]
        for t in (cpu_t, gpu_t):
            if m.get(t, 1) < 1:
                raise HpclabError(f"{s.source}: pool.max_per_type.{t}: must be a whole number >= 1 "
                                  f"(the pool's nodes), got {m[t]}")
        return m.get(cpu_t, _DEFAULT_NODES[0]), m.get(gpu_t, _DEFAULT_NODES[1])

    def run(self, s, *, progress: bool = False, out=None):
        import numpy as np

        from hpclab.catalog import resolve
        from hpclab.elastic.billing import bill_instances
        from hpclab.platform.replay import replay
        from hpclab.result import POOL_UNITS, Result, pool_sections, summary_dataset

        p = s.workload
        cat = resolve()
        cpu_t, gpu_t = self._types(s)
        cpu_n, gpu_n = self._nodes(s)
        jobs = self.jobs(s)
        scaler = s.make_policy(catalog=cat) if s.policy is not None else None
        pl = s.pool
        zones = pl["zones"]
        spot = pl["market"] == "spot"
        r = replay(jobs, p["platform"], cpu_type=cpu_t, gpu_type=gpu_t, cpu_nodes=cpu_n, gpu_nodes=gpu_n,
                   backfill=p["backfill"], placement=p["placement"], depth=p["depth"],
                   idle_timeout=pl["idle_timeout"], market=pl["market"], seed=s.seed,
                   scaler=scaler, tick=s.tick, progress=progress, catalog=cat,
                   zone=(zones[0] if len(zones) == 1 else tuple(zones)) if zones else None,
                   spot_market=s.spot_market() if spot else None, reclaim_rate=pl["reclaim_rate"],
                   capacity=pl["capacity"], spot_capacity=pl["spot_capacity"],
                   capacity_noise=pl["capacity_noise"], capacity_interval=pl["capacity_interval"],
                   min_nodes=pl["min_per_type"], boot=pl["boot"])
        inst = r.instances
        iv = inst.assign(instance=np.arange(len(inst)).astype(str), start=inst["launch"])
        instances, the_bill, totals = pool_sections(bill_instances(iv, cat, until=r.makespan, market=r.market))
        df = r.jobs
        done = df["status"] == "done"
        pools = r.pools
        gpu = np.array([cat.instance(t).gpus > 0 for t in pools["itype"]], dtype=bool)
        lost = pools["lost_slot_seconds"].to_numpy(dtype=float)
        values = {"tasks": int(len(df)), "tasks_done": int(done.sum()),
                  "rejected": int((df["status"] == "rejected").sum()),
                  "makespan_s": float(r.makespan), **totals,
                  "reclaims": int(pools["reclaims"].sum()), "refusals": int(pools["refused"].sum()),
                  "rerun_jobs": int((df["reruns"] > 0).sum()), "reruns": int(df["reruns"].sum()),
                  "failed": int((df["status"] == "failed").sum()),
                  "lost_gpu_seconds": float(lost[gpu].sum()), "lost_cpu_seconds": float(lost[~gpu].sum()),
                  "wait_mean_s": float(df.loc[done, "wait"].mean()) if done.any() else float("nan"),
                  "bsld_mean": float(df.loc[done, "bsld"].mean()) if done.any() else float("nan"),
                  "policy": r.settings["scaler"] or "fixed pools",
                  "platform": p["platform"]}
        units = {**POOL_UNITS, "rejected": "jobs", "wait_mean_s": "s", "bsld_mean": "1",
                 "tasks": "jobs", "tasks_done": "jobs", "rerun_jobs": "jobs", "reruns": "count",
                 "failed": "jobs", "lost_gpu_seconds": "GPU s", "lost_cpu_seconds": "vCPU s"}
        jobs_ds = df.drop(columns=[c for c in ("reason",) if c in df]).to_xarray().rename(index="job")
        return Result(scenario=s, clock="virtual", summary=summary_dataset(values, units, {"notes": ""}),
                      instances=instances, bill=the_bill,
                      data={"jobs": jobs_ds, "metrics": r.summary()})
