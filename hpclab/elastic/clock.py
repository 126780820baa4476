"""The virtual clock: the one event loop of hpclab.

Every virtual-clock engine runs on a :class:`Clock`: the task-bag simulator
(:mod:`hpclab.elastic.simulate`) and the platform's queues (:mod:`hpclab.platform.engine`). A
clock holds one heap of timed events ``(time, kind, seq, *payload)``: at equal times events
run in the order of their ``kind`` (smaller first) and then of scheduling (``seq``). A handler
is registered per kind (:meth:`Clock.on`) and called as ``handler(t, *payload)``; returning
:data:`STOP` ends the run.

What does not need the heap stays out of it, so that a task or a job is a few array elements,
not an event: an *arrival stream* (a sorted sequence of times, e.g. job submissions) is merged
into the loop as it is read, and a *before* hook sees each instant before its events (the
simulator assigns queued tasks to free slots there, in vectorised batches). One instant ``t``
runs in four phases:

1. ``before(t)``;
2. the events at ``t`` whose kind is below ``arrival_kind``;
3. the arrivals at ``t`` (``on_arrival(index, t)``), then ``after_arrivals(t)`` (e.g. one
   scheduling pass of every queue);
4. the events at ``t`` whose kind is ``>= arrival_kind`` (idle sweeps, policy ticks).

If phase 3 or 4 schedules more events at ``t``, the instant runs again.
"""

from __future__ import annotations

import heapq
import itertools
import math

__all__ = ["Clock", "STOP"]

#: a handler's return value that ends :meth:`Clock.run`
STOP = object()
INF = math.inf


class Clock:
    """One heap of timed events and the loop that runs them (see the module docstring)."""

    __slots__ = ("heap", "_seq", "_handlers", "now")

    def __init__(self):
        self.heap: list = []
        self._seq = itertools.count()
        self._handlers: dict = {}
        self.now = 0.0

    def on(self, kind: int, handler) -> None:
        """Call ``handler(t, *payload)`` for events of ``kind``."""
        self._handlers[kind] = handler

    def at(self, t: float, kind: int, *payload) -> None:
        """Schedule an event of ``kind`` at time ``t``."""
        heapq.heappush(self.heap, (t, kind, next(self._seq), *payload))

    def next_time(self) -> float:
        return self.heap[0][0] if self.heap else INF

    def __len__(self) -> int:
        return len(self.heap)

    def run(self, *, until: float = INF, before=None, arrivals=(), on_arrival=None,
            after_arrivals=None, arrival_kind: float = INF) -> str:
        """Run events in order until none is left (``"done"``), the next is later than ``until``
        (``"horizon"``; :attr:`now` is then ``until``) or a handler returns :data:`STOP`
        (``"stopped"``)."""
        heap, handlers, pop = self.heap, self._handlers, heapq.heappop
        na = len(arrivals)
        a = 0
        while heap or a < na:
            th = heap[0][0] if heap else INF
            ta = arrivals[a] if a < na else INF
            t = ta if ta < th else th
            if t > until:
                self.now = until
                return "horizon"
            self.now = t
            if before is not None:
                before(t)
            while heap and heap[0][0] == t and heap[0][1] < arrival_kind:
                ev = pop(heap)
                if handlers[ev[1]](t, *ev[3:]) is STOP:
                    return "stopped"
            if a < na and arrivals[a] == t:
                while a < na and arrivals[a] == t:
                    on_arrival(a, t)
                    a += 1
            if after_arrivals is not None:
                after_arrivals(t)
            while heap and heap[0][0] == t and heap[0][1] >= arrival_kind:
                ev = pop(heap)
                if handlers[ev[1]](t, *ev[3:]) is STOP:
                    return "stopped"
        return "done"
