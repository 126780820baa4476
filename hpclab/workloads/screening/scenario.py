"""A screening campaign as a scenario (``kind: screening``), on either clock.

The campaign screens ``molecules`` molecules of ``library`` (plus the target's hidden actives)
in batches of ``batch_size``, one task per batch, on the scenario's pool under its policy.

- **real**: the RDKit screen of :func:`~hpclab.workloads.screening.runner.run_screen` on an
  :class:`~hpclab.elastic.pool.ElasticPool` (or a pool attached to ``cluster.address``) that the
  policy grows from zero and shrinks back to zero; batches are written to ``--out`` (resumable).
- **virtual**: the same batches on the virtual clock, each taking the time its molecules cost.
  The per-molecule costs are the ones measured by a real run of this campaign (``costs_from``:
  its output folder; the batch works are then exactly the measured ones), or else measured on a
  seeded ``sample`` of the library on this machine once and cached
  (``~/.cache/hpclab/screening-costs-*.json``) and bootstrapped into batch works (the campaign
  can then hold far more molecules than the library, e.g. 10^8).

A batch that takes ``w`` wall seconds on this machine is ``w / time_scale`` pool seconds on
both clocks (the real pool's instances all run at this machine's speed), so the work handed to
the virtual clock is ``w / time_scale`` times the speed factor of the pool's first type.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from hpclab._cache import cache_root, write_json
from hpclab._validate import HpclabError
from hpclab.scenario import MAX_TASKS, Field
from hpclab.workloads.tasks import TaskBag, check_pool

__all__ = ["ScreeningCampaign", "measured_costs"]


def measured_costs(library: str, target: str, sample: int, seed: int, *, refresh: bool = False) -> np.ndarray:
    """Per-molecule stage seconds (stage, molecule) of a seeded sample, measured once here and
    cached as JSON in :func:`hpclab._cache.cache_root` (keyed by the library, target, sample, seed, pipeline parameters and the
    versions of hpclab and RDKit)."""
    import rdkit

    import hpclab
    from hpclab.workloads.screening.pipeline import STAGES, ScreenParams
    from hpclab.workloads.screening.runner import screen

    params = ScreenParams(target=target)
    key = json.dumps({"library": library, "target": target, "sample": sample, "seed": seed,
                      "params": params.as_dict(), "hpclab": hpclab.__version__,
                      "rdkit": rdkit.__version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_root() / f"screening-costs-{digest}.json"
    if path.is_file() and not refresh:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") == key:
                arr = np.array(data["stage_seconds"], dtype=float)
                if arr.ndim == 2 and arr.shape[0] == len(STAGES) and arr.shape[1] > 0:
                    return arr
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is measured again
    ds = screen(library, target, size=sample, seed=seed, workers=1, progress=False,
                batch_size=max(sample // 4, 10))
    t = np.vstack([ds[f"t_{s}"].values.astype(float) for s in STAGES])
    t = t[:, np.isfinite(t[0])]
    write_json(path, {"key": key, "stage_seconds": np.where(np.isfinite(t), t, None).tolist()})
    return t


class ScreeningCampaign:
    """``kind: screening`` — see the module docstring."""

    name = "screening"
    clocks = ("virtual", "real")
    #: the pool keys it reads: the task-bag pool's (its batches run as a bag of tasks)
    pool_keys = TaskBag.pool_keys
    #: the run settings it reads (as the task bag: its batches run as a bag of tasks)
    settings = TaskBag.settings
    fields = {
        "library": Field("str", "nci5k", choices=("nci5k",)),
        "target": Field("str", "cdk2", choices=("cdk2", "egfr")),
        "molecules": Field("int", lo=1, hi=10**12, help="library molecules in the campaign"),
        "batch_size": Field("int", 100, lo=1, hi=10**9, help="molecules per task"),
        "sample": Field("int", 40, lo=10, hi=5000, help="molecules measured for the virtual clock's costs"),
        "costs_from": Field("str", None, optional=True,
                            help="output folder of a real run whose measured costs the virtual clock uses"),
    }

    @staticmethod
    def check(s) -> None:
        p = s.workload
        n_tasks = -(-p["molecules"] // p["batch_size"])
        if n_tasks > MAX_TASKS:
            raise HpclabError(f"{s.source}: workload.batch_size: {p['molecules']:,} molecules in batches "
                              f"of {p['batch_size']:,} are {n_tasks:,} tasks, more than {MAX_TASKS:,}")
        if not s.pool["types"]:
            raise HpclabError(f"{s.source}: pool.types: a screening campaign needs at least one type")
        check_pool(s)
        if s.clock == "real":
            from hpclab.workloads.screening.library import _read_library

            size = len(_read_library(p["library"]))
            if p["molecules"] > size:
                raise HpclabError(f"{s.source}: workload.molecules: the {p['library']} library has "
                                  f"{size:,} molecules to screen for real, got {p['molecules']:,}")

    def run(self, s, *, progress: bool = False, out=None):
        if s.clock == "real":
            return self._real(s, progress=progress, out=out)
        return self._virtual(s, progress=progress)

    # -- the real clock ------------------------------------------------------------------------
    def _molecules(self, s):
        from hpclab.workloads.screening.library import load_library

        p = s.workload
        return load_library(p["library"], p["target"], size=p["molecules"], seed=s.seed)

    def _real(self, s, *, progress, out):
        import time

        from hpclab.catalog import resolve
        from hpclab.result import from_pool
        from hpclab.workloads.screening.analysis import quality
        from hpclab.workloads.screening.pipeline import ScreenParams
        from hpclab.workloads.screening.runner import run_screen
        from hpclab.workloads.tasks import real_pool, slots_of

        cat = resolve()
        p = s.workload
        mols = self._molecules(s)
        limits = s.limits(catalog=cat)
        slots = slots_of(s, cat)
        policy = s.make_policy("target-duration", catalog=cat)
        n_tasks = -(-len(mols) // p["batch_size"])
        with real_pool(s, limits, slots, policy, cat, needs=("rdkit",),
                       preload=("hpclab.workloads.screening.pipeline",)) as (pool, client):
            wall0 = time.perf_counter()
            t0 = pool.now()
            ds = run_screen(mols, ScreenParams(target=p["target"]), out=out, client=client,
                            batch_size=p["batch_size"], progress=progress)
            t_done = pool.now()
            try:
                pool.wait_for(lambda q: len(q.alive()) == 0, timeout=s.cluster["timeout"])
            except TimeoutError:
                raise HpclabError(f"{s.source}: the pool did not scale back to zero within "
                                  f"cluster.timeout = {s.cluster['timeout']:g} wall seconds") from None
            q = quality(ds)
            extra = {"molecules": int(ds.sizes["molecule"]),
                     "roc_auc_2d": float(q["roc_auc"].sel(stage="2d"))}
            return from_pool(s, pool, until=pool.now(), tasks=n_tasks, tasks_done=n_tasks,
                             makespan_s=t_done - t0, wall_s=time.perf_counter() - wall0,
                             data={"screen": ds}, extra=extra, units={"molecules": "molecules"})

    # -- the virtual clock ---------------------------------------------------------------------
    def batch_work(self, s) -> tuple[np.ndarray, int, str]:
        """(work per batch in reference core-seconds of pool time, molecules, where the costs came
        from) for the virtual clock."""
        from hpclab.catalog import resolve
        from hpclab.workloads.screening.campaign import _task_times
        from hpclab.workloads.screening.pipeline import STAGES, ScreenParams
        from hpclab.workloads.screening.runner import run_screen

        cat = resolve()
        p = s.workload
        t0 = s.pool["types"][0]
        speed = cat.generation(cat.instance(t0).generation).speed_factor
        scale = speed / s.time_scale  # wall seconds here -> reference work in pool seconds
        b = p["batch_size"]
        if p["costs_from"]:
            folder = Path(p["costs_from"])
            if not folder.is_dir():
                raise HpclabError(f"{s.source}: workload.costs_from: no such folder {folder}")
            # a resume of the real run's folder: every batch is read back (and checked), none computed
            try:
                mols = self._molecules(s)
                ds = run_screen(mols, ScreenParams(target=p["target"]), out=folder, batch_size=b, progress=False,
                                workers=1)
            except HpclabError as exc:  # not the folder of a real run of this campaign
                raise HpclabError(f"{s.source}: workload.costs_from: {folder} is not the output of a real "
                                  f"run of this campaign ({exc})") from None
            t = np.vstack([ds[f"t_{st}"].values.astype(float) for st in STAGES])
            per = np.nansum(t, axis=0)
            n = per.size
            work = np.add.reduceat(per, np.arange(0, n, b)) * scale
            return work, n, f"measured by the real run in {folder}"
        st = measured_costs(p["library"], p["target"], p["sample"], s.seed)
        cheap = np.nansum(st[:-1], axis=0)
        t3 = st[-1][np.isfinite(st[-1])]
        f = float(np.isfinite(st[-1]).mean())
        n = p["molecules"]
        n_tasks = -(-n // b)
        rng = np.random.default_rng(s.seed)
        pool = _task_times(cheap, t3, f, b, rng, draws=min(n_tasks, 20_000))
        work = pool[rng.integers(0, pool.size, n_tasks)] if n_tasks > pool.size else pool[:n_tasks]
        return work * scale, n, f"bootstrap of {st.shape[1]} molecules measured here"

    def _virtual(self, s, *, progress):
        from hpclab.elastic.simulate import make_workload
        from hpclab.workloads.tasks import run_virtual

        work, n, where = self.batch_work(s)
        wl = make_workload(duration="empirical", samples=work, arrival="burst", seed=s.seed)
        r = run_virtual(s, wl, progress=progress, extra={"molecules": int(n)},
                        units={"molecules": "molecules"})
        r.summary.attrs["costs"] = where
        return r
