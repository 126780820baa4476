"""Worker pre-flight: before any work on a cluster someone else started, every worker is checked
for this hpclab's version and the packages the workload needs. Real ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1; a worker "without" a package has a directory first on
its PYTHONPATH whose package of that name fails to import (or reports another version)."""

from __future__ import annotations

import time

import pytest

from hpclab.cli import main

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(dask_processes):
    """A scheduler (conftest.py ``dask_processes``); ``add(name, shadow=None)`` starts a worker
    (``shadow``: {package: source of its __init__}, first on its PYTHONPATH)."""
    return dask_processes.address, dask_processes.add, dask_processes.wait


def test_a_worker_without_rdkit_ends_a_screen_within_seconds_with_one_line(cluster, capsys):
    address, add, wait = cluster
    add("good")
    add("no-rdkit", {"rdkit": "raise ImportError('No module named rdkit')"})
    wait(2)
    t0 = time.monotonic()
    code = main(["screen", "--library", "nci5k", "--target", "cdk2", "--size", "50",
                 "--scheduler", address])
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2 and took < 15, (code, took)
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "lacks rdkit" in err and "install on every worker" in err
    from distributed import Client

    with Client(address) as c:  # the line names the worker that lacks it
        bad = [a for a, w in c.scheduler_info()["workers"].items() if w["name"] == "no-rdkit"]
    assert bad and bad[0] in err


def test_another_hpclab_version_or_no_hpclab_is_named(cluster):
    from distributed import Client

    from hpclab import HpclabError
    from hpclab.elastic._pool_attach import preflight

    address, add, wait = cluster
    add("old", {"hpclab": "__version__ = '0.0.1'"})
    add("none", {"hpclab": "raise ImportError('No module named hpclab')"})
    wait(2)
    with Client(address) as c:
        with pytest.raises(HpclabError, match=r"worker tcp://127\.0\.0\.1:\d+ (has hpclab 0\.0\.1|"
                                              r"lacks hpclab).*\(and 1 more of 2 workers\)"):
            preflight(c, ("numba",))


def test_pool_demo_on_a_running_scheduler_bills_its_workers(cluster, capsys):
    address, add, wait = cluster
    add("a")
    add("b")
    wait(2)
    code = main(["pool", "demo", "--scheduler", address, "--tasks", "200",
                 "--time-scale", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "results correct" in out and "2 instances, 0 spot reclaims" in out
