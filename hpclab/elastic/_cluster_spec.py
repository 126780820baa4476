"""A cluster spec file: where a real run's workers come from (``cluster.kind: file`` in a
scenario, ``hpclab run --cluster FILE`` on the command line).

Either a Dask scheduler that is already running::

    kind: address
    address: tcp://10.0.0.5:8786

or a dask-jobqueue cluster that hpclab starts, grows and shrinks (one batch job per instance,
through :class:`~hpclab.elastic.AttachedPool`), with the cluster class's own keyword options::

    kind: slurm                 # slurm, pbs, sge, lsf, oar, moab, htcondor
    options:                    # SLURMCluster(...) keywords, dask-jobqueue's names
      cores: 1
      memory: 1GB
      walltime: "00:30:00"
      queue: work
      scheduler_options: {host: 10.0.0.5}

dask-jobqueue's own configuration file (``jobqueue.yaml``: ``jobqueue: {slurm: {cores: 1,
memory: 1GB, job-extra-directives: [...]}}``, one queue system) is read the same way, its
hyphenated keys as the keywords they name. ``cores`` and ``memory`` are required; ``processes``
must be 1 (default 1: one worker per job is one instance). The scheduler binds 127.0.0.1 unless
the file names ``scheduler_options.host``, ``host`` or ``interface`` (workers on other machines
need one of them), and serves no dashboard unless it names one.

Files are read by :func:`hpclab._yaml.load_yaml` (safe loader) and checked before any work; a
bad value is one line naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from hpclab._validate import HpclabError, show_key

__all__ = ["ClusterSpec", "load_cluster_spec", "JOBQUEUE_KINDS", "SPEC_KINDS"]

#: queue system -> dask-jobqueue cluster class (dask-jobqueue's config names)
JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                  "lsf": "LSFCluster", "oar": "OARCluster", "moab": "MoabCluster",
                  "htcondor": "HTCondorCluster"}
SPEC_KINDS = ("address", *JOBQUEUE_KINDS)
_KEYS = {"address": ("kind", "address"), "jobqueue": ("kind", "options")}
#: keywords hpclab sets itself (the pool starts from zero on its own event loop)
_OWN = {"self", "n_workers", "job_cls", "loop", "asynchronous", "scheduler_cls", "scheduler",
        "config_name"}
_REQUIRED = ("cores", "memory")


def _plain(where: str, key: str, value, depth: int = 0):
    if depth > 8:
        raise HpclabError(f"{where}: {key}: nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_plain(where, f"{key}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(where, f"{key}.{k}", v, depth + 1) for k, v in value.items()}
    raise HpclabError(f"{where}: {key}: must be a number, string, list or mapping, got "
                      f"{type(value).__name__}")


def _cluster_class(where: str, kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise HpclabError(f"{where}: kind: {kind} needs dask-jobqueue (pip install dask-jobqueue)") from None
    return getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])


def _option_names(cls) -> list[str]:
    """The keywords ``cls(...)`` takes: its own, its job class's and the base job's."""
    names = set()
    job = getattr(cls, "job_cls", None)
    for c in (cls, job, *(getattr(job, "__mro__", ())[1:2])):
        if c is not None:
            names |= {p.name for p in inspect.signature(c.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return sorted(names - _OWN)


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster spec: ``kind`` (``address`` or a queue system), the scheduler
    ``address`` or the cluster class's ``options``, and the file it came from."""

    kind: str
    address: str | None = None
    options: dict = field(default_factory=dict)
    source: str = "cluster spec"

    @property
    def jobqueue(self) -> bool:
        return self.kind in JOBQUEUE_KINDS

    def cluster_kwargs(self) -> dict:
        """The cluster class's keywords: the file's, with the safe defaults (processes 1,
        scheduler on 127.0.0.1, no dashboard) where it names none."""
        kw = dict(self.options)
        kw.setdefault("processes", 1)
        sched = dict(kw.get("scheduler_options") or {})
        if not ({"host", "interface"} & set(kw)) and "host" not in sched and "interface" not in sched:
            sched["host"] = "127.0.0.1"
        if "dashboard_address" not in kw:
            sched.setdefault("dashboard_address", None)
        kw["scheduler_options"] = sched
        return kw

    @contextlib.contextmanager
    def start(self):
        """The dask-jobqueue cluster, started with no workers (the pool asks for them), closed
        at the end (its jobs cancelled)."""
        cls = _cluster_class(self.source, self.kind)
        try:
            cluster = cls(n_workers=0, **self.cluster_kwargs())
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HpclabError(f"{self.source}: cannot start the {JOBQUEUE_KINDS[self.kind]} "
                              f"({first})") from None
        with cluster:
            yield cluster

    @contextlib.contextmanager
    def client(self, needs=(), *, workers: int = 1, timeout: float = 10.0):
        """A ``distributed.Client`` whose workers passed the pre-flight check for ``needs``: on
        the scheduler at ``address`` (the workers there), or on the dask-jobqueue cluster with
        ``workers`` jobs (waited for up to ``timeout`` s)."""
        from hpclab.elastic._pool_attach import connect, preflight

        if not self.jobqueue:
            with connect(self.address, needs=needs, timeout=timeout) as client:
                yield client
            return
        from distributed import Client

        with self.start() as cluster, Client(cluster) as client:
            cluster.scale(workers)
            try:
                client.wait_for_workers(workers, timeout=timeout)
            except (TimeoutError, OSError):
                raise HpclabError(f"{self.source}: {workers} worker(s) did not start within "
                                  f"{timeout:g} s (is the queue busy?)") from None
            preflight(client, needs, timeout=timeout, wait_for_workers=timeout)
            yield client


