"""One platform for HPC and AI jobs: Slurm-like and Kubernetes-like queues on shared elastic pools.

>>> from hpclab import platform
>>> jobs = platform.lublin_feitelson(200, max_nodes=32, seed=1)
>>> res = platform.replay(jobs, policy="separate", cpu_nodes=64)
>>> int((res.jobs["finished"] == 1).sum())
200
"""

from hpclab.platform.generate import gpu_jobs, lublin_feitelson, mixed_workload, offered_load, requested_times
from hpclab.platform.jobs import GANG_KINDS, JOB_COLUMNS, KINDS, check_jobs, jobs_frame
from hpclab.platform.placement import TIERS, cross_segment_slowdown, node_fabric, node_topology, segment_nodes
from hpclab.platform.replay import (PLACEMENTS, POLICIES, PlatformResult, bounded_slowdown, replay,
                                    replay_each)
from hpclab.platform.traces import (SWF_FIELDS, read_gpu_csv, read_swf, read_trace, sample_traces, write_gpu_csv,
                                    write_swf)

__all__ = ["KINDS", "GANG_KINDS", "JOB_COLUMNS", "jobs_frame", "check_jobs", "read_swf", "write_swf",
           "read_gpu_csv", "write_gpu_csv", "read_trace", "sample_traces", "SWF_FIELDS", "lublin_feitelson", "gpu_jobs",
           "mixed_workload", "offered_load", "requested_times", "replay", "replay_each",
           "PlatformResult", "POLICIES", "PLACEMENTS", "bounded_slowdown", "cross_segment_slowdown",
           "node_fabric", "node_topology", "segment_nodes", "TIERS"]


def __getattr__(name):  # the deprecated compare and summarise (hpclab._deprecated), one release
    if name in ("compare", "summarise"):
        import importlib

        return getattr(importlib.import_module("hpclab.platform.replay"), name)
    raise AttributeError(f"module 'hpclab.platform' has no attribute {name!r}")
