"""Input checks shared by every layer: one clear line naming the field and what is allowed.

Every user-facing error in hpclab is an :class:`HpclabError` (a ``ValueError``) whose message
is a single line; the CLI prints it and exits 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["HpclabError", "check_writable_folder", "check_choice", "check_positive", "check_nonnegative", "check_finite_array",
           "check_range", "decode_utf8", "show_key", "is_finite", "MAX_RANKS", "MAX_GPUS", "MAX_NBYTES", "MAX_CORES", "MAX_TASKS",
           "MAX_SECONDS", "MAX_INSTANCES"]

# Bounds of the inputs: what a real system could reach, with headroom (docs/bounds.md). A value
# beyond one is a typo or an attack, not a study, and would make a model overflow or a loop hang.
#: ranks of a collective, GPUs of a training run
MAX_RANKS = MAX_GPUS = 10**7
#: message, checkpoint or file sizes: 1 PiB
MAX_NBYTES = 2**50
#: cores of a pool or a cluster
MAX_CORES = 10**8
#: tasks of a campaign, jobs of a trace, molecules of a screen
MAX_TASKS = 10**9
#: instances (nodes, pods) of one pool or one job
MAX_INSTANCES = 10**7
#: durations and times (run times, deadlines, horizons, submit times): 10 years in seconds
MAX_SECONDS = 10 * 365.25 * 86400.0


class HpclabError(ValueError):
    """Bad input to hpclab: the message is one line naming the field and the allowed values."""


def show_key(key) -> str:
    """A file's key as an error names it: as written if it is plain printable text, else its
    ``repr`` (so that a key holding a newline or a tab keeps the message on one line)."""
    return key if isinstance(key, str) and key and key.isprintable() and key.strip() == key else repr(key)


def check_choice(field: str, value, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise HpclabError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """``math.isfinite`` that says False for an int too large for a float (instead of raising)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_positive(field: str, value, *, integer: bool = False):
    """Return ``value`` if it is a finite number > 0 (an integer if asked), else raise."""
    if not _is_number(value) or not is_finite(value) or value <= 0:
        raise HpclabError(f"{field} must be a finite number > 0, got {_fmt(value)}")
    if integer and int(value) != value:
        raise HpclabError(f"{field} must be a whole number > 0, got {value!r}")
    return int(value) if integer else value


def check_nonnegative(field: str, value, *, integer: bool = False):
    if not _is_number(value) or not is_finite(value) or value < 0:
        raise HpclabError(f"{field} must be a finite number >= 0, got {_fmt(value)}")
    if integer and int(value) != value:
        raise HpclabError(f"{field} must be a whole number >= 0, got {value!r}")
    return int(value) if integer else value


def check_finite_array(field: str, values, *, minimum: float | None = None, strict: bool = True,
                       integer: bool = False, maximum: float | None = None) -> np.ndarray:
    """Coerce ``values`` to a float array and check it is finite (and > or >= ``minimum``, and
    <= ``maximum``)."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise HpclabError(f"{field} must be numeric, got {values!r}") from None
    if arr.size == 0:
        raise HpclabError(f"{field} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise HpclabError(f"{field} must be finite (no NaN or inf), got {values!r}")
    if minimum is not None:
        bad = arr <= minimum if strict else arr < minimum
        if np.any(bad):
            op = ">" if strict else ">="
            raise HpclabError(f"{field} must be {op} {minimum:g}, got {arr[bad].flat[0]:g}")
    if maximum is not None and np.any(arr > maximum):
        raise HpclabError(f"{field} must be <= {_fmt(maximum)}, got {arr[arr > maximum].flat[0]:g}")
    if integer and np.any(arr != np.round(arr)):
        raise HpclabError(f"{field} must be whole numbers, got {arr[arr != np.round(arr)].flat[0]:g}")
    return arr


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        v = int(value)
        if abs(v) < 10**19:
            return f"{v:,}"
        try:
            return f"{float(v):.3g}"
        except OverflowError:  # too large for a float: the same form, rounded, in decimal
            from decimal import Decimal

            mantissa, exponent = f"{Decimal(v):.2e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{float(value):.6g}"
    return repr(value)


def check_range(field: str, value, low, high, *, integer: bool = False, low_open: bool = False):
    """Return ``value`` if it is a finite number in ``[low, high]`` (``(low, high]`` when
    ``low_open``), a whole one if ``integer`` (returned as ``int``); else one line naming the
    field, the value and the range: ``ranks must be a whole number in [1, 10,000,000], got 1e+300``.
    """
    kind = "a whole number" if integer else "a number"
    span = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}]"
    if isinstance(value, str):
        try:
            value = float(value) if not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise HpclabError(f"{field} must be {kind} in {span}, got {value!r}") from None
    if not _is_number(value):
        raise HpclabError(f"{field} must be {kind} in {span}, got {value!r}")
    finite = is_finite(value)
    if not finite or value > high or value < low or (low_open and value == low):
        shown = repr(value) if isinstance(value, float) and not math.isfinite(value) else _fmt(value)
        raise HpclabError(f"{field} must be {kind} in {span}, got {shown}")
    if integer:
        if int(value) != value:
            raise HpclabError(f"{field} must be {kind} in {span}, got {value!r}")
        return int(value)
    return value


def decode_utf8(data: bytes, source: str, *, first_line: int = 1) -> str:
    """Decode ``data`` as strict UTF-8 (a leading BOM is dropped); a bad byte raises one line
    naming ``source``, the line and the column: ``user.yaml:4: not UTF-8 text (byte 0xe9 at
    column 12); save the file as UTF-8``. ``first_line`` is the number of the data's first line
    in the file (when decoding one line of it)."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise HpclabError(f"{source}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
                          f"{column}); save the file as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


def check_writable_folder(field: str, path):
    """Create the folder ``path`` if needed and check that a file can be written in it, before
    any work; else one line naming ``field``. Returns it as a ``Path``."""
    import os
    from pathlib import Path

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HpclabError(f"{field} must be a writable folder, got {str(path)!r} "
                          f"({exc.strerror or type(exc).__name__})") from None
    return folder