def load_cluster_spec(path) -> ClusterSpec:
    """Read and check a cluster spec file (see the module docstring)."""
    from hpclab._yaml import load_yaml

    path = Path(path)
    where = path.name
    if not path.is_file():
        raise HpclabError(f"{path}: no such cluster spec file")
    data = load_yaml(path, source=where)
    if not isinstance(data, Mapping):
        raise HpclabError(f"{where}: must be a mapping with kind ({', '.join(SPEC_KINDS)}), got "
                          f"{type(data).__name__}")
    data = _plain(where, "", dict(data))
    if "jobqueue" in data:  # dask-jobqueue's configuration format
        extra = sorted(set(data) - {"jobqueue"})
        if extra:
            raise HpclabError(f"{where}: {show_key(extra[0])}: is not a known key beside jobqueue")
        jq = data["jobqueue"]
        if not isinstance(jq, dict) or len(jq) != 1:
            raise HpclabError(f"{where}: jobqueue: must name one queue system "
                              f"({', '.join(JOBQUEUE_KINDS)}), got {sorted(jq) if isinstance(jq, dict) else jq!r}")
        (kind, opts), = jq.items()
        if not isinstance(opts, dict):
            raise HpclabError(f"{where}: jobqueue.{show_key(kind)}: must be a mapping of options, got {opts!r}")
        spelled = {k.replace("-", "_"): k for k in opts}  # errors name the key as written
        data = {"kind": kind, "options": {k.replace("-", "_"): v for k, v in opts.items()}}
        prefix = f"jobqueue.{kind}."
    else:
        spelled, prefix = {}, "options."
    kind = data.get("kind")
    if kind not in SPEC_KINDS:
        raise HpclabError(f"{where}: kind: must be one of {', '.join(SPEC_KINDS)}, got {kind!r}")
    allowed = _KEYS["address" if kind == "address" else "jobqueue"]
    for k in data:
        if k not in allowed:
            raise HpclabError(f"{where}: {show_key(k)}: is not a known key with kind: {kind} "
                              f"(known: {', '.join(allowed)})")
    if kind == "address":
        from hpclab.elastic._address import _parse

        address = data.get("address")
        if not isinstance(address, str) or not address:
            raise HpclabError(f"{where}: address: is required with kind: address (a Dask scheduler "
                              f"address such as tcp://10.0.0.5:8786), got {address!r}")
        try:
            _parse(address)
        except HpclabError as exc:
            raise HpclabError(f"{where}: address: {str(exc).removeprefix('--scheduler ')}") from None
        return ClusterSpec("address", address=address, source=where)
    opts = data.get("options")
    if not isinstance(opts, dict):
        raise HpclabError(f"{where}: options: must be a mapping of {JOBQUEUE_KINDS[kind]} keywords "
                          f"(cores, memory, walltime, ...), got {opts!r}")
    def key(k: str) -> str:  # an option's key path as the file spells it
        return prefix + show_key(spelled.get(k, k))

    names = _option_names(_cluster_class(where, kind))
    for k in opts:
        if k not in names:
            raise HpclabError(f"{where}: {key(k)}: is not a {JOBQUEUE_KINDS[kind]} "
                              f"option ({', '.join(names)})")
    for k in _REQUIRED:
        if opts.get(k) is None:
            raise HpclabError(f"{where}: {key(k)}: is required (e.g. cores: 1, memory: 1GB)")
    cores = opts["cores"]
    if isinstance(cores, bool) or not isinstance(cores, int) or not 1 <= cores <= 10**6:
        raise HpclabError(f"{where}: {key('cores')}: must be a whole number in [1, 1,000,000], got {cores!r}")
    if not isinstance(opts["memory"], str):
        raise HpclabError(f"{where}: {key('memory')}: must be a size such as 1GB, got {opts['memory']!r}")
    if opts.get("processes", 1) != 1:
        raise HpclabError(f"{where}: {key('processes')}: must be 1 (one worker per job is one "
                          f"instance), got {opts['processes']!r}")
    for k in ("scheduler_options", "job_extra_directives", "worker_extra_args"):
        v = opts.get(k)
        want = dict if k == "scheduler_options" else list
        if v is not None and not isinstance(v, want):
            raise HpclabError(f"{where}: {key(k)}: must be a {'mapping' if want is dict else 'list'}, "
                              f"got {v!r}")
    return ClusterSpec(kind, options=opts, source=where)
