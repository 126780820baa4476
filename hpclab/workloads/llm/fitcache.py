"""Fitted numbers, fitted once: a JSON cache keyed by a hash of what they were fitted on.

A fit (the matrix-multiply efficiency curve of :mod:`hpclab.workloads.llm.validation`) depends on
the published rows it is fitted on and on the code and catalog that predict them. :func:`cached`
hashes all of that (the bytes of the data files and of the model's source files, plus a
description of the fit) with SHA-256 and stores the fitted numbers as JSON under
``$XDG_CACHE_HOME/hpclab/fits/`` (``~/.cache/hpclab/fits/`` by default; ``HPCLAB_CACHE_DIR``
overrides the folder). A warm cache is read without fitting; a changed row, catalog figure or
model formula gives a new key, so a stale number is never used. The format is plain JSON of
named floats (never pickle): a damaged or foreign file is ignored and refitted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from hpclab._cache import cache_root, write_json

__all__ = ["cache_dir", "cached", "fingerprint"]


def cache_dir() -> Path:
    """Where fitted numbers are kept: ``$HPCLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpclab/fits``,
    else ``~/.cache/hpclab/fits`` (:mod:`hpclab._cache`)."""
    root = cache_root()
    return root if os.environ.get("HPCLAB_CACHE_DIR") else root / "fits"


def fingerprint(files, extra: str = "") -> str:
    """SHA-256 over the names and bytes of ``files`` (sorted) and an ``extra`` description."""
    h = hashlib.sha256(extra.encode())
    for f in sorted(Path(p) for p in files):
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _read(path: Path, names) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    values = doc.get("values") if isinstance(doc, dict) else None
    if not isinstance(values, dict) or set(values) != set(names):
        return None
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()):
        return None
    return {k: float(values[k]) for k in names}


def cached(name: str, key: str, names, fit) -> dict:
    """The named floats ``fit()`` returns, read from the cache when ``key`` was fitted before.

    ``names`` lists the fitted numbers (a file with other names is refitted); ``fit`` is called
    only on a cold cache. Writing is atomic (a temporary file renamed into place); a cache folder
    that cannot be written leaves the fit uncached but correct.
    """
    names = list(names)
    path = cache_dir() / f"{name}-{key[:32]}.json"
    hit = _read(path, names)
    if hit is not None:
        return hit
    values = {k: float(v) for k, v in fit().items()}
    write_json(path, {"name": name, "key": key, "values": values})
    return values
