"""Input checks shared by every layer: one clear line naming the field and what is allowed.

Every user-facing error in hpclab is an :class:`HpclabError` (a ``ValueError``) whose message
is a single line; the CLI prints it and exits 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["HpclabError", "check_choice", "check_positive", "check_nonnegative", "check_finite_array"]


class HpclabError(ValueError):
    """Bad input to hpclab: the message is one line naming the field and the allowed values."""


def check_choice(field: str, value, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise HpclabError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_positive(field: str, value, *, integer: bool = False):
    """Return ``value`` if it is a finite number > 0 (an integer if asked), else raise."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise HpclabError(f"{field} must be a finite number > 0, got {value!r}")
    if integer and int(value) != value:
        raise HpclabError(f"{field} must be a whole number > 0, got {value!r}")
    return int(value) if integer else value


def check_nonnegative(field: str, value, *, integer: bool = False):
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise HpclabError(f"{field} must be a finite number >= 0, got {value!r}")
    if integer and int(value) != value:
        raise HpclabError(f"{field} must be a whole number >= 0, got {value!r}")
    return int(value) if integer else value


def check_finite_array(field: str, values, *, minimum: float | None = None, strict: bool = True,
                       integer: bool = False) -> np.ndarray:
    """Coerce ``values`` to a float array and check it is finite (and > or >= ``minimum``)."""
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
    if integer and np.any(arr != np.round(arr)):
        raise HpclabError(f"{field} must be whole numbers, got {arr[arr != np.round(arr)].flat[0]:g}")
    return arr
