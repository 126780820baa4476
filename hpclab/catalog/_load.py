"""Load ``data/catalog/*.yaml`` (and a user's files over them) into validated, frozen records."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from hpclab._paths import data_dir
from hpclab._validate import HpclabError
from hpclab._yaml import load_yaml
from hpclab.catalog._schema import (MARKET_MODELS, MAX_BY_DIMENSION, MAX_CAPACITY, MAX_INT, MAX_LABEL,
                                    MAX_WHOLE, SCHEMA, SCOPES, Figure)
from hpclab.catalog._units import BASE_UNIT, UNITS

__all__ = ["Catalog", "CatalogError", "UnknownNameError", "load", "default_paths"]

_SECTION_TO_KIND = {section: kind for kind, (section, _, _) in SCHEMA.items()}
_COMPACT = re.compile(r"^\s*([-+0-9.eE]+|nan|inf|-inf)\s+(\S+)\s*$")


class CatalogError(HpclabError):
    """A catalog file is malformed or a figure is invalid (one line: file, entry, field)."""


class UnknownNameError(KeyError, HpclabError):
    """An instance type, fabric, storage ... that the catalog does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def default_paths() -> list[Path]:
    return sorted((data_dir() / "catalog").glob("*.yaml"))


def _parse(path: Path):
    """The file's YAML document; the shipped files are parsed once per process (keyed by size and
    modification time, so an edited file is read again). The documents are never modified."""
    if path.parent == data_dir() / "catalog":
        try:
            st = path.stat()
        except OSError:
            return load_yaml(path, source=str(path))
        return _parse_cached(str(path), st.st_mtime_ns, st.st_size)
    return load_yaml(path, source=str(path))


@lru_cache(maxsize=32)
def _parse_cached(path: str, mtime_ns: int, size: int):
    return load_yaml(Path(path), source=path)


