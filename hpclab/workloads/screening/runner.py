"""Run a screen in batches on any Dask cluster, writing each batch as it finishes.

The library is cut into batches of ``batch_size`` molecules, one Dask task each. As a batch
finishes, the client writes ``<out>/batches/batch-NNNNNN.parquet`` (to a temporary name, then an
atomic ``os.replace``), so a file that exists is complete. Run again with the same ``out`` and the
finished batches are read back, not recomputed; ``<out>/manifest.json`` records the library's
fingerprint and the parameters, and a resume that does not match them is refused.

Integrity: for each finished batch the manifest's batch table ``<out>/batches.jsonl`` (one JSON
line per batch, appended after the batch file is in place, so it costs the same for the 1st and
the 10,000th batch) records the SHA-256 of its file, its row count, the slice of the library it
covers (``[lo, hi)``) and the hpclab and RDKit versions that computed it; a torn last line is
ignored (that batch is recomputed). A resume verifies every batch against its record
and recomputes any that is missing from the manifest, whose file is missing, truncated, altered
(checksum, rows or molecule ids differ) or unreadable, or that another hpclab or RDKit version
computed; it says so in one line (logged, and in ``RunStats.recomputed``).

A batch whose worker dies (a preempted spot instance, a killed process) is rescheduled by the
Dask scheduler; if the scheduler gives up on it (``KilledWorker``) or the result is lost, the
runner submits it again, up to ``max_attempts`` times. No molecule is lost or counted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hpclab._validate import HpclabError, check_positive, check_writable_folder
from hpclab.workloads.screening.library import library_fingerprint, load_library
from hpclab.workloads.screening.pipeline import STAGES, ScreenParams, screen_batch

__all__ = ["run_screen", "screen", "RunStats", "to_dataset", "local_client"]

_MANIFEST_VERSION = 2
_RECORDS = "batches.jsonl"  # the manifest's table of finished batches
_log = logging.getLogger("hpclab.screening")


@dataclass
class RunStats:
    """What one call of :func:`run_screen` did (batches are indices into the library's batches)."""

    n_batches: int = 0
    computed: list[int] = field(default_factory=list)  # batches computed by this call
    skipped: list[int] = field(default_factory=list)  # finished earlier, read back
    resubmitted: list[int] = field(default_factory=list)  # failed attempts submitted again
    recomputed: dict[int, str] = field(default_factory=dict)  # found damaged in out: why
    wall_seconds: float = 0.0
    n_workers: int = 0


@contextmanager
def local_client(n_workers: int = 2, *, processes: bool = True):
    """A ``distributed.Client`` on a fresh ``LocalCluster`` bound to 127.0.0.1, closed on exit."""
    from distributed import Client, LocalCluster

    n_workers = check_positive("workers", n_workers, integer=True)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _batch_path(out: Path, index: int) -> Path:
    return out / "batches" / f"batch-{index:06d}.parquet"


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    """The versions that make a batch's numbers: hpclab's and RDKit's."""
    from rdkit import __version__ as rdkit_version

    from hpclab import __version__

    return {"hpclab": __version__, "rdkit": rdkit_version}


def _prepare_out(out: Path, manifest: dict) -> dict:
    """Create or check ``out``; return the manifest's batch records (``{index: record}``)."""
    check_writable_folder("out", out)
    check_writable_folder("out", out / "batches")
    path = out / "manifest.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError
        except (OSError, ValueError):
            raise HpclabError(f"out {out} has an unreadable manifest.json; use a new folder") from None
        for key in ("library_fingerprint", "n_molecules", "batch_size", "params"):
            if old.get(key) != manifest[key]:
                raise HpclabError(f"out {out} holds a different screen ({key} differs: "
                                  f"{old.get(key)!r} there, {manifest[key]!r} now); use a new folder "
                                  "or remove it")
    _write_json_atomic(dict(manifest, batch_records=_RECORDS), path)
    records: dict = {}
    table = out / _RECORDS
    if table.exists():
        for line in table.read_bytes().splitlines():
            try:
                rec = json.loads(line)
                records[int(rec["index"])] = rec  # a later line (a recomputed batch) wins
            except (ValueError, KeyError, TypeError):
                continue  # a torn or edited line: its batch fails verification
    for stale in (out / "batches").glob(".*.tmp"):  # a write interrupted before its rename
        stale.unlink(missing_ok=True)
    return records


def _verify_batch(path: Path, record: dict | None, lo: int, hi: int, ids: list, versions: dict):
    """The stored batch as a frame if it is intact and current, else ``(None, reason)``."""
    if record is None:
        return None, "not in the manifest"
    if not path.exists():
        return None, "file missing"
    if record.get("slice") != [lo, hi]:
        return None, f"covers {record.get('slice')}, expected [{lo}, {hi}]"
    for name, version in versions.items():
        if record.get(name) != version:
            return None, f"computed by {name} {record.get(name)}, this is {version}"
    intact = _sha256(path) == record.get("sha256")
    size = path.stat().st_size
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged file vary
        damage = "truncated" if size < record.get("bytes", 0) else "damaged"
        return None, f"{damage} ({size:,} of {record.get('bytes', 0):,} bytes; unreadable: {type(exc).__name__})"
    if len(frame) != hi - lo or record.get("rows") != hi - lo:
        return None, f"altered ({len(frame)} rows for {hi - lo} molecules)"
    if "id" not in frame or frame["id"].tolist() != ids[lo:hi]:
        return None, "altered (molecule ids differ from the library slice)"
    if not intact:
        return None, "altered (checksum differs from the manifest)"
    return frame, None


class _Manifest:
    """Appends one finished batch's record to the manifest's batch table (after its file is in
    place)."""

    def __init__(self, out: Path, versions: dict):
        self.path = out / _RECORDS
        self.versions = versions

    def add(self, index: int, path: Path, lo: int, hi: int) -> None:
        rec = {"index": index, "file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size,
               "rows": hi - lo, "slice": [lo, hi], **self.versions}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def run_screen(molecules: pd.DataFrame, params: ScreenParams | None = None, *, out=None,
               client=None, workers: int = 2, batch_size: int = 100, progress: bool = True,
               max_attempts: int = 4, on_batch=None) -> xr.Dataset:
    """Screen ``molecules`` in batches on a Dask cluster; resumable when ``out`` is given.

    Parameters
    ----------
    molecules : pandas.DataFrame
        Columns ``id``, ``smiles``, ``is_active`` (see :func:`~.library.load_library`).
    params : ScreenParams, optional
        The pipeline's parameters (default ``ScreenParams()``: CDK2).
    out : path, optional
        Folder for ``manifest.json`` and one Parquet file per batch. Finished batches found there
        are not recomputed. None keeps results in memory only.
    client : distributed.Client, optional
        Any Dask client (an :class:`hpclab.elastic.ElasticPool`'s, a remote scheduler's). None
        starts a ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1 and
        closes it at the end.
    workers : int
        Workers of the LocalCluster started when ``client`` is None.
    batch_size : int
        Molecules per task.
    progress : bool
        Show a tqdm progress bar (molecules).
    max_attempts : int
        Submissions of one batch before its error is raised (worker loss, lost result).
    on_batch : callable, optional
        ``on_batch(index, frame, client)`` after each batch is stored; an exception raised there
        stops the run (what an interruption does), leaving every stored batch in place.

    Returns
    -------
    xarray.Dataset
        One entry per molecule (dim ``molecule``), see :func:`to_dataset`; ``attrs["run"]`` holds
        this call's :class:`RunStats` as JSON.
    """
    params = params or ScreenParams()
    if not isinstance(params, ScreenParams):
        raise HpclabError(f"params must be a ScreenParams, got {type(params).__name__}")
    missing = {"id", "smiles", "is_active"} - set(molecules.columns)
    if missing:
        raise HpclabError(f"molecules must have columns id, smiles, is_active; missing "
                          f"{', '.join(sorted(missing))}")
    if len(molecules) == 0:
        raise HpclabError("molecules must not be empty")
    if out is not None and not str(out).strip():
        raise HpclabError("out must name a folder, got ''")
    batch_size = check_positive("batch_size", batch_size, integer=True)
    max_attempts = check_positive("max_attempts", max_attempts, integer=True)
    molecules = molecules.reset_index(drop=True)
    n = len(molecules)
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    stats = RunStats(n_batches=len(bounds))
    fingerprint = library_fingerprint(molecules)
    frames: dict[int, pd.DataFrame] = {}
    out_path = Path(out) if out is not None else None
    manifest = None
    if out_path is not None:
        versions = _versions()
        records = _prepare_out(out_path, {"version": _MANIFEST_VERSION, "library_fingerprint": fingerprint,
                                          "n_molecules": n, "batch_size": batch_size,
                                          "params": params.as_dict()})
        ids = molecules["id"].tolist()
        manifest = _Manifest(out_path, versions)
        for index, (lo, hi) in enumerate(bounds):
            path = _batch_path(out_path, index)
            if not path.exists() and index not in records:
                continue  # not run yet
            frame, why = _verify_batch(path, records.get(index), lo, hi, ids, versions)
            if frame is None:
                stats.recomputed[index] = why
            else:
                frames[index] = frame
                stats.skipped.append(index)
        if stats.recomputed:
            _log.warning(recompute_line(out_path, stats.recomputed))
    todo = [i for i in range(len(bounds)) if i not in frames]
    t_start = time.perf_counter()
    if todo:
        if client is None:
            with local_client(workers) as own:
                _compute(own, molecules, bounds, todo, params, frames, stats, out_path, progress,
                         max_attempts, on_batch, fingerprint, manifest)
        else:
            _compute(client, molecules, bounds, todo, params, frames, stats, out_path, progress,
                     max_attempts, on_batch, fingerprint, manifest)
    stats.wall_seconds = time.perf_counter() - t_start
    table = pd.concat([frames[i] for i in range(len(bounds))], ignore_index=True)
    return to_dataset(table, params, stats, fingerprint)


def recompute_line(out, recomputed: dict) -> str:
    """One line saying which stored batches were found damaged or stale, and why."""
    shown = "; ".join(f"{i} {why}" for i, why in sorted(recomputed.items())[:5])
    more = f"; {len(recomputed) - 5} more" if len(recomputed) > 5 else ""
    return (f"{out}: recomputing {len(recomputed)} stored batch(es) that failed verification: "
            f"{shown}{more}")


def _compute(client, molecules, bounds, todo, params, frames, stats, out_path, progress,
             max_attempts, on_batch, fingerprint, manifest=None) -> None:
    from distributed import as_completed

    stats.n_workers = len(client.scheduler_info().get("workers", {}))
    ids = molecules["id"].tolist()
    smiles = molecules["smiles"].tolist()
    active = molecules["is_active"].astype(bool).tolist()

    def submit(index: int, attempt: int):
        lo, hi = bounds[index]
        fut = client.submit(screen_batch, ids[lo:hi], smiles[lo:hi], active[lo:hi], params,
                            key=f"screen-{fingerprint}-{index:06d}-a{attempt}", pure=False)
        owner[fut.key] = (index, attempt)
        return fut

    owner: dict[str, tuple[int, int]] = {}
    futures = [submit(i, 0) for i in todo]
    pending = as_completed(futures)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        done_mols = sum(len(f) for f in frames.values())
        bar = tqdm(total=len(molecules), initial=done_mols, unit="mol", desc="screen", leave=False)
    try:
        for fut in pending:
            index, attempt = owner.pop(fut.key)
            try:
                frame = fut.result()
            except Exception as exc:  # noqa: BLE001 - worker lost, KilledWorker, lost data ...
                if attempt + 1 >= max_attempts:
                    raise HpclabError(f"batch {index} failed {max_attempts} times; last error: "
                                      f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
                stats.resubmitted.append(index)
                pending.add(submit(index, attempt + 1))
                continue
            finally:
                fut.release()
            lo, hi = bounds[index]
            if len(frame) != hi - lo or list(frame["id"]) != ids[lo:hi]:
                raise HpclabError(f"batch {index} returned {len(frame)} rows for {hi - lo} molecules")
            frame.insert(1, "batch", index)
            if out_path is not None:
                path = _batch_path(out_path, index)
                _write_atomic(frame, path)
                manifest.add(index, path, lo, hi)
            frames[index] = frame
            stats.computed.append(index)
            if bar is not None:
                bar.update(len(frame))
            if on_batch is not None:
                on_batch(index, frame, client)
    finally:
        if bar is not None:
            bar.close()
        remaining = [f for f in pending.futures] if hasattr(pending, "futures") else []
        if remaining:
            client.cancel(remaining)


_UNITS = {"t_prepare": "s", "t_filter": "s", "t_2d": "s", "t_3d": "s", "finished_at": "s",
          "mw": "Da", "tpsa": "Å²", "logp": "1", "score_2d": "1", "score_3d": "1", "shape_3d": "1"}
_DESCRIPTIONS = {
    "score_2d": "max Tanimoto similarity (Morgan) to the reference actives",
    "score_3d": "best O3A overlay score on the reference pose (3D survivors only)",
    "shape_3d": "shape Tanimoto of that overlay",
    "to_3d": "passed the filters and the 2D threshold, sent to the 3D stage",
    "finished_at": "Unix time the molecule finished",
}


def to_dataset(table: pd.DataFrame, params: ScreenParams, stats: RunStats | None = None,
               fingerprint: str = "") -> xr.Dataset:
    """The per-molecule table as a Dataset: dim ``molecule`` (coordinate ``id``), units in attrs."""
    table = table.reset_index(drop=True)
    data = {}
    for col in table.columns:
        if col == "id":
            continue
        values = table[col].to_numpy()
        if values.dtype.kind in "OUT" or str(table[col].dtype) in ("string", "str"):
            values = table[col].astype(object).to_numpy()
        attrs = {}
        if col in _UNITS:
            attrs["units"] = _UNITS[col]
        if col in _DESCRIPTIONS:
            attrs["description"] = _DESCRIPTIONS[col]
        if col.startswith("t_"):
            attrs["description"] = f"wall time of stage '{col[2:]}' for the molecule (NaN: not run)"
        data[col] = ("molecule", values, attrs)
    ds = xr.Dataset(data, coords={"molecule": np.arange(len(table)),
                                  "id": ("molecule", table["id"].astype(object).to_numpy())})
    status = table["status"].astype(str)
    ds.attrs.update({
        "title": f"virtual screen against {params.target}",
        "target": params.target,
        "params": json.dumps(params.as_dict()),
        "stages": ",".join(STAGES),
        "library_fingerprint": fingerprint,
        "n_molecules": int(len(table)),
        "n_invalid_smiles": int((status == "invalid_smiles").sum()),
        "n_embed_failed": int((status == "embed_failed").sum()),
        "n_3d": int(table["to_3d"].sum()),
        "n_actives": int(table["is_active"].sum()),
    })
    if stats is not None:
        ds.attrs["run"] = json.dumps({"n_batches": stats.n_batches, "computed": stats.computed,
                                      "skipped": stats.skipped, "resubmitted": stats.resubmitted,
                                      "recomputed": {str(k): v for k, v in stats.recomputed.items()},
                                      "wall_seconds": stats.wall_seconds,
                                      "n_workers": stats.n_workers})
    return ds


def screen(library: str = "nci5k", target: str = "cdk2", *, size: int | None = None, seed: int = 0,
           out=None, client=None, workers: int = 2, batch_size: int = 100, progress: bool = True,
           extra_smiles=None, **params) -> xr.Dataset:
    """Load a library with the target's hidden actives and screen it (see :func:`run_screen`).

    ``size`` keeps a seeded random subset of the library (all hidden actives stay); other keyword
    arguments are :class:`~.pipeline.ScreenParams` fields.

    Examples
    --------
    >>> ds = screen("nci5k", "cdk2", size=200, workers=1, progress=False)  # doctest: +SKIP
    >>> float(ds.score_2d.max()) <= 1.0  # doctest: +SKIP
    True
    """
    p = ScreenParams(target=target, **params)
    mols = load_library(library, target, size=size, n_queries=p.n_queries, seed=seed,
                        extra_smiles=extra_smiles)
    return run_screen(mols, p, out=out, client=client, workers=workers, batch_size=batch_size,
                      progress=progress)
