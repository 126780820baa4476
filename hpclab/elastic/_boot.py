"""Dask preload of an emulated instance's worker process: the boot delay covers the start-up.

An :class:`~hpclab.elastic._pool_instance.Instance` starts its worker process when it starts
booting, with this module as a ``preload`` (Dask runs a preload's ``dask_setup`` before the
worker registers with the scheduler). ``dask_setup`` imports the modules named in
``HPCLAB_PRELOAD`` (comma-separated: the workload's, so that its first task does not pay the
import) and then waits until ``HPCLAB_BOOT_UNTIL`` (Unix time: the end of the sampled boot
delay). The worker registers, and the instance is ``running``, at the end of the boot delay, or
when this machine has started the worker and imported the modules if that takes longer: the
start-up of a process here is inside the emulated boot instead of added to it (at
``time_scale = 0.02`` a 1 s start-up would otherwise add 50 pool seconds to every boot).

Starting a Python process that imports ``distributed`` takes about 1 s here, more than many
emulated boots (45 s at ``time_scale = 0.01``). While a pool is open, its worker processes are
therefore forked from a fork server (Dask's ``distributed.worker.multiprocessing-method:
forkserver``, which Dask's own test suite uses for the same reason) that has imported
``distributed``, hpclab and the first pool's ``preload`` modules once (a later pool's other
modules are imported by each worker as it boots); the pool starts and warms it before its clock
starts (:func:`acquire`), and puts the setting back when the last open pool closes
(:func:`release`; a pool never closed leaves it set). A worker's environment is this process's
when its instance boots, as with spawned workers; only what a library reads when the server
imports it (numpy's BLAS threads) is fixed then, with Dask's ``pre-spawn-environ`` applied
first. Where the platform has no fork server (Windows), workers are spawned.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import threading
import time

logger = logging.getLogger("hpclab.elastic.pool")

BOOT_UNTIL = "HPCLAB_BOOT_UNTIL"
PRELOAD = "HPCLAB_PRELOAD"
#: wall seconds before the end of its boot at which an instance's worker process is started:
#: more than its start-up here (about 0.25 s forked, 1 s spawned, 2-3 s on a loaded machine is
#: covered only in part), and short, because a Nanny that is starting holds the scheduler's
#: Nanny-plugin registration (``Client.register_plugin``) until it is up
START_LEAD = 2.0


def import_all(names) -> None:
    """Import each module named (an empty name is skipped)."""
    for name in names:
        if name:
            importlib.import_module(name)


async def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload signature
    import_all(os.environ.get(PRELOAD, "").split(","))
    until = float(os.environ.get(BOOT_UNTIL, "0") or 0.0)
    wait = until - time.time()
    if wait > 0:
        await asyncio.sleep(wait)


_KEY = "distributed.worker.multiprocessing-method"
_lock = threading.Lock()
_users = 0
_saved = None
_warmed = False


def _noop() -> None:
    """The first process forked: it returns once the fork server has imported its modules."""


def acquire(preload=()) -> bool:
    """Start worker processes from a warm fork server while the caller's pool is open (the
    first pool in this process waits about 1 s for the server to import its modules). False
    where there is no fork server, or where the user has set Dask's start method themselves
    (anything but its default, ``spawn``): their setting is kept."""
    global _users, _saved, _warmed
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    import dask

    with _lock:
        if _users == 0:
            _saved = dask.config.get(_KEY)
            if _saved != "spawn":  # the user chose a start method (Dask's default is spawn): theirs
                return False
            dask.config.set({_KEY: "forkserver"})
        _users += 1
        if not _warmed:
            from distributed.utils import get_mp_context

            # the variables Dask's Nanny sets in this process before it spawns a worker (one
            # thread per BLAS pool, malloc trimming, a fixed hash seed) must be there when the
            # server starts: it imports numpy before any Nanny runs, and its children inherit it
            cfg = dask.config.get("distributed.nanny.pre-spawn-environ")
            env = {k: os.environ.get(k, str(v)) for k, v in cfg.items() if v is not None}
            if env.get("PYTHONHASHSEED") in (None, "0"):
                env["PYTHONHASHSEED"] = "6640"  # as Nanny does: equal hashes across workers
            os.environ.update(env)
            ctx = get_mp_context()  # sets Dask's preload list; ours replaces it before the start
            ctx.set_forkserver_preload(["distributed", "numpy", "pandas", __name__, *preload])
            p = ctx.Process(target=_noop, name="hpclab fork-server warm-up")
            p.start()
            p.join()
            if p.exitcode != 0:
                logger.warning("fork server warm-up exited with %s", p.exitcode)
            _warmed = True
    return True


def release() -> None:
    """The caller's pool has closed: the last one puts Dask's setting back."""
    global _users
    import dask

    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and _saved is not None:
            dask.config.set({_KEY: _saved})
