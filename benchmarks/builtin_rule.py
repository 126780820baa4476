"""The platform's scaling rule as it was built into its pools before it became the registered
``shortfall`` policy (hpclab 0.x, commit f355952): the baseline that ``bench_platform.py``
measures the default against in the same run (issue 12: "at least as fast as today's built-in
rule"). Not used by hpclab itself.

:class:`BuiltinPool` is an :class:`hpclab.platform.engine.Pool` whose pass-end hook launches the
queued deficit directly and whose idle sweep retires due nodes itself, with no policy object
and no :class:`~hpclab.elastic.state.PoolState`. ``with builtin_rule(): replay(...)`` makes the
replay build its pools from it.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

from hpclab.platform import engine

replay = importlib.import_module("hpclab.platform.replay")  # the module (the package exports the function)

INF = engine.INF


class BuiltinPool(engine.Pool):
    def _set_idle(self, t, n):
        s = self.nseg[n]
        self.nfree[n] = self.G
        self.idle[s].append(n)
        self.n_idle += 1
        self.free_slots += self.G
        self.version += 1
        self.nidle[n] = t
        if self.elastic and not self.timer:
            self._arm(t + self.idle_timeout)

    def idle_check(self, t, _n=-1, _=0):
        self.timer = False
        timeout = self.idle_timeout
        nidle = self.nidle
        nxt = INF
        for s in range(self.S):
            lst = self.idle[s]
            while lst and nidle[lst[0]] + timeout <= t:
                if self.n_up + self.n_boot <= self.min_nodes or self._retire_blocked():
                    return
                self._mark_retired(t, lst.pop(0), s)
            if lst and nidle[lst[0]] + timeout < nxt:
                nxt = nidle[lst[0]] + timeout
        if nxt < INF and self.n_up + self.n_boot > self.min_nodes:
            self._arm(nxt)

    def autoscale(self, t):
        if not self.elastic:
            return
        if not self.timer and self.n_idle and self.n_up + self.n_boot > self.min_nodes:
            due = min(self.nidle[lst[0]] for lst in self.idle if lst) + self.idle_timeout
            self._arm(due if due > t else t + self.idle_timeout)
        need = self.deficit()
        if need > 0:
            need = min(need, self.max_nodes - self.n_up - self.n_boot)
            if need > 0:
                self.launch(t, need)


@contextmanager
def builtin_rule():
    """Replays inside this block use :class:`BuiltinPool` (the default scaler is still built and
    named in the settings, but never asked)."""
    old = replay.Pool
    replay.Pool = BuiltinPool
    try:
        yield
    finally:
        replay.Pool = old
