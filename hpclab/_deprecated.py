"""Old names kept importable for one release (0.1 -> 0.2), each warning once per call site.

An alias made here is a thin wrapper: it warns ``DeprecationWarning`` (``stacklevel=2``, so the
warning names the caller) and calls the new name. Every alias is listed in :data:`ALIASES`
(``(module, old name, new name)``), which ``tests/test_names.py`` checks: each one warns, and no
module of hpclab, notebook, benchmark or test uses one. The verbs' one meaning each is in
``docs/glossary.md``.
"""

from __future__ import annotations

import functools
import warnings

__all__ = ["deprecated", "warn", "ALIASES"]

#: (module, old name, new name) of every deprecated alias
ALIASES: list[tuple[str, str, str]] = [("hpclab.report", "Report.summary",
                                        "hpclab.report.Report.status_text")]

_SINCE = "deprecated since hpclab 0.1"


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (``stacklevel`` 3: the caller of
    the function that calls this)."""
    warnings.warn(f"{old} is {_SINCE} and goes in 0.2; use {new}", DeprecationWarning,
                  stacklevel=stacklevel)


def deprecated(module: str, old: str, new: str, func):
    """``func`` under its old name ``old`` in ``module``: warns, then calls ``func``."""
    ALIASES.append((module, old, new))

    @functools.wraps(func)
    def alias(*args, **kwargs):
        warn(f"{module}.{old}", new)
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :func:`{new}` (goes in 0.2)."
    alias.__hpclab_deprecated__ = new
    return alias
