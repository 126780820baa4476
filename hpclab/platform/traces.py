"""Job traces: the Standard Workload Format (SWF) and a simple CSV form for GPU jobs.

SWF (Parallel Workloads Archive, Chapin et al. 1999; https://www.cs.huji.ac.il/labs/parallel/workload/swf.html):
one job per line, 18 whitespace-separated numeric fields, ``-1`` for a missing value, header
lines starting with ``;``. The fields, in order: job number, submit time, wait time, run time,
allocated processors, average CPU time, used memory, requested processors, requested time,
requested memory, status, user, group, executable, queue, partition, preceding job, think time.

GPU CSV: a header line, then one job per line with the columns ``job_id, submit, kind, pods,
slots, run_time`` and optionally ``req_time, priority`` (``kind`` one of train, infer, data;
``slots`` GPUs per pod, or cores for data pods).

Malformed lines raise :class:`hpclab.HpclabError` naming the file and line:
``trace.swf:12: field 4 (run time) must be a number, got 'x'``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from hpclab._validate import (MAX_CORES, MAX_INSTANCES, MAX_SECONDS, MAX_TASKS, HpclabError,
                              check_range, decode_utf8)
from hpclab.platform.jobs import JOB_COLUMNS, check_jobs

__all__ = ["SWF_FIELDS", "read_swf", "write_swf", "read_gpu_csv", "write_gpu_csv", "read_trace", "sample_traces"]

SWF_FIELDS = ("job number", "submit time", "wait time", "run time", "allocated processors",
              "average cpu time", "used memory", "requested processors", "requested time",
              "requested memory", "status", "user id", "group id", "executable", "queue number",
              "partition number", "preceding job", "think time")


#: fields the reader uses (0-based): job number, submit, run time, allocated processors, requested
#: processors, requested time; in SWF -1 is the only negative value they may take (unknown)
_USED = (0, 1, 3, 4, 7, 8)
#: fields that count things: job number and processors
_WHOLE = (0, 4, 7)
#: the largest value each used field may take (SWF 2.2 gives the meaning, these the bound): job
#: numbers up to 10^9, times (submit, run, requested) up to 10 years, processors up to 10^8
_HIGH = {0: MAX_TASKS, 1: MAX_SECONDS, 3: MAX_SECONDS, 4: MAX_CORES, 7: MAX_CORES, 8: MAX_SECONDS}
_HIGH_COLS = np.array(list(_HIGH))
_HIGH_VALS = np.array(list(_HIGH.values()), dtype=float)


def _bound_text(k: int) -> str:
    return {0: "10^9", 1: "10 years (315,576,000 s)", 3: "10 years (315,576,000 s)", 4: "10^8",
            7: "10^8", 8: "10 years (315,576,000 s)"}[k]


def _read_text(path: Path, *, free_comments: str | None = None) -> str:
    """The file's text: strict UTF-8, except lines starting with ``free_comments`` (SWF's ``;``
    header comments are free text, often Latin-1), which fall back to Latin-1."""
    try:
        if path.is_dir():
            raise HpclabError(f"{path}: is a folder, not a trace file")
        data = path.read_bytes()
    except OSError as exc:
        raise HpclabError(f"{path}: cannot read trace ({exc.strerror or type(exc).__name__})") from None
    try:
        return decode_utf8(data, path.name)
    except HpclabError:
        if free_comments is None:
            raise
    marker = free_comments.encode()
    lines = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            if not raw.lstrip().startswith(marker):
                decode_utf8(raw, path.name, first_line=lineno)  # raises naming the line and column
            lines.append(raw.decode("latin-1"))
    return "\n".join(lines)


def _parse_swf_lines(path: Path, text: str) -> tuple[np.ndarray, dict]:
    """Return an (n, 18) float array of the job lines and the header fields."""
    header: dict[str, str] = {}
    rows = []
    name = path.name
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(";"):
            body = stripped[1:].strip()
            if ":" in body:
                key, _, value = body.partition(":")
                header[key.strip()] = value.strip()
            continue
        parts = stripped.split()
        if len(parts) != 18:
            raise HpclabError(f"{name}:{lineno}: expected 18 fields (SWF), got {len(parts)}")
        row = []
        for k, tok in enumerate(parts):
            try:
                v = float(tok)
            except ValueError:
                raise HpclabError(f"{name}:{lineno}: field {k + 1} ({SWF_FIELDS[k]}) must be a number, "
                                  f"got {tok!r}") from None
            if not math.isfinite(v):
                raise HpclabError(f"{name}:{lineno}: field {k + 1} ({SWF_FIELDS[k]}) must be finite, "
                                  f"got {tok!r}")
            if k in _USED and v < 0 and v != -1:
                raise HpclabError(f"{name}:{lineno}: field {k + 1} ({SWF_FIELDS[k]}) must be >= 0, or -1 "
                                  f"if unknown; got {tok!r}")
            if k in _HIGH and v > _HIGH[k]:
                raise HpclabError(f"{name}:{lineno}: field {k + 1} ({SWF_FIELDS[k]}) must be at most "
                                  f"{_bound_text(k)}, got {tok!r}")
            if k in _WHOLE and v != int(v):
                raise HpclabError(f"{name}:{lineno}: field {k + 1} ({SWF_FIELDS[k]}) must be a whole number, "
                                  f"got {tok!r}")
            row.append(v)
        rows.append(row)
    if not rows:
        raise HpclabError(f"{name}: empty trace (no job lines)")
    arr = np.array(rows, dtype=float).reshape(-1, 18)
    return arr, header


def _fast_parse(text: str) -> np.ndarray | None:
    """Parse well-formed SWF quickly with pandas; None if anything looks off (then the slow,
    line-numbered parser finds and reports the problem)."""
    import io

    try:
        df = pd.read_csv(io.StringIO(text), sep=r"\s+", comment=";", header=None, engine="c",
                         dtype=float, skip_blank_lines=True)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if df.shape[1] != 18:
        return None
    arr = df.to_numpy(dtype=float)
    if not np.all(np.isfinite(arr)):
        return None
    used = arr[:, _USED]
    whole = arr[:, _WHOLE]
    if np.any((used < 0) & (used != -1)) or np.any(whole != np.round(whole)):
        return None
    if np.any(arr[:, _HIGH_COLS] > _HIGH_VALS):
        return None
    return arr


def read_swf(path, *, procs_per_node: int = 1, kind: str = "hpc", keep_failed: bool = True,
             return_header: bool = False):
    """Read a Standard Workload Format trace into a job table (see :mod:`hpclab.platform.jobs`).

    Parameters
    ----------
    path : str or Path
        The ``.swf`` file.
    procs_per_node : int
        Processors per node: an HPC job asking ``p`` processors needs ``ceil(p / procs_per_node)``
        whole nodes (1 = one SWF processor is one node, as in the Lublin-Feitelson model).
    kind : str
        The job kind given to every job (``hpc``).
    keep_failed : bool
        Keep jobs whose status is failed (0) or cancelled (5) if they ran (run time >= 0).
    return_header : bool
        Also return the ``; Key: value`` header lines as a dict.

    Returns
    -------
    pandas.DataFrame (and dict)
        The job table. Size = requested processors (field 8), else allocated (field 5); requested
        time = field 9, else the run time (a perfect estimate). Jobs with no run time or no size
        (-1) cannot be replayed and are left out; ``df.attrs["skipped"]`` counts them.

    Raises
    ------
    HpclabError
        ``file:line: field k (name) must be a number, got 'x'`` for a malformed line (also: wrong
        field count, a negative value other than -1 in a field the reader uses, fractional
        processors); ``file: empty trace (no job lines)`` for a file with no job line.
    """
    path = Path(path)
    procs_per_node = check_range("procs_per_node", procs_per_node, 1, MAX_CORES, integer=True)
    text = _read_text(path, free_comments=";")
    arr = _fast_parse(text)
    arr_checked, header = _parse_swf_lines(path, text) if arr is None else (arr, _header(text))
    arr = arr_checked
    job, submit, run, alloc, reqp, reqt, status = (arr[:, 0], arr[:, 1], arr[:, 3], arr[:, 4], arr[:, 7],
                                                   arr[:, 8], arr[:, 10])
    procs = np.where(reqp > 0, reqp, alloc)
    ok = (run >= 0) & (procs > 0) & (submit >= 0)
    if not keep_failed:
        ok &= (status == 1) | (status == -1)
    skipped = int((~ok).sum())
    run_ok = run[ok]
    req = np.where(reqt[ok] > 0, reqt[ok], run_ok)
    df = pd.DataFrame({
        "job_id": job[ok].astype(np.int64),
        "kind": kind,
        "submit": submit[ok],
        "pods": np.ceil(procs[ok] / procs_per_node).astype(np.int64),
        "slots": 0,
        "run_time": run_ok,
        "req_time": req,
        "priority": 0,
    })
    if df["job_id"].duplicated().any():  # some archive logs restart numbering; keep them apart
        df["job_id"] = np.arange(1, len(df) + 1)
    df = check_jobs(df)
    df.attrs["skipped"] = skipped
    df.attrs["source"] = str(path)
    return (df, header) if return_header else df


def _header(text: str) -> dict:
    header = {}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(";") and ":" in s:
            key, _, value = s[1:].partition(":")
            header[key.strip()] = value.strip()
        elif s and not s.startswith(";"):
            break
    return header


def write_swf(jobs: pd.DataFrame, path, *, procs_per_node: int = 1, header: dict | None = None) -> Path:
    """Write HPC jobs of a job table as SWF (other kinds are left out; unknown fields are -1)."""
    df = check_jobs(jobs)
    df = df[df["kind"] == "hpc"]
    n = len(df)
    arr = -np.ones((n, 18))
    arr[:, 0] = df["job_id"].to_numpy()
    arr[:, 1] = df["submit"].to_numpy()
    arr[:, 3] = df["run_time"].to_numpy()
    arr[:, 4] = df["pods"].to_numpy() * procs_per_node
    arr[:, 7] = arr[:, 4]
    arr[:, 8] = df["req_time"].to_numpy()
    arr[:, 10] = 1
    lines = ["; Version: 2.2", "; Computer: hpclab synthetic", f"; MaxJobs: {n}", f"; MaxRecords: {n}"]
    for k, v in (header or {}).items():
        lines.append(f"; {k}: {v}")
    body = "\n".join(" ".join(_fmt(v) for v in row) for row in arr)
    path = Path(path)
    path.write_text("\n".join(lines) + "\n" + body + ("\n" if n else ""))
    return path


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


_CSV_REQUIRED = ("job_id", "submit", "kind", "pods", "slots", "run_time")
_CSV_INT = {"job_id", "pods", "slots", "priority"}
#: GPUs or cores of one pod: a pod runs on one node (the largest nodes have ~2,000 vCPUs)
MAX_SLOTS = 4096
#: the domain of each numeric column: (low, high, whole); submit, run and requested times up to
#: 10 years, pods up to 10^7, priorities within +-10^9
_CSV_DOMAIN = {"job_id": (0, MAX_TASKS, True), "submit": (0, MAX_SECONDS, False),
               "pods": (1, MAX_INSTANCES, True), "slots": (0, MAX_SLOTS, True),
               "run_time": (0, MAX_SECONDS, False), "req_time": (0, MAX_SECONDS, False),
               "priority": (-MAX_TASKS, MAX_TASKS, True)}


def read_gpu_csv(path) -> pd.DataFrame:
    """Read a GPU job trace in the simple CSV form (see the module docstring).

    Domains: ``job_id`` a whole number in [0, 10^9]; ``submit``, ``run_time``, ``req_time`` in
    [0, 10 years] s; ``pods`` in [1, 10^7]; ``slots`` in [1, 4096] for train, infer and data
    jobs (0 for hpc); ``priority`` a whole number within +-10^9. Strict UTF-8.

    Raises
    ------
    HpclabError
        ``file:line: column 'pods' must be a whole number, got 'x'`` for a malformed line.
    """
    import io

    path = Path(path)
    name = path.name
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    cols: dict[str, list] = {}
    try:
        rows = list(enumerate(reader, start=1))
    except csv.Error as exc:
        raise HpclabError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None
    for lineno, row in rows:
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip() for h in row]
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated:
                raise HpclabError(f"{name}:{lineno}: header repeats column(s) {', '.join(map(repr, repeated))}")
            missing = [c for c in _CSV_REQUIRED if c not in header]
            if missing:
                raise HpclabError(f"{name}:{lineno}: header lacks column(s) {', '.join(missing)}; "
                                  f"need {', '.join(_CSV_REQUIRED)} (+ req_time, priority)")
            cols = {h: [] for h in header}
            continue
        if len(row) != len(header):
            raise HpclabError(f"{name}:{lineno}: expected {len(header)} columns, got {len(row)}")
        kind = None
        for h, tok in zip(header, row):
            tok = tok.strip()
            if h == "kind":
                if tok not in ("train", "infer", "data", "hpc"):
                    raise HpclabError(f"{name}:{lineno}: column 'kind' must be one of train, infer, "
                                      f"data, hpc; got {tok!r}")
                kind = tok
                cols[h].append(tok)
                continue
            if h not in JOB_COLUMNS:
                cols[h].append(tok)
                continue
            low, high, whole = _CSV_DOMAIN[h]
            what = "a whole number" if whole else "a number"
            try:
                v = float(tok)
            except ValueError:
                raise HpclabError(f"{name}:{lineno}: column {h!r} must be {what} in "
                                  f"[{low:,}, {high:,.0f}], got {tok!r}") from None
            if not math.isfinite(v) or not low <= v <= high or (whole and v != int(v)):
                raise HpclabError(f"{name}:{lineno}: column {h!r} must be {what} in "
                                  f"[{low:,}, {high:,.0f}], got {tok!r}")
            cols[h].append(v)
        if kind != "hpc" and cols["slots"][-1] < 1:
            raise HpclabError(f"{name}:{lineno}: column 'slots' must be >= 1 (GPUs or cores per pod) "
                              f"for a {kind} job, got {cols['slots'][-1]:g}")
    if header is None:
        raise HpclabError(f"{name}: empty trace (no header line)")
    df = pd.DataFrame(cols)
    if "req_time" not in df:
        df["req_time"] = df["run_time"]
    if "priority" not in df:
        df["priority"] = 0
    df = check_jobs(df)
    df.attrs["source"] = str(path)
    return df


def write_gpu_csv(jobs: pd.DataFrame, path) -> Path:
    """Write the AI jobs (train, infer, data) of a job table in the GPU CSV form."""
    df = check_jobs(jobs)
    df = df[df["kind"] != "hpc"]
    path = Path(path)
    df.loc[:, list(JOB_COLUMNS)].to_csv(path, index=False, float_format="%.3f")
    return path


def read_trace(path, **kwargs) -> pd.DataFrame:
    """Read ``.swf`` or ``.csv`` by its suffix."""
    path = Path(path)
    if path.suffix.lower() == ".swf":
        return read_swf(path, **kwargs)
    if path.suffix.lower() == ".csv":
        return read_gpu_csv(path)
    raise HpclabError(f"trace must be a .swf or .csv file, got {path.name!r}")


def sample_traces() -> dict:
    """The traces shipped in ``data/traces/`` (generated with ``hpclab platform generate``):
    ``{file name: Path}``."""
    from hpclab._paths import data_dir

    folder = data_dir() / "traces"
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix in (".swf", ".csv")}
