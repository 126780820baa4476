"""Jobs as the platform sees them: one row per job in a ``pandas.DataFrame``.

Columns (see :data:`JOB_COLUMNS`):

============  =========  ======================================================================
column        unit       meaning
============  =========  ======================================================================
job_id        --         identifier (whole number, unique)
kind          --         ``hpc`` (gang of whole CPU nodes, Slurm-like queue), ``train`` (gang of
                         GPU pods), ``infer`` (independent GPU pods) or ``data`` (independent
                         CPU pods); the last three go to the Kubernetes-like queue
submit        s          submit time
pods          count      nodes of an HPC job, pods of an AI job
slots         count      GPUs (train, infer) or cores (data) per pod; 0 = a whole node (HPC)
run_time      s          actual run time (on nodes in one network segment)
req_time      s          requested run time (the time limit the scheduler plans with)
priority      --         larger runs first (ties: submit order)
============  =========  ======================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpclab._validate import HpclabError

__all__ = ["KINDS", "GANG_KINDS", "JOB_COLUMNS", "jobs_frame", "check_jobs"]

KINDS = ("hpc", "train", "infer", "data")
#: kinds whose pods must start all together
GANG_KINDS = ("hpc", "train")
JOB_COLUMNS = ("job_id", "kind", "submit", "pods", "slots", "run_time", "req_time", "priority")


def jobs_frame(*, submit, pods, run_time, kind="hpc", slots=0, req_time=None, priority=0,
               job_id=None) -> pd.DataFrame:
    """Build a checked job table from columns (scalars broadcast).

    Examples
    --------
    >>> jobs_frame(submit=[0, 5], pods=[2, 1], run_time=[100, 50]).loc[:, ["pods", "req_time"]]
       pods  req_time
    0     2     100.0
    1     1      50.0
    """
    submit = np.atleast_1d(np.asarray(submit, dtype=float))
    n = submit.size
    cols = {
        "job_id": np.arange(1, n + 1) if job_id is None else job_id,
        "kind": kind,
        "submit": submit,
        "pods": pods,
        "slots": slots,
        "run_time": run_time,
        "req_time": run_time if req_time is None else req_time,
        "priority": priority,
    }
    df = pd.DataFrame({k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in cols.items()})
    return check_jobs(df)


def check_jobs(df: pd.DataFrame) -> pd.DataFrame:
    """Check a job table (columns, kinds, values) and return it with canonical dtypes, sorted by
    submit time (stable)."""
    if not isinstance(df, pd.DataFrame):
        raise HpclabError(f"jobs must be a pandas.DataFrame with columns {', '.join(JOB_COLUMNS)}; "
                          f"got {type(df).__name__}")
    missing = [c for c in JOB_COLUMNS if c not in df.columns]
    if missing:
        raise HpclabError(f"jobs lack column(s) {', '.join(missing)}; need {', '.join(JOB_COLUMNS)}")
    out = df.loc[:, list(JOB_COLUMNS)].copy()
    kind = out["kind"].astype(str)
    bad = ~kind.isin(KINDS)
    if bad.any():
        raise HpclabError(f"kind must be one of {', '.join(KINDS)}; got {kind[bad].iloc[0]!r} "
                          f"(job {out['job_id'][bad].iloc[0]})")
    out["kind"] = kind
    for col, integer, minimum in (("job_id", True, None), ("submit", False, None), ("pods", True, 1),
                                  ("slots", True, 0), ("run_time", False, 0),
                                  ("req_time", False, 0), ("priority", True, None)):
        try:
            values = pd.to_numeric(out[col], errors="raise").to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise HpclabError(f"jobs column {col!r} must be numeric") from None
        if not np.all(np.isfinite(values)):
            i = int(np.argmin(np.isfinite(values)))
            raise HpclabError(f"jobs column {col!r} must be finite; job {out['job_id'].iloc[i]} has "
                              f"{values[i]!r}")
        if minimum is not None and np.any(values < minimum):
            i = int(np.argmax(values < minimum))
            raise HpclabError(f"jobs column {col!r} must be >= {minimum}; job {out['job_id'].iloc[i]} "
                              f"has {values[i]:g}")
        if integer and np.any(values != np.round(values)):
            i = int(np.argmax(values != np.round(values)))
            raise HpclabError(f"jobs column {col!r} must be whole numbers; job "
                              f"{out['job_id'].iloc[i]} has {values[i]:g}")
        out[col] = values.astype(np.int64) if integer else values
    hpc = out["kind"].to_numpy() == "hpc"
    if np.any(out["slots"].to_numpy()[hpc] != 0):
        raise HpclabError("slots must be 0 (a whole node) for hpc jobs")
    if out["job_id"].duplicated().any():
        raise HpclabError(f"job_id must be unique; repeated: {out['job_id'][out['job_id'].duplicated()].iloc[0]}")
    out = out.sort_values("submit", kind="stable").reset_index(drop=True)
    return out
