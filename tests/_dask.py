"""Real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 for the tests (random
ports; every process started is stopped at the end): the ``dask_processes`` fixture in
conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


class DaskProcesses:
    """A ``dask scheduler`` (:meth:`start`) and workers (:meth:`add`) as processes."""

    def __init__(self, tmp_path: Path):
        self.tmp = Path(tmp_path)
        self.procs: list[subprocess.Popen] = []  # the scheduler first, then the workers
        self.env = dict(os.environ, DASK_DISTRIBUTED__LOGGING__DISTRIBUTED="error")
        self.address = ""

    def start(self) -> str:
        sched_file = self.tmp / "scheduler.json"
        self.procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env))
        end = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.3)  # the file is written before the scheduler listens
        self.address = json.loads(sched_file.read_text())["address"]
        return self.address

    def add(self, name: str, shadow: dict | None = None) -> subprocess.Popen:
        """A worker (one thread, with a nanny) named ``name``; ``shadow``: {package: source of
        its ``__init__``}, first on its PYTHONPATH (a worker "without" a package)."""
        env = dict(self.env)
        if shadow:
            d = self.tmp / f"shadow-{name}"
            for pkg, src in shadow.items():
                (d / pkg).mkdir(parents=True)
                (d / pkg / "__init__.py").write_text(src)
            env["PYTHONPATH"] = os.pathsep.join([str(d), self.env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            [DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--name", name,
             "--no-dashboard", "--memory-limit", "1GiB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.procs.append(proc)
        return proc

    def wait(self, n: int) -> None:
        """Until ``n`` workers have joined."""
        from distributed import Client

        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(n, timeout=120)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
