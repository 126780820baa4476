"""Assert helpers for results, as :mod:`xarray.testing` has for Datasets.

>>> from hpclab import Scenario, testing
>>> r = Scenario.example("burst").run()
>>> testing.assert_valid_result(r)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["assert_valid_result", "assert_summary_close", "assert_clocks_agree"]


def assert_valid_result(result) -> None:
    """A :class:`hpclab.result.Result` is whole: every summary value has units; the bill's total
    equals the sum of the per-instance costs and of the bill by type, zone and market; every
    instance's billed seconds cover its lifetime; the events name only billed instances."""
    from hpclab.result import Result

    assert isinstance(result, Result), f"not a Result: {type(result).__name__}"
    for k in result.summary.data_vars:
        assert "units" in result.summary[k].attrs, f"summary {k!r} has no units"
    if result.bill is not None:
        total = float(result.bill["total_cost"])
        assert math.isclose(total, float(result.bill["cost"].sum()), rel_tol=1e-9, abs_tol=1e-12), \
            "the bill's total is not the sum of its cells"
        if "cost_usd" in result.summary:
            assert math.isclose(total, result["cost_usd"], rel_tol=1e-9, abs_tol=1e-12), \
                "summary cost_usd is not the bill's total"
    if result.instances is not None and result.instances.sizes.get("instance", 0):
        inst = result.instances
        np.testing.assert_allclose(float(inst["cost"].sum()), float(result.bill["total_cost"]), rtol=1e-9,
                                   err_msg="per-instance costs do not add up to the bill")
        assert bool((inst["billed_seconds"] >= inst["seconds"] - 1e-9).all()), \
            "an instance is billed for less than its lifetime"
    if result.events is not None and result.instances is not None and result.events.sizes.get("event", 0):
        billed = set(map(str, result.instances["instance"].values))
        granted = {str(i) for i, s in zip(result.events["instance"].values, result.events["state"].values)
                   if s in ("booting", "running", "draining")}
        assert granted == billed, f"instances granted {sorted(granted - billed)[:3]} are not billed"


def assert_summary_close(a, b, keys=None, *, rtol: float = 1e-7, atol: float = 0.0) -> None:
    """Two results' summaries agree on ``keys`` (default: every numeric key they share)."""
    if keys is None:
        keys = [k for k in a.summary.data_vars if k in b.summary
                and np.issubdtype(a.summary[k].dtype, np.number) and k not in ("wall_s",)]
    bad = []
    for k in keys:
        x, y = float(a[k]), float(b[k])
        if not (math.isclose(x, y, rel_tol=rtol, abs_tol=atol) or (math.isnan(x) and math.isnan(y))):
            bad.append(f"{k}: {x:g} vs {y:g}")
    assert not bad, "summaries differ: " + "; ".join(bad)


def assert_clocks_agree(real, virtual, keys=("tasks_done", "instance_seconds", "cost_usd"), *,
                        rtol: float = 0.15) -> None:
    """The same scenario on the real and the virtual clock agrees within ``rtol`` on ``keys``
    (the workbench's check of its model against reality)."""
    assert real.clock == "real" and virtual.clock == "virtual", (real.clock, virtual.clock)
    assert_summary_close(real, virtual, keys, rtol=rtol)
