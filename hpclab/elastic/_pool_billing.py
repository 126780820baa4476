"""A pool's bill: :mod:`hpclab.elastic.billing` applied to the pool's event log up to a time."""

from __future__ import annotations

from hpclab.elastic import billing


def intervals(pool, until: float):
    """Instance lifetimes from the events up to pool time ``until`` (later events not yet
    happened: an instance terminated after ``until`` is still open then)."""
    df = pool.log.to_frame()
    return billing.intervals_from_log(df[df["time"] <= until])


def instances(pool, until: float):
    """The per-instance bill (:func:`billing.bill_instances`) of everything billed up to pool
    time ``until``, spot seconds priced by the pool's spot market if it has one."""
    sched = getattr(pool, "_fault_schedule", None)
    return billing.bill_instances(intervals(pool, until), pool.catalog, until=until,
                                  market=getattr(sched, "market", None))


def bill(pool, until: float | None = None, *, per=None):
    """Totals by type, zone and market (an ``xarray.Dataset``, see :func:`billing.bill`) of
    everything billed up to pool time ``until`` (default: now); ``per`` is the pool's
    :func:`instances` bill at ``until`` if the caller already holds it."""
    until = pool.now() if until is None else float(until)
    ds = billing.bill_totals(instances(pool, until) if per is None else per)
    ds.attrs["until"] = until
    ds.attrs["time_scale"] = pool.time_scale
    return ds