class _Raw:
    """Raw entries merged across files, remembering which file set each field."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in SCHEMA}
        self.origin: dict[tuple[str, str], str] = {}

    def add_file(self, path: Path) -> None:
        try:
            doc = _parse(Path(path))
        except HpclabError as exc:
            raise CatalogError(str(exc)) from None
        if doc is None:
            return
        if not isinstance(doc, dict):
            raise CatalogError(f"{path}: expected a mapping of sections "
                               f"({', '.join(_SECTION_TO_KIND)}), got {type(doc).__name__}")
        sources = doc.get("sources", {}) or {}
        for section, body in doc.items():
            if section == "sources":
                continue
            if section not in _SECTION_TO_KIND:
                raise CatalogError(f"{path}: unknown section {section!r}; allowed: "
                                   f"sources, {', '.join(_SECTION_TO_KIND)}")
            kind = _SECTION_TO_KIND[section]
            if not isinstance(body, dict):
                raise CatalogError(f"{path}: section {section!r} must map names to entries")
            for name, entry in body.items():
                if not isinstance(entry, dict):
                    raise CatalogError(f"{path}: {kind} {name!r}: entry must be a mapping of fields")
                entry = dict(entry)
                for key in ("source",):
                    if isinstance(entry.get(key), str) and entry[key].startswith("@"):
                        entry[key] = _resolve_source(path, kind, name, entry[key], sources)
                for fname, fval in entry.items():
                    if isinstance(fval, dict) and isinstance(fval.get("source"), str) \
                            and fval["source"].startswith("@"):
                        fval = dict(fval)
                        fval["source"] = _resolve_source(path, kind, name, fval["source"], sources)
                        entry[fname] = fval
                target = self.entries[kind].setdefault(str(name), {})
                for fname, fval in entry.items():
                    target[fname] = fval
                    self.origin[(kind, str(name)), fname] = str(path)
                self.origin[(kind, str(name))] = str(path)


def _resolve_source(path, kind, name, ref, sources):
    key = ref[1:]
    if key not in sources:
        raise CatalogError(f"{path}: {kind} {name!r}: source {ref!r} is not defined under 'sources' "
                           f"(defined: {', '.join(sources) or 'none'})")
    return str(sources[key])


def _figure(where: str, fname: str, raw: Any, dimension: str, default_source: str | None) -> Figure:
    allowed = ", ".join(UNITS[dimension])
    source = default_source
    if isinstance(raw, dict):
        unknown = set(raw) - {"value", "unit", "source", "note"}
        if unknown:
            raise CatalogError(f"{where}: {fname} has unknown keys {sorted(map(str, unknown))}; "
                               "allowed: value, unit, source, note")
        if "value" not in raw or "unit" not in raw:
            raise CatalogError(f"{where}: {fname} needs 'value' and 'unit' (unit one of {allowed})")
        value, unit = raw["value"], str(raw["unit"])
        if isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as text
            value = _number(where, fname, value)
        source = raw.get("source", source)
    elif isinstance(raw, str) and _COMPACT.match(raw):
        number, unit = _COMPACT.match(raw).groups()
        value = _number(where, fname, number)
    elif dimension == "count" or dimension == "ratio":
        value, unit = raw, "count" if dimension == "count" else "1"
        if isinstance(value, str):  # YAML 1.1 reads 1e9 (no dot) as text
            value = _number(where, fname, value)
    else:
        raise CatalogError(f"{where}: {fname} must be '<number> <unit>' or "
                           f"{{value, unit, source}} with unit one of {allowed}; got {raw!r}")
    if unit not in UNITS[dimension]:
        raise CatalogError(f"{where}: {fname} has unit {unit!r}; allowed: {allowed}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CatalogError(f"{where}: {fname} must be a number, got {value!r}")
    if not source:
        raise CatalogError(f"{where}: {fname} has no source (give 'source' on the figure or the entry)")
    try:
        written = float(value)
    except OverflowError:
        raise CatalogError(f"{where}: {fname} must be at most {_limit(fname, dimension)}, got "
                           f"{_show(value)}") from None
    return Figure(value=written * UNITS[dimension][unit], unit=unit, source=str(source), written=written)


def _number(where: str, fname: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CatalogError(f"{where}: {fname} must be '<number> <unit>' with a number such as 5, 1.5 or 2e-6, "
                           f"got {text!r}") from None


def _limit(fname: str, dimension: str) -> str:
    if dimension == "int":
        return f"{MAX_INT.get(fname, MAX_WHOLE):,}"
    high, label = MAX_BY_DIMENSION[dimension], MAX_LABEL[dimension]
    return f"{high:g} {BASE_UNIT[dimension]}" + (f" ({label})" if label else "")


def _show(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**15 else f"a {len(str(abs(value)))}-digit number"
    return f"{value:g}"


def _check_constraint(where: str, fname: str, value: float, constraint: str | None,
                      dimension: str, written: str | None = None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise CatalogError(f"{where}: {fname} must be finite, got {value}")
    high = MAX_INT.get(fname, MAX_WHOLE) if dimension == "int" else MAX_BY_DIMENSION.get(dimension)
    if high is not None and abs(value) > high:
        raise CatalogError(f"{where}: {fname} must be at most {_limit(fname, dimension)}, "
                           f"got {written or _show(value)}")
    if constraint == ">0" and not value > 0:
        raise CatalogError(f"{where}: {fname} must be > 0, got {value:g}")
    if constraint == ">=0" and not value >= 0:
        raise CatalogError(f"{where}: {fname} must be >= 0, got {value:g}")
    if constraint == "0..1" and not 0 < value <= 1:
        raise CatalogError(f"{where}: {fname} must be in (0, 1], got {value:g}")


def _build(kind: str, name: str, raw: dict[str, Any], raw_all: _Raw):
    section, cls, fields = SCHEMA[kind]
    where = f"{raw_all.origin[(kind, name)]}: {kind} {name!r}"
    unknown = set(raw) - set(fields) - {"description", "source", "note"}
    if unknown:
        bad = sorted(unknown, key=str)[0]
        where_f = raw_all.origin.get(((kind, name), bad), where.split(":")[0])
        raise CatalogError(f"{where_f}: {kind} {name!r}: unknown field {bad!r}; allowed: "
                           f"{', '.join(['description', 'source', *fields])}")
    default_source = raw.get("source")
    kwargs: dict[str, Any] = {"name": name, "description": str(raw.get("description", ""))}
    figures: dict[str, Figure] = {}
    for fname, (dimension, required, constraint) in fields.items():
        where_f = f"{raw_all.origin.get(((kind, name), fname), where.split(':')[0])}: {kind} {name!r}"
        if fname not in raw:
            if required:
                raise CatalogError(f"{where_f}: missing required field {fname!r}")
            continue
        value = raw[fname]
        if dimension == "str":
            if not isinstance(value, str):
                raise CatalogError(f"{where_f}: {fname} must be text, got {value!r}")
            if kind == "fabric" and fname == "scope" and value not in SCOPES:
                raise CatalogError(f"{where_f}: scope must be one of {', '.join(SCOPES)}, got {value!r}")
            if kind == "market" and fname == "model" and value not in MARKET_MODELS:
                raise CatalogError(f"{where_f}: model must be one of {', '.join(MARKET_MODELS)}, "
                                   f"got {value!r}")
        elif dimension == "bool":
            if not isinstance(value, bool):
                raise CatalogError(f"{where_f}: {fname} must be true or false, got {value!r}")
        elif dimension == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise CatalogError(f"{where_f}: {fname} must be a whole number, got {value!r}")
            _check_constraint(where_f, fname, value, constraint, dimension)
            if default_source is None:
                raise CatalogError(f"{where_f}: {fname} has no source (give 'source' on the entry)")
        elif dimension == "list":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CatalogError(f"{where_f}: {fname} must be a list of names, got {value!r}")
            value = tuple(value)
        elif dimension == "capacity":
            if not isinstance(value, dict):
                raise CatalogError(f"{where_f}: capacity must map instance types to core counts")
            for itype, cores in value.items():
                if isinstance(cores, bool) or not isinstance(cores, int) or not 0 <= cores <= MAX_CAPACITY:
                    shown = _show(cores) if isinstance(cores, int) else repr(cores)
                    raise CatalogError(f"{where_f}: capacity[{itype}] must be a whole number of cores in "
                                       f"[0, {MAX_CAPACITY:,}], got {shown}")
            value = MappingProxyType(dict(value))
        else:
            fig = _figure(where_f, fname, value, dimension, default_source)
            _check_constraint(where_f, fname, fig.value, constraint, dimension,
                              written=f"{fig.written:g} {fig.unit}")
            figures[fname] = fig
            value = fig.value
        kwargs[fname] = value
    return cls(figures=MappingProxyType(figures), **kwargs)


class Catalog:
    """Validated facts: instance types, fabrics, storage, zones, CPU generations, reliability.

    Every attribute of a record is in SI base units (seconds, bytes, bytes/s, USD/s); each record
    keeps the unit it was written in and the source of every figure (``record.source("alpha")``).
    """

    _kinds = tuple(SCHEMA)

    def __init__(self, records: Mapping[str, Mapping[str, Any]], paths: Iterable[Path]):
        self._records = {k: MappingProxyType(dict(v)) for k, v in records.items()}
        self.paths = tuple(Path(p) for p in paths)

    def _get(self, kind: str, name: str):
        table = self._records[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise UnknownNameError(f"unknown {kind} {name!r}; known: {known}")
        return table[name]

    def instance(self, name: str):
        return self._get("instance", name)

    def fabric(self, name: str):
        return self._get("fabric", name)

    def storage(self, name: str):
        return self._get("storage", name)

    def zone(self, name: str):
        return self._get("zone", name)

    def generation(self, name: str):
        return self._get("generation", name)

    def reliability(self, name: str):
        return self._get("reliability", name)

    def provisioning(self, name: str):
        return self._get("provisioning", name)

    def market(self, name: str):
        """A spot market model (``markets`` in ``data/catalog/markets.yaml``)."""
        return self._get("market", name)

    def spot_option(self, name: str):
        """A way to buy spot: protection period and price factor (``spot_options``)."""
        return self._get("spot_option", name)

    def billing_rule(self, name: str):
        """A provider's metering unit, bill period and minimum charge (``billing_rules``)."""
        return self._get("billing_rule", name)

    def unit_price(self, name: str):
        """Published per-vCPU and per-GiB prices in their currency (``unit_prices``)."""
        return self._get("unit_price", name)

    def exchange_rate(self, name: str):
        """A dated exchange rate (``exchange_rates``)."""
        return self._get("exchange_rate", name)

    def names(self, kind: str) -> list[str]:
        if kind not in self._records:
            raise UnknownNameError(f"unknown catalog kind {kind!r}; known: {', '.join(self._records)}")
        return list(self._records[kind])

    @property
    def instances(self) -> Mapping[str, Any]:
        return self._records["instance"]

    @property
    def fabrics(self) -> Mapping[str, Any]:
        return self._records["fabric"]

    @property
    def storages(self) -> Mapping[str, Any]:
        return self._records["storage"]

    @property
    def zones(self) -> Mapping[str, Any]:
        return self._records["zone"]

    @property
    def generations(self) -> Mapping[str, Any]:
        return self._records["generation"]

    def table(self, kind: str):
        """A ``pandas.DataFrame`` of one kind's records; each figure column in one unit (the one
        most entries were written in), named in the header."""
        from collections import Counter

        import pandas as pd

        fields = SCHEMA[kind][2]
        records = [self._records[kind][n] for n in self.names(kind)]
        units = {}
        for fname, (dimension, _, _) in fields.items():
            if dimension in UNITS:
                seen = Counter(r.figures[fname].unit for r in records if fname in r.figures)
                units[fname] = seen.most_common(1)[0][0] if seen else BASE_UNIT[dimension]
        rows = []
        for rec in records:
            row = {"name": rec.name}
            for fname, (dimension, _, _) in fields.items():
                value = getattr(rec, fname)
                if fname in units:
                    row[f"{fname} [{units[fname]}]"] = value / UNITS[dimension][units[fname]]
                elif isinstance(value, tuple):
                    row[fname] = ", ".join(value)
                elif dimension == "capacity":
                    row["capacity [cores]"] = sum(value.values())
                else:
                    row[fname] = value
            rows.append(row)
        return pd.DataFrame(rows).set_index("name")

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self._records.items())
        return f"<hpclab Catalog: {counts}>"


