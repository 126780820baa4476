"""A pool's bill: :mod:`hpclab.elastic.billing` applied to the pool's event log."""

from __future__ import annotations

from hpclab.elastic import billing


def intervals(pool, until: float | None = None):
    return billing.intervals_from_log(pool.log.to_frame(), until=until)


def total(pool, until: float | None = None) -> float:
    """USD billed up to pool time ``until`` (default: now), instances still alive included."""
    if len(pool.log) == 0:
        return 0.0
    until = pool.now() if until is None else float(until)
    per = billing.bill_instances(intervals(pool), pool.catalog, until=until)
    return float(per["cost"].sum())


def bill(pool, until: float | None = None):
    """Totals by type, zone and market (an ``xarray.Dataset``, see :func:`billing.bill`)."""
    until = pool.now() if until is None else float(until)
    ds = billing.bill(intervals(pool), pool.catalog, until=until)
    ds.attrs["until"] = until
    ds.attrs["time_scale"] = pool.time_scale
    return ds
