"""Shared fixtures. Dask clusters bind to 127.0.0.1 and are closed after each test module."""

import os

os.environ.setdefault("BOKEH_RESOURCES", "inline")

import pytest


def _helper(file: str):
    """A helper module of tests/ (``_slurm.py``, ``_dask.py``), loaded once by its path (tests/
    is no package)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = f"_hpclab_test{Path(file).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture
def dask_processes(tmp_path):
    """A real ``dask scheduler`` process on 127.0.0.1 (tests/_dask.py); ``.add(name)`` starts a
    worker process, ``.wait(n)`` waits for n; every process is stopped after the test."""
    procs = _helper("_dask.py").DaskProcesses(tmp_path)
    try:
        procs.start()
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="session")
def slurm():
    """A real Slurm (tests/_slurm.py): the one that answers, or one started on 127.0.0.1 by
    scripts/slurm-up.sh for this session and stopped after it; skips when neither can be had."""
    gen = _helper("_slurm.py").slurm_session()
    host, reason = next(gen)
    if host is None:
        pytest.skip(reason)
    yield host
    gen.close()
