"""The user's cache of measured and fitted numbers: one folder, JSON files written atomically.

``$HPCLAB_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hpclab``, else ``~/.cache/hpclab``. Files
are plain JSON (never pickle); a write goes to a temporary file renamed into place, and a folder
that cannot be written leaves the number uncached (measured or fitted again next time).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["cache_root", "write_json"]


def cache_root() -> Path:
    explicit = os.environ.get("HPCLAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hpclab"


def write_json(path: Path, doc) -> bool:
    """Write ``doc`` as JSON to ``path`` atomically; False if the folder cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, path)
    except OSError:
        return False
    return True
