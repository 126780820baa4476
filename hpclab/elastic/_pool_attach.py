"""``AttachedPool``: an ElasticPool's accounting, faults and policies over a Dask cluster that
someone else started (a scheduler address, or a cluster object that can scale)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pickle

from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster
from distributed.deploy.spec import SpecCluster
from tornado.ioloop import PeriodicCallback

from hpclab._validate import HpclabError, check_positive
from hpclab.elastic._pool_core import PoolAccounting, scheduler_view
from hpclab.elastic._pool_instance import InstanceRecord
from hpclab.elastic.state import Launch, PoolLimits

logger = logging.getLogger("hpclab.elastic.pool")

__all__ = ["AttachedPool"]


class AttachedPool(PoolAccounting, Cluster):
    """Wrap a running Dask cluster: every worker counts as one instance of ``itype`` in ``zone``.

    The pool records each worker's lifecycle from the moment it joins the scheduler (``running``)
    to the moment it leaves (``draining``, ``terminated``), bills it per second, injects faults
    (a reclaim notice retires the worker gracefully; a hard kill ends its process with
    ``os._exit``: a nanny, if it has one, starts a new worker, which the pool sees as a new
    instance) and runs a policy. Launches and retirements reach the cluster only if it can
    scale: pass the cluster object (``LocalCluster``, any ``SpecCluster``...) rather than its
    address; with an address, the policy can retire workers but not add them.

    On a ``SpecCluster`` (``LocalCluster``, dask-jobqueue's ``SLURMCluster``, ``PBSCluster``...)
    the pool manages the cluster's worker specs by name: a launch adds one spec named after the
    instance (one batch job on a jobqueue cluster), a retirement removes exactly that spec, and a
    worker joins the instance whose name it carries. ``SpecCluster.scale(n)`` is never called:
    it would pick which specs to drop by itself and re-create a spec whose worker left (after
    ``distributed.deploy.lost-worker-timeout``), which resubmits a job after a retirement.
    ``job_ids`` maps each instance to its batch job (``Job.job_id``) for comparing the bill with
    the batch system's accounting. Other clusters (with a ``scale(n)``) get ``scale(n)``.

    Parameters
    ----------
    target : str or distributed.deploy.Cluster
        The scheduler address (``tcp://127.0.0.1:8786``) or a cluster object.
    itype, zone, market :
        What each worker stands for (catalog names).
    policy : optional
        An object with ``decide(state) -> Decision``; run every ``interval`` wall seconds.
    time_scale : float
        Wall seconds per pool second (1: real time).
    max_instances : int, optional
        At most this many instances at once (launches beyond it are refused).
    faults, seed, catalog, asynchronous :
        As for :class:`~hpclab.elastic.ElasticPool`.

    Closing an AttachedPool closes only its connection: the cluster keeps running.
    """

    def __init__(self, target, *, itype: str = "ecs.c8i.8xlarge", zone: str = "cn-hangzhou-h",
                 market: str = "on-demand", policy=None, interval: float = 0.5,
                 time_scale: float = 1.0, faults=None, seed: int = 0, catalog=None,
                 asynchronous: bool = False, name: str | None = None,
                 max_instances: int | None = None, capacity: float = 1.0, spot_capacity: float = 1.0):
        if isinstance(target, str):
            self._cluster = None
            address = target
        elif hasattr(target, "scheduler_address"):
            self._cluster = target
            address = target.scheduler_address
        else:
            raise HpclabError(f"target must be a scheduler address or a Dask cluster object, "
                              f"got {type(target).__name__}")
        bound = {} if max_instances is None else {
            itype: check_positive("max_instances", max_instances, integer=True)}
        limits = PoolLimits(types=(itype,), zones=(zone,), max_per_type=bound)
        if self._spec_managed(self._cluster) and "group" in self._cluster.new_spec:
            raise HpclabError("the cluster starts several workers per job (processes > 1); an "
                              "AttachedPool counts one worker per instance: use processes=1")
        self._init_accounting(limits=limits, catalog=catalog, time_scale=time_scale,
                              faults=faults, seed=seed, threads=1, market=market,
                              capacity=capacity, spot_capacity=spot_capacity)
        self.interval = check_positive("interval", interval)
        self._address = address
        self._by_address: dict[str, InstanceRecord] = {}
        self._names: dict[str, object] = {}  # record id -> the worker's own name
        self._by_name: dict[object, InstanceRecord] = {}  # spec name -> record (SpecCluster)
        self.job_ids: dict[str, str] = {}  # record id -> batch job id (jobqueue clusters)
        self._forgotten: set[str] = set()  # record ids whose worker spec was dropped
        self._poll_pc = None
        self._policy_at_start = policy
        super().__init__(asynchronous=asynchronous, name=name)
        self.scheduler_comm = rpc(address)
        if not self.called_from_running_loop:
            self._loop_runner.start()
            self.sync(self._start)

    @staticmethod
    def _spec_managed(cluster) -> bool:
        return isinstance(cluster, SpecCluster) and bool(getattr(cluster, "new_spec", None))

    @property
    def _batch(self) -> bool:
        """Workers are batch jobs (dask-jobqueue: the spec's class has a ``submit_command``):
        an instance is billed from its job's submission to its job's end."""
        return (self._spec_managed(self._cluster)
                and getattr(self._cluster.new_spec.get("cls"), "submit_command", None) is not None)

    @property
    def can_scale(self) -> bool:
        """Whether launches reach the cluster (it was given as an object with ``scale``)."""
        return self._cluster is not None and callable(getattr(self._cluster, "scale", None))

    async def _start(self):
        # Not Cluster._start: its worker-status subscription is one per scheduler and belongs to
        # the wrapped cluster object; the pool polls the scheduler every ``interval`` instead.
        self.log.restart_clock()
        self.status = Status.running
        await self._view()  # the workers already there join the pool now
        self._poll_pc = PeriodicCallback(self._poll, self.interval * 1000)
        self._poll_pc.start()
        if self._policy_at_start is not None:
            policy, self._policy_at_start = self._policy_at_start, None
            self.adapt(policy)

    async def _poll(self) -> None:
        with contextlib.suppress(Exception):
            await self._view()
        self._tick_faults()

    # -- workers joining and leaving ----------------------------------------------------------
    def _sync_workers(self, view: dict) -> None:
        # the view is keyed by the worker's name
        present = {w["address"]: dict(w, name=n) for n, w in view["workers"].items()}
        for addr, info in present.items():
            if addr not in self._by_address:
                self._joined(info, "joined")
        for rec in self._by_name.values():
            self._note_job(rec)  # the job id, once the cluster has submitted the job
        for addr, rec in list(self._by_address.items()):
            if addr not in present and rec.state != "terminated":
                if rec.state != "draining":
                    rec.end_reason = rec.end_reason or "left"
                    self._set_state(rec, "draining", rec.end_reason)
                self._forget_spec(rec)  # a worker that left is not started again
                if not self._batch:  # a batch instance ends with its job (_job_closed)
                    self._on_closed(rec)

    def _joined(self, info: dict, reason: str) -> None:
        address = info["address"]
        if address in self._by_address:
            return
        if self._spec_managed(self._cluster):  # the instance whose spec it was started from
            rec = self._by_name.get(info.get("name"))
            if rec is not None and (rec.address is not None or rec.state == "terminated"):
                rec = None  # never two workers for one instance
            pending = [rec] if rec is not None else []
        else:
            pending = [r for r in self.records.values()
                       if r.address is None and r.state == "booting"]
        if pending:  # a worker the pool asked for
            rec = pending[0]
        else:  # a worker that was there, or that someone else started
            k = self._n_launched
            self._n_launched += 1
            rec = InstanceRecord(id=f"w-{k:04d}", itype=self.limits.types[0],
                                 zone=self.limits.zones[0], market=self.market,
                                 cores=int(info.get("nthreads", 1)), launched_at=self.now())
            self.records[rec.id] = rec
            rec.state = "booting"  # not logged: the pool sees it from when it joins
        rec.address = address
        rec.cores = int(info.get("nthreads", rec.cores))
        self._by_address[address] = rec
        self._names[rec.id] = info.get("name", address)
        self.threads[rec.itype] = rec.cores
        self._note_job(rec)
        self._on_running(rec)

    def _note_job(self, rec: InstanceRecord) -> None:
        if self._cluster is None or rec.id in self.job_ids:
            return
        worker = getattr(self._cluster, "workers", {}).get(self._names.get(rec.id))
        job = getattr(worker, "job_id", None)
        if job is not None:
            self.job_ids[rec.id] = str(job)

    # -- what PoolAccounting needs ------------------------------------------------------------
    async def _view(self) -> dict:
        resp = await self.scheduler_comm.run_function(function=pickle.dumps(scheduler_view),
                                                      args=pickle.dumps(()),
                                                      kwargs=pickle.dumps({}))
        if resp.get("status") != "OK":
            raise HpclabError(f"cannot read the scheduler at {self._address}: {resp.get('text', resp)}")
        view = resp["result"]
        self._sync_workers(view)
        return view

    def _start_launch(self, launch: Launch, reason: str):
        if not self.can_scale:
            self.refused[(launch.itype, launch.zone)] = self.now()
            return None
        self._launch_reason = reason
        rec = self._new_record(Launch(launch.itype, launch.zone, launch.market, 1))
        self._launch_reason = ""
        if not self._batch:  # the cluster starts it now; running when it joins
            self._set_state(rec, "booting", "boot")
        if self._spec_managed(self._cluster):
            name = self._cluster._new_worker_name(rec.id)
            self._names[rec.id] = name
            self._by_name[name] = rec
            self._on_cluster_loop(self._cluster.worker_spec.__setitem__, name,
                                  self._cluster.new_spec,
                                  then=(lambda: self._job_submitted(rec)) if self._batch else None)
        return rec.id

    def _on_cluster_loop(self, func, *args, then=None) -> None:
        """Run ``func(*args)`` and a state correction on the cluster's own event loop (where its
        worker specs are read, as ``SpecCluster.scale`` does), then ``then()`` on the pool's."""
        cluster, pool_loop = self._cluster, self.loop

        async def apply():
            func(*args)
            with contextlib.suppress(Exception):
                await cluster._correct_state()
            if then is not None:
                pool_loop.add_callback(then)

        cluster.loop.add_callback(apply)

    def _job_submitted(self, rec: InstanceRecord) -> None:
        self._note_job(rec)
        if rec.state == "requested":
            self._set_state(rec, "booting", "submitted")

    def _job_closed(self, rec: InstanceRecord) -> None:
        if rec.state not in ("draining", "terminated"):
            rec.end_reason = rec.end_reason or "left"
            self._set_state(rec, "draining", rec.end_reason)
        self._on_closed(rec)

    def _forget_spec(self, rec: InstanceRecord) -> None:
        """Drop ``rec``'s worker spec: the cluster closes its worker (cancels its job) and never
        starts it again; a batch instance terminates when its job is closed."""
        if self._spec_managed(self._cluster) and rec.id in self._names \
                and rec.id not in self._forgotten:
            self._forgotten.add(rec.id)
            self._on_cluster_loop(self._cluster.worker_spec.pop, self._names[rec.id], None,
                                  then=(lambda: self._job_closed(rec)) if self._batch else None)

    async def _after_launch(self) -> None:
        if not self._spec_managed(self._cluster):
            await self._scale_cluster()

    async def _scale_cluster(self) -> None:
        if self.can_scale:
            res = self._cluster.scale(sum(1 for r in self.alive() if r.state != "draining"))
            if inspect.isawaitable(res):
                await res

    async def _retire_now(self, *recs: InstanceRecord) -> set[str]:
        res = await self.scheduler_comm.retire_workers(workers=[r.address for r in recs],
                                                       close_workers=True, remove=True)
        return {r.id for r in recs if r.address in (res or {})}

    async def _kill_now(self, rec: InstanceRecord, reason: str) -> None:
        rec.end_reason = reason
        msg = {"op": "run", "function": pickle.dumps(os._exit), "args": pickle.dumps((1,)),
               "kwargs": pickle.dumps({}), "wait": True}  # the reply never comes: the process ends
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.scheduler_comm.broadcast(
                msg=msg, workers=[rec.address], on_error="ignore"), 5)

    async def _remove(self, *recs: InstanceRecord) -> None:
        pending = [r for r in recs if r.address is None]
        for rec in pending:  # asked for, not yet joined: ask for fewer
            if not self._batch:  # (a submitted job is billed until it is cancelled)
                self._on_closed(rec)
        if self._spec_managed(self._cluster):
            for rec in recs:
                self._forget_spec(rec)
        elif self.can_scale and hasattr(self._cluster, "scale_down"):
            names = [self._names[r.id] for r in recs if r.id in self._names]
            with contextlib.suppress(Exception):
                res = self._cluster.scale_down(names)
                if inspect.isawaitable(res):
                    await res
        elif pending:
            await self._scale_cluster()
        loop = asyncio.get_running_loop()
        end = loop.time() + 10 * max(self.interval, 0.5)
        while any(r.state != "terminated" for r in recs) and loop.time() < end:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):
                await self._view()  # notices the worker has left
        for rec in recs:
            if rec.state != "terminated":
                self._on_closed(rec)

    # -- policy (adapt, policy, stop_policy: PoolAccounting) ---------------------------------
    @property
    def plan(self):
        return {r.id for r in self.alive()}

    @property
    def requested(self):
        return self.plan

    @property
    def observed(self):
        return {r.id for r in self.alive() if r.state in ("running", "draining")}

    def running(self) -> list[str]:
        return [r.id for r in self.records.values() if r.state == "running"]

    def wait_for(self, predicate, timeout: float = 30.0, poll: float = 0.05) -> bool:
        from hpclab.elastic.pool import ElasticPool

        return ElasticPool.wait_for(self, predicate, timeout, poll)

    def client(self, **kwargs):
        from distributed import Client

        return Client(self, **kwargs)

    async def _close(self):
        if self._poll_pc is not None:
            self._poll_pc.stop()
        with contextlib.suppress(AttributeError):
            self._adaptive.stop(reason="pool-close")
        await self._wait_background(timeout=5)
        await super()._close()
        # the cluster keeps running; the pool's account of it ends here
        for rec in self.alive():
            rec.end_reason = rec.end_reason or "detached"
            self._on_closed(rec)

    def close(self, timeout=None):
        out = super().close(timeout)
        if not self.asynchronous and self.status == Status.closed:
            self._loop_runner.stop()
        return out

    def __repr__(self) -> str:
        return (f"<AttachedPool {self._address} as {self.limits.types[0]} in "
                f"{self.limits.zones[0]}: {len(self.running())} running>")


