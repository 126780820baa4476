"""One emulated instance of an :class:`~hpclab.elastic.pool.ElasticPool`: its record and the
``SpecCluster`` process object that boots it (a sampled delay), starts a real Dask worker
(``Nanny`` + worker process, or an in-process ``Worker``), and can kill it hard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass

from distributed import Nanny, Worker
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface

logger = logging.getLogger("hpclab.elastic.pool")


@dataclass
class InstanceRecord:
    """Mutable bookkeeping of one instance (the pool's view; policies get InstanceView)."""

    id: str
    itype: str
    zone: str
    market: str
    cores: int  # task slots (threads)
    launched_at: float  # pool seconds
    boot_seconds: float = 0.0  # sampled boot delay, pool seconds
    state: str = "requested"
    running_at: float | None = None
    address: str | None = None
    idle_since: float | None = None
    running_tasks: int = 0
    notice: bool = False
    end_reason: str = ""
    drain_reason: str = ""
    billed_from: float | None = None  # pool time of the first booting/running/draining event
    terminated_at: float | None = None
    hold_until: float | None = None  # pool time before which a retirement is not retried


def current_instance_type() -> str | None:
    """The catalog instance type of the pool worker running the calling task (None outside a
    pool's worker): what a task needs to know to run at its instance's speed."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return os.environ.get("HPCLAB_INSTANCE_TYPE")
    return getattr(w, "hpclab_instance_type", None) or os.environ.get("HPCLAB_INSTANCE_TYPE")


class Instance(ProcessInterface):
    """A worker of the pool that behaves like a cloud instance.

    ``start`` returns at once (the request is accepted, as a cloud API does) and boots in the
    background for the sampled boot delay (scaled to wall time). A worker process (``Nanny``)
    is started at once and registers with the scheduler at the end of the delay, after
    importing the ``preload`` modules (:mod:`hpclab.elastic._boot`), so this machine's process
    start-up is inside the emulated boot, not added to it; an in-process ``Worker`` is started
    after the delay. The pool marks the instance ``running`` when its worker has registered.
    ``close`` stops it whatever its state; :meth:`kill` kills its worker process with SIGKILL
    (in-process workers are closed without waiting for their running tasks), which is what a
    spot reclaim at the end of the notice or a node failure does.
    """

    def __init__(self, scheduler: str, name: str, *, pool, record: InstanceRecord,
                 boot_wall: float, worker_cls, worker_options: dict, preload=()):
        super().__init__(scheduler=scheduler, name=name)
        self.scheduler_address = scheduler
        self.name = name
        self._pool = pool
        self.record = record
        self.boot_wall = float(boot_wall)
        self.worker_cls = worker_cls
        self.worker_options = dict(worker_options)
        self.preload = tuple(preload)
        self.worker: Nanny | Worker | None = None
        self._boot: asyncio.Task | None = None

    async def start(self):
        self._pool._set_state(self.record, "booting", "boot")
        self._boot = asyncio.create_task(self._boot_and_start())
        await super().start()

    async def _boot_and_start(self):
        try:
            from hpclab.elastic import _boot

            options = dict(self.worker_options)
            if self.worker_cls is Nanny:  # the worker process learns its type and boot from its environment
                until = time.time() + self.boot_wall
                # start it at most START_LEAD before the boot ends: long enough for its start-up,
                # short enough that the Nanny is not "starting" (which holds, e.g., the scheduler's
                # Nanny-plugin registration) for the whole of a long boot
                if self.boot_wall > _boot.START_LEAD:
                    await asyncio.sleep(self.boot_wall - _boot.START_LEAD)
                # the environment of this process now (a process forked from the fork server has
                # the server's, taken when it started), then the instance's own variables
                options["env"] = {**os.environ, **options.get("env", {}),
                                  "HPCLAB_INSTANCE_TYPE": self.record.itype,
                                  _boot.BOOT_UNTIL: repr(until), _boot.PRELOAD: ",".join(self.preload)}
                options["preload"] = [*options.get("preload", ()), _boot.__name__]
            else:
                _boot.import_all(self.preload)
                if self.boot_wall > 0:
                    await asyncio.sleep(self.boot_wall)
            worker = self.worker_cls(self.scheduler_address, name=self.name, **options)
            worker.hpclab_instance_type = self.record.itype  # in-process workers: an attribute
            self.worker = worker
            await worker
            self.address = worker.address
            self.record.address = worker.worker_address if isinstance(worker, Nanny) else worker.address
            self._pool._on_running(self.record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a worker that cannot start is an instance that failed to boot
            logger.warning("instance %s failed to boot: %s", self.name, exc)
            self.record.end_reason = self.record.end_reason or "boot-failed"
            self._pool._instance_failed(self.record)

    async def _stop_boot(self) -> None:
        """Cancel a boot in progress; a worker process already forked for it (asleep in its
        preload until the boot ends, where its Nanny cannot stop it) is killed."""
        if self._boot is None or self._boot.done():
            return
        self._boot.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._boot
        w = self.worker
        if not isinstance(w, Nanny) or w.process is None:
            return  # no worker process was asked for
        w.status = Status.closing_gracefully  # not restarted by its nanny
        for _ in range(100):  # a fork under way gets its pid within milliseconds
            pid = w.pid
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            if w.process is None or w.process.process is None:
                return
            await asyncio.sleep(0.01)

    async def kill(self, reason: str) -> None:
        """Kill the worker hard: SIGKILL its process (no data is moved, running tasks die)."""
        self.record.end_reason = reason
        await self._stop_boot()
        w = self.worker
        if w is None:
            return
        if isinstance(w, Nanny):
            w.status = Status.closing_gracefully  # a killed instance is not restarted by its nanny
            pid = w.pid
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            with contextlib.suppress(Exception):
                await w.close(timeout=1, executor_wait=False, nanny=False, reason=reason)

    async def close(self):
        await self._stop_boot()
        w = self.worker
        if w is not None and w.status not in (Status.closed, Status.failed):
            with contextlib.suppress(Exception):
                await w.close(timeout=5)
        self._pool._on_closed(self.record)
        await super().close()
