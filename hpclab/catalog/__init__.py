"""Facts about the cloud: instance types, fabrics, storage, zones, generations, reliability.

>>> from hpclab import catalog
>>> cat = catalog.load()
>>> cat.fabric("erdma").scope
'inter-node'
"""

from hpclab.catalog._load import Catalog, CatalogError, UnknownNameError, default_paths, load
from hpclab.catalog._schema import (Figure, FabricSpec, Generation, InstanceType, Reliability, Storage,
                                    Zone)
from hpclab.catalog._units import parse_size

__all__ = ["Catalog", "CatalogError", "UnknownNameError", "load", "default_paths", "Figure",
           "FabricSpec", "Generation", "InstanceType", "Reliability", "Storage", "Zone", "parse_size",
           "default", "resolve"]

_DEFAULT = None


def default() -> Catalog:
    """The shipped catalog, loaded once and cached."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load()
    return _DEFAULT


def resolve(catalog: Catalog | None = None) -> Catalog:
    """``catalog`` itself, or the shipped catalog when it is ``None`` (the one place every
    function taking an optional ``catalog=`` turns it into a catalog)."""
    return default() if catalog is None else catalog
