"""The event log of a pool: one row per lifecycle change of an instance.

Every change of state of every instance (``requested -> booting -> running -> draining ->
terminated``, see :data:`hpclab.elastic.state.LIFECYCLE`) is one event with the pool time, the
instance id, its type, zone and market, the new state and the reason (``policy``, ``scale``,
``spot-notice``, ``spot-reclaim``, ``lost``, ``close`` ...). The real pool
(:class:`hpclab.elastic.ElasticPool`) and the virtual-clock simulator write the same table, so
billing (:mod:`hpclab.elastic.billing`) and the views read either.

Times are pool seconds (wall seconds divided by the pool's ``time_scale``).
"""

from __future__ import annotations

import threading
import time as _time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError, check_choice
from hpclab.elastic.state import LIFECYCLE, MARKETS

__all__ = ["Event", "EventLog", "COLUMNS", "events_from_dataset", "instance_table"]

#: the columns of the event table, in order
COLUMNS = ("time", "instance", "itype", "zone", "market", "state", "reason")


@dataclass(frozen=True)
class Event:
    """One lifecycle change: at pool ``time`` instance ``instance`` entered ``state``."""

    time: float
    instance: str
    itype: str
    zone: str
    market: str
    state: str
    reason: str = ""
    wall: float = 0.0  # wall-clock seconds since the pool started (for live views)


class EventLog:
    """An append-only, thread-safe log of instance lifecycle events.

    Parameters
    ----------
    time_scale : float
        Wall seconds per pool second (1 for real time, 0.01 to run a 45 s boot in 0.45 s).

    Examples
    --------
    >>> log = EventLog()
    >>> log.record(0.0, "i-0000", "ecs.c8i.8xlarge", "cn-hangzhou-h", "spot", "requested", "policy")
    >>> log.record(40.0, "i-0000", "ecs.c8i.8xlarge", "cn-hangzhou-h", "spot", "running", "booted")
    >>> log.to_dataset().sizes["event"]
    2
    """

    def __init__(self, time_scale: float = 1.0):
        self.time_scale = float(time_scale)
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._t0 = _time.monotonic()

    # -- clock --------------------------------------------------------------------------------
    def wall(self) -> float:
        """Wall seconds since the log (the pool) started."""
        return _time.monotonic() - self._t0

    def restart_clock(self) -> None:
        """Start the clock again (only while the log is empty)."""
        if self._events:
            raise HpclabError("restart_clock: the log already holds events")
        self._t0 = _time.monotonic()

    def now(self) -> float:
        """Pool seconds since the log (the pool) started."""
        return self.wall() / self.time_scale

    # -- writing ------------------------------------------------------------------------------
    def record(self, time: float | None, instance: str, itype: str, zone: str, market: str,
               state: str, reason: str = "") -> Event:
        """Append one event (``time=None``: now on the pool clock) and return it."""
        check_choice("state", state, LIFECYCLE)
        check_choice("market", market, MARKETS)
        wall = self.wall()
        if time is None:
            time = wall / self.time_scale
        event = Event(float(time), str(instance), str(itype), str(zone), str(market), state,
                      str(reason), wall)
        with self._lock:
            self._events.append(event)
        return event

    # -- reading ------------------------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def last_state(self) -> dict[str, str]:
        """The latest state of every instance seen, by instance id."""
        out: dict[str, str] = {}
        for e in self.events:
            out[e.instance] = e.state
        return out

    def to_frame(self) -> pd.DataFrame:
        """The log as a DataFrame with :data:`COLUMNS` (time in pool seconds)."""
        rows = self.events
        return pd.DataFrame({
            "time": np.array([e.time for e in rows], dtype=float),
            "instance": [e.instance for e in rows],
            "itype": [e.itype for e in rows],
            "zone": [e.zone for e in rows],
            "market": [e.market for e in rows],
            "state": [e.state for e in rows],
            "reason": [e.reason for e in rows],
        }, columns=list(COLUMNS))

    def to_dataset(self) -> xr.Dataset:
        """The log as an ``xarray.Dataset`` along dim ``event``.

        Variables: ``time`` (pool seconds), ``wall`` (wall seconds), and the text variables
        ``instance``, ``itype``, ``zone``, ``market``, ``state``, ``reason``.
        """
        rows = self.events
        n = len(rows)
        text = {c: ("event", np.array([getattr(e, c) for e in rows], dtype=object))
                for c in COLUMNS[1:]}
        ds = xr.Dataset(
            {"time": ("event", np.array([e.time for e in rows], dtype=float)),
             "wall": ("event", np.array([e.wall for e in rows], dtype=float)), **text},
            coords={"event": np.arange(n)},
            attrs={"time_scale": self.time_scale,
                   "description": "instance lifecycle events of an elastic pool"})
        ds["time"].attrs.update(units="s", long_name="pool time")
        ds["wall"].attrs.update(units="s", long_name="wall-clock time since the pool started")
        return ds

    def counts(self) -> pd.DataFrame:
        """Number of events by state and reason."""
        df = self.to_frame()
        if df.empty:
            return pd.DataFrame(columns=["state", "reason", "count"])
        return (df.groupby(["state", "reason"]).size().rename("count").reset_index()
                .sort_values(["state", "reason"], key=lambda s: s.map(_order) if s.name == "state"
                             else s).reset_index(drop=True))


def _order(state: str) -> int:
    return LIFECYCLE.index(state) if state in LIFECYCLE else len(LIFECYCLE)


def events_from_dataset(events) -> pd.DataFrame:
    """An event table as a DataFrame with :data:`COLUMNS`, from a Dataset, DataFrame or log."""
    if isinstance(events, EventLog):
        return events.to_frame()
    if isinstance(events, xr.Dataset):
        missing = [c for c in COLUMNS if c not in events]
        if missing:
            raise HpclabError(f"event dataset lacks {', '.join(missing)}; needs {', '.join(COLUMNS)}")
        return pd.DataFrame({c: events[c].values for c in COLUMNS}, columns=list(COLUMNS))
    if isinstance(events, pd.DataFrame):
        missing = [c for c in COLUMNS if c not in events.columns]
        if missing:
            raise HpclabError(f"event table lacks {', '.join(missing)}; needs {', '.join(COLUMNS)}")
        return events[list(COLUMNS)].copy()
    raise HpclabError(f"events must be an EventLog, xarray.Dataset or DataFrame, "
                      f"got {type(events).__name__}")


def instance_table(events, until: float | None = None) -> pd.DataFrame:
    """One row per instance: its type, zone, market and the pool time it entered each state.

    Columns ``itype``, ``zone``, ``market`` and one per lifecycle state (NaN if never reached),
    plus ``end_reason``. With ``until``, instances not yet terminated get ``terminated = NaN``
    and ``alive_until = until``.
    """
    df = events_from_dataset(events)
    rows = {}
    for e in df.itertuples(index=False):
        r = rows.setdefault(e.instance, {"instance": e.instance, "itype": e.itype, "zone": e.zone,
                                         "market": e.market, **{s: np.nan for s in LIFECYCLE},
                                         "end_reason": ""})
        if np.isnan(r[e.state]):
            r[e.state] = e.time
        if e.state == "terminated":
            r["end_reason"] = e.reason
    table = pd.DataFrame(list(rows.values()),
                         columns=["instance", "itype", "zone", "market", *LIFECYCLE, "end_reason"])
    if until is not None:
        table["alive_until"] = table["terminated"].fillna(float(until))
    return table.set_index("instance")