def load(*paths: str | Path, defaults: bool = True) -> Catalog:
    """Load the catalog.

    Parameters
    ----------
    *paths
        The user's own YAML files, loaded after (and over) the shipped defaults: an entry with a
        known name has its fields replaced one by one, a new name adds an entry.
    defaults
        Load ``data/catalog/*.yaml`` first (default True).

    Raises
    ------
    CatalogError
        One line naming the file, the entry and the field: ``fabrics.yaml: fabric 'erdma': alpha
        must be > 0, got -1e-06``.
    """
    files = (default_paths() if defaults else []) + [Path(p) for p in paths]
    raw = _Raw()
    for path in files:
        raw.add_file(path)
    records = {kind: {name: _build(kind, name, entry, raw) for name, entry in raw.entries[kind].items()}
               for kind in SCHEMA}
    _cross_check(records, raw)
    return Catalog(records, files)


def _cross_check(records, raw: _Raw) -> None:
    for name, inst in records["instance"].items():
        where = f"{raw.origin[('instance', name)]}: instance {name!r}"
        for fab in inst.fabrics:
            if fab not in records["fabric"]:
                raise CatalogError(f"{where}: fabrics lists unknown fabric {fab!r}; known: "
                                   f"{', '.join(records['fabric'])}")
        if inst.generation not in records["generation"]:
            raise CatalogError(f"{where}: generation {inst.generation!r} is not in generations; known: "
                               f"{', '.join(records['generation'])}")
        if inst.price_spot > inst.price_on_demand:
            raise CatalogError(f"{where}: price_spot must be <= price_on_demand")
    for name, zone in records["zone"].items():
        for itype in zone.capacity:
            if itype not in records["instance"]:
                raise CatalogError(f"{raw.origin[('zone', name)]}: zone {name!r}: capacity names unknown "
                                   f"instance type {itype!r}; known: {', '.join(records['instance'])}")
