"""Shared fixtures. Dask clusters bind to 127.0.0.1 and are closed after each test module."""

import os

os.environ.setdefault("BOKEH_RESOURCES", "inline")

import pytest


@pytest.fixture(scope="session")
def slurm():
    """A real Slurm (tests/_slurm.py): the one that answers, or one started on 127.0.0.1 by
    scripts/slurm-up.sh for this session and stopped after it; skips when neither can be had."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "_hpclab_test_slurm"  # tests/ is no package: load tests/_slurm.py by its path
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_slurm.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    gen = sys.modules[name].slurm_session()
    host, reason = next(gen)
    if host is None:
        pytest.skip(reason)
    yield host
    gen.close()
