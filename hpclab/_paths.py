"""Where hpclab's shipped data lives (the repository's ``data/``, or ``hpclab/_data`` in a wheel)."""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "data", here / "_data"):
        if (candidate / "catalog").is_dir():
            return candidate
    raise FileNotFoundError(f"hpclab data folder not found beside {here} (expected data/catalog)")