# -- pre-flight: what the workers of an attached cluster have -----------------------------------
_PROBE_SOURCE = '''
def probe(names):
    import importlib
    import sys
    out = {"python": "%d.%d.%d" % sys.version_info[:3]}
    for name in names:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:
            out[name] = None
            out[name + ":error"] = type(exc).__name__ + ": " + str(exc)
        else:
            out[name] = str(getattr(mod, "__version__", "unknown"))
    return out
'''


def _probe():
    """The probe function, compiled in a module no worker can import, so that cloudpickle sends
    it by value: a worker without hpclab can still run it and say so."""
    namespace = {"__name__": "__hpclab_preflight__"}
    exec(compile(_PROBE_SOURCE, "<hpclab-preflight>", "exec"), namespace)  # noqa: S102
    return namespace["probe"]


def preflight(client, needs=(), *, timeout: float = 10.0, wait_for_workers: float = 10.0) -> dict:
    """Check every worker of ``client``'s cluster before any work: the same hpclab version as
    here and the packages in ``needs`` (``("rdkit",)`` for screening, ``("numba",)`` for CAE).

    Returns ``{worker address: {package: version}}``. Raises one :class:`HpclabError` line
    naming the first worker that lacks something and what (and how many others do), within
    ``timeout`` seconds; or when no worker joins within ``wait_for_workers`` seconds.
    """
    import concurrent.futures

    import hpclab

    check_positive("timeout", timeout)
    names = ("hpclab", *[n for n in needs if n != "hpclab"])
    address = getattr(client.scheduler, "address", "the scheduler")
    try:
        client.wait_for_workers(1, timeout=wait_for_workers)
    except (TimeoutError, asyncio.TimeoutError):
        raise HpclabError(f"no Dask worker joined {address} within {wait_for_workers:g} s; start "
                          f"workers (dask worker {address}) or check the address") from None
    probe = _probe()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(client.run, probe, names, on_error="return")
        try:
            found = fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise HpclabError(f"the workers of {address} did not answer the pre-flight check "
                              f"within {timeout:g} s") from None
    bad = []
    for worker, got in sorted(found.items()):
        if isinstance(got, BaseException):
            bad.append((worker, f"cannot run the check ({type(got).__name__}: {got})"))
            continue
        missing = [n for n in names if got.get(n) is None]
        if missing:
            why = "; ".join(f"{n} ({got.get(n + ':error', 'not importable')})" for n in missing)
            bad.append((worker, f"lacks {why}"))
        elif got["hpclab"] != hpclab.__version__:
            bad.append((worker, f"has hpclab {got['hpclab']}, this is hpclab {hpclab.__version__}"))
    if bad:
        worker, what = bad[0]
        more = f" (and {len(bad) - 1} more of {len(found)} workers)" if len(bad) > 1 else ""
        raise HpclabError(f"worker {worker} {what}{more}; install on every worker: "
                          f"pip install hpclab=={hpclab.__version__} "
                          f"{' '.join(n for n in names if n != 'hpclab')}".rstrip())
    return found


def connect(address: str, *, needs=(), timeout: float = 10.0):
    """A ``distributed.Client`` on the scheduler at ``address`` whose workers passed
    :func:`preflight` for ``needs``; a malformed or unreachable address is one
    :class:`HpclabError` line within a few seconds (:func:`~hpclab.elastic._address.check_scheduler`)."""
    from distributed import Client

    from hpclab.elastic._address import check_scheduler

    address = check_scheduler(address)
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise HpclabError(f"cannot reach a Dask scheduler at {address} within {timeout:g} s "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                          ) from None
    try:
        preflight(client, needs, timeout=timeout, wait_for_workers=timeout)
    except BaseException:
        client.close()
        raise
    return client
