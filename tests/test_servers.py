"""Every server hpclab starts binds 127.0.0.1: the listening sockets of hpclab's own process tree
(this process and its children: Dask schedulers, nannies, workers, dashboards) are sampled while
a screen, a pool demo, a CAE run and a ping-pong run, and any wildcard bind fails the test."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

psutil = pytest.importorskip("psutil")

WILDCARDS = {"0.0.0.0", "::", ""}


def listening(root: int | None = None) -> set[tuple[int, str, str, int]]:
    """``(pid, process name, ip, port)`` of every TCP socket in LISTEN state in the process tree
    rooted at ``root`` (default: this process)."""
    try:
        proc = psutil.Process(root or os.getpid())
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
            name = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # a worker that just exited
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                found.add((p.pid, name, c.laddr.ip, c.laddr.port))
    return found


class Sampler:
    """Sample :func:`listening` every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.seen: set = set()
        self._stop = threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            self.seen |= listening()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.seen |= listening()

    @property
    def wildcard(self):
        return sorted(s for s in self.seen if s[2] in WILDCARDS)

    @property
    def loopback(self):
        return sorted(s for s in self.seen if s[2] == "127.0.0.1")


def _assert_loopback_only(sampler: Sampler, what: str, min_listeners: int = 2):
    assert not sampler.wildcard, f"{what}: wildcard binds {sampler.wildcard}"
    others = [s for s in sampler.seen if s[2] not in ("127.0.0.1", "::1")]
    assert not others, f"{what}: non-loopback binds {others}"
    # the sampler saw the servers it was meant to see (scheduler + dashboard at least)
    assert len(sampler.loopback) >= min_listeners, f"{what}: saw only {sampler.seen}"


def test_sampler_catches_a_wildcard_bind():
    """The check can fail: a socket bound to 0.0.0.0 in this process is reported."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", 0))
        s.listen()
        with Sampler() as sampler:
            time.sleep(0.1)
        assert any(w[3] == s.getsockname()[1] for w in sampler.wildcard)
    finally:
        s.close()


def test_screen_binds_loopback_only():
    from hpclab.workloads import screening

    with Sampler() as sampler:
        ds = screening.screen("nci5k", "cdk2", size=40, workers=1, batch_size=50, progress=False)
    assert ds.sizes["molecule"] > 40
    _assert_loopback_only(sampler, "screen")


def test_pool_demo_binds_loopback_only():
    from hpclab.elastic._pool_burst import run_burst

    with Sampler() as sampler:
        run = run_burst(60, 0.002, max_instances=1, preemptions=0, processes=True)
    assert run.correct
    _assert_loopback_only(sampler, "pool demo")


def test_cae_run_binds_loopback_only():
    from hpclab.workloads import cae

    with Sampler() as sampler:
        ds = cae.run_heat(64, 2, steps=10, workers=2)
    assert ds.attrs["max_abs_error"] < 1e-2
    _assert_loopback_only(sampler, "cae")


def test_pingpong_binds_loopback_only():
    from hpclab.network.calibrate import pingpong

    with Sampler() as sampler:
        ds = pingpong(sizes=(8, 4096), budget=0.02, max_repeats=5, progress=False)
    assert ds.sizes["nbytes"] == 2
    _assert_loopback_only(sampler, "ping-pong")
