"""A pool's bill: :mod:`hpclab.elastic.billing` applied to the pool's event log up to a time."""

from __future__ import annotations

from hpclab.elastic import billing


def intervals(pool, until: float):
    """Instance lifetimes from the events up to pool time ``until`` (later events not yet
    happened: an instance terminated after ``until`` is still open then)."""
    df = pool.log.to_frame()
    return billing.intervals_from_log(df[df["time"] <= until])


def bill(pool, until: float | None = None):
    """Totals by type, zone and market (an ``xarray.Dataset``, see :func:`billing.bill`) of
    everything billed up to pool time ``until`` (default: now)."""
    until = pool.now() if until is None else float(until)
    sched = getattr(pool, "_fault_schedule", None)
    ds = billing.bill(intervals(pool, until), pool.catalog, until=until,
                      market=getattr(sched, "market", None))
    ds.attrs["until"] = until
    ds.attrs["time_scale"] = pool.time_scale
    return ds
