"""Cheap checks of the command line, done before anything heavy starts.

Each numeric option has a domain stated next to it (``BOUNDS`` in each subcommand module); a
value outside gets one line naming the option, the value and the range. Addresses of Dask
schedulers are parsed and a TCP connection is tried (a few seconds at most) before a
``distributed.Client`` is made, so a wrong address fails fast instead of after Dask's 30 s.
"""

from __future__ import annotations

from pathlib import Path

from hpclab._validate import HpclabError, check_range
from hpclab.elastic._address import CONNECT_TIMEOUT, check_scheduler

__all__ = ["check_bounds", "check_scheduler", "check_writable_file", "print_json", "SEED_MAX",
           "CONNECT_TIMEOUT"]

#: seeds: any whole number numpy's generators take
SEED_MAX = 2**63 - 1


def check_bounds(args, bounds: dict) -> None:
    """``bounds``: option dest -> ``(low, high, integer)`` or ``(low, high, integer, low_open)``;
    options left at None are skipped."""
    for dest, spec in bounds.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        low, high, integer, *rest = spec
        setattr(args, dest, check_range(f"--{dest.replace('_', '-')}", value, low, high,
                                        integer=integer, low_open=bool(rest and rest[0])))


def check_writable_file(field: str, path) -> Path:
    """Refuse an output file path that cannot be written, before any work: an empty name, a
    folder, a missing or read-only parent folder, a device that is full (``/dev/full``)."""
    text = str(path)
    if not text.strip():
        raise HpclabError(f"{field} must be a file name, got {text!r}")
    p = Path(text)
    if p.is_dir():
        raise HpclabError(f"{field} {text!r} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise HpclabError(f"{field} {text!r}: folder {str(parent)!r} does not exist")
    existed = p.exists()
    try:
        if existed and p.is_char_device():  # /dev/full takes an open but not a byte
            with open(p, "wb", buffering=0) as fh:
                fh.write(b"\n")
        else:
            with open(p, "ab"):  # append: an existing file is not truncated by the check
                pass
    except OSError as exc:
        raise HpclabError(f"{field} {text!r} is not writable ({exc.strerror or type(exc).__name__})") from None
    finally:
        if not existed and p.is_file() and p.stat().st_size == 0:
            p.unlink(missing_ok=True)
    return p


def _plain(v):
    import math

    import numpy as np
    import pandas as pd

    if isinstance(v, pd.DataFrame):
        return [{str(k): _plain(x) for k, x in row.items()} for row in v.reset_index().to_dict("records")]
    if isinstance(v, pd.Series):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def print_json(obj) -> int:
    """Print ``obj`` (dicts, lists, DataFrames, numpy scalars) as JSON (what every ``--json`` of
    the command line prints: NaN and inf as null) and return 0."""
    import json

    print(json.dumps(_plain(obj), indent=2))
    return 0
