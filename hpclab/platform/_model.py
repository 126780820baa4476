"""The platform model's parameters, read from ``data/traces/platform_model.yaml``.

Each figure there has a unit and a source; this module turns them into plain floats in SI base
units (seconds, bytes) for the generators and the scheduler.
"""

from __future__ import annotations

from functools import lru_cache

from hpclab._paths import data_dir
from hpclab._validate import HpclabError
from hpclab._yaml import load_yaml

_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "B": 1.0, "KiB": 1024.0, "MiB": 1024.0 ** 2,
          "GiB": 1024.0 ** 3, "1": 1.0, "count": 1.0, "GPU": 1.0, "host": 1.0, "switch": 1.0,
          "ln(s)": 1.0, "bucket": 1.0, "log2(nodes)": 1.0}


def model_path():
    return data_dir() / "traces" / "platform_model.yaml"


@lru_cache(maxsize=1)
def model() -> dict:
    """The parsed parameter file (cached)."""
    path = model_path()
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise HpclabError(f"{path}: expected a mapping of sections")
    return doc


def figure(*keys: str) -> float:
    """One figure in SI base units: ``figure("segments", "oversubscription_cpu")``."""
    node = model()
    for k in keys:
        node = node[k]
    if isinstance(node, dict):
        unit = str(node.get("unit", "1"))
        if unit not in _UNITS:
            raise HpclabError(f"{model_path()}: {'.'.join(keys)} has unit {unit!r}; allowed: "
                              f"{', '.join(_UNITS)}")
        return float(node["value"]) * _UNITS[unit]
    return float(node)


def source(section: str) -> str:
    """The source text of a section (resolving ``@name`` references)."""
    doc = model()
    ref = doc[section].get("source", "") if isinstance(doc[section], dict) else ""
    if isinstance(ref, str) and ref.startswith("@"):
        return str(doc["sources"][ref[1:]])
    return str(ref)
