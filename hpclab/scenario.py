"""One description of an experiment, saved to a file, run on either clock.

A :class:`Scenario` names a **workload** (a bag of tasks, a screening campaign, a CAE scaling
study, an LLM pretraining run, an HPC/AI job trace), the **pool** it runs on (instance types,
zones, limits, slots, boots, capacity), the **policy** that sizes the pool (a registered name
with parameters, or ``module:Class``), the **fabric** and **topology**, the **cluster** a real
run uses (a local one, a scheduler address, a cluster spec file), the **clock** (``virtual`` or
``real``), the **seed** and the **time scale** (pool seconds per wall second on the real clock).

>>> from hpclab import Scenario
>>> s = Scenario.example("burst")
>>> s.workload["kind"], s.clock
('tasks', 'virtual')
>>> s == Scenario.from_dict(s.to_dict())
True

Files are YAML (read with the safe loader) and validated on load: a bad value is one line
naming the file, the key path, the value and what is allowed, e.g.
``burst.yaml: pool.quota_cores: must be a whole number in [1, 100000000], got -5``.
:meth:`Scenario.load` and :meth:`Scenario.save` round-trip exactly (every default is written
out, so the loaded object equals the saved one). :meth:`Scenario.run` returns one
:class:`hpclab.result.Result`.

Adding a workload is one module: a class with a ``name``, a ``fields`` schema, the ``clocks``
it supports and ``run(scenario, clock, ...) -> Result``, registered with
:func:`register_workload` (the built-in ones are listed in ``_WORKLOADS`` and imported on
first use).
"""

from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hpclab._validate import MAX_CORES, MAX_GPUS, MAX_SECONDS, MAX_TASKS, HpclabError, is_finite, show_key  # the bounds (docs/bounds.md)
from hpclab.elastic.capacity import MAX_SHORTAGE_SD  # the shortage's domain

__all__ = ["Scenario", "Field", "register_workload", "workload_kinds", "example_names",
           "scenario_dir", "CLOCKS"]

CLOCKS = ("virtual", "real")
_REQUIRED = object()



@dataclass(frozen=True)
class Field:
    """One key of a scenario section: its type, default and domain.

    ``type`` is one of ``int``, ``float``, ``str``, ``bool``, ``list[str]``, ``list[int]``,
    ``list[float]``, ``map[int]``, ``map[float]`` (string keys), ``mapping`` (free-form, checked by
    whoever uses it). ``lo``/``hi`` bound numbers and list items (``lo_open`` makes ``lo``
    exclusive); ``choices`` bound strings; ``optional`` allows ``null``.
    """

    type: str
    default: Any = _REQUIRED
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple | None = None
    optional: bool = False
    help: str = ""

    def domain(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type in ("int", "float", "list[int]", "list[float]", "map[int]", "map[float]"):
            what = "a whole number" if "int" in self.type else "a number"
            lo = "-inf" if self.lo is None else _num(self.lo)
            hi = "inf" if self.hi is None else _num(self.hi)
            return f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}]"
        return {"str": "a string", "bool": "true or false", "list[str]": "a list of strings",
                "mapping": "a mapping"}.get(self.type, self.type)


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 2**64 else f"{v:g}"


def _fail(where: str, path: str, message: str, value) -> HpclabError:
    v = repr(value)
    if len(v) > 60:
        v = v[:57] + "..."
    return HpclabError(f"{where}: {path}: {message}, got {v}")


def _number(where, path, f: Field, value, integer: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, path, f"must be {f.domain()}", value)
    if integer and (isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise _fail(where, path, f"must be {f.domain()}", value)
    if not integer and not is_finite(value):  # an int too large for a float is not finite either
        raise _fail(where, path, f"must be {f.domain()}", value)
    bad_lo = f.lo is not None and (value <= f.lo if f.lo_open else value < f.lo)
    bad_hi = f.hi is not None and value > f.hi
    if bad_lo or bad_hi:
        raise _fail(where, path, f"must be {f.domain()}", value)
    return int(value) if integer else float(value)


def _check(where: str, path: str, f: Field, value):
    """The canonical value of ``value`` for field ``f`` (or a one-line error)."""
    if value is None:
        if f.optional:
            return None
        raise _fail(where, path, f"must be {f.domain()} (not null)", value)
    t = f.type
    if t in ("int", "float"):
        return _number(where, path, f, value, t == "int")
    if t == "str":
        if not isinstance(value, str):
            raise _fail(where, path, f"must be {f.domain()}", value)
        if f.choices is not None and value not in f.choices:
            raise _fail(where, path, f"must be {f.domain()}", value)
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise _fail(where, path, "must be true or false", value)
        return value
    if t.startswith("list["):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # one item may be written without brackets
        if not isinstance(value, (list, tuple)):
            raise _fail(where, path, f"must be {f.domain()}", value)
        item = Field(t[5:-1], lo=f.lo, hi=f.hi, lo_open=f.lo_open, choices=f.choices)
        out = [_check(where, f"{path}[{k}]", item, v) for k, v in enumerate(value)]
        if f.lo is not None and t == "list[str]" and len(out) < f.lo:
            raise _fail(where, path, f"must name at least {int(f.lo)} item(s)", value)
        return out
    if t.startswith("map["):
        if not isinstance(value, Mapping):
            raise _fail(where, path, f"must be a mapping of names to {f.domain()}", value)
        item = Field(t[4:-1], lo=f.lo, hi=f.hi, lo_open=f.lo_open)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(where, path, "keys must be strings", k)
            out[k] = _check(where, f"{path}.{k}", item, v)
        return out
    if t == "mapping":
        if not isinstance(value, Mapping):
            raise _fail(where, path, "must be a mapping", value)
        return _plain(where, path, value)
    raise AssertionError(f"unknown field type {t}")  # pragma: no cover


def _plain(where, path, value, depth=0):
    """A free-form mapping made of plain YAML values (str, int, float, bool, None, lists, maps)."""
    if depth > 20:
        raise _fail(where, path, "nests too deeply (at most 20 levels)", "...")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(where, path, "keys must be strings", k)
            out[k] = _plain(where, f"{path}.{show_key(k)}", v, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(where, f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(where, path, "must be finite", value)
        return value
    raise _fail(where, path, "must be a plain value (string, number, boolean, list or mapping)", value)


def validate_section(where: str, section: str, schema: Mapping[str, Field], data) -> dict:
    """Check ``data`` (a mapping) against ``schema``: unknown keys, missing required keys and bad
    values are one-line errors; the result has every key, defaults filled in, in schema order."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _fail(where, section, "must be a mapping", data)
    unknown = [k for k in data if k not in schema]
    if unknown:
        raise _fail(where, f"{section}.{show_key(unknown[0])}" if section else show_key(unknown[0]),
                    f"is not a known key (allowed: {', '.join(schema)})", data[unknown[0]])
    out = {}
    for key, f in schema.items():
        path = f"{section}.{key}" if section else key
        if key in data:
            out[key] = _check(where, path, f, data[key])
        elif f.default is _REQUIRED:
            raise HpclabError(f"{where}: {path}: is required ({f.domain()})")
        else:
            out[key] = copy.deepcopy(f.default)
    return out


# -- sections ---------------------------------------------------------------------------------
TOP = {
    "name": Field("str", help="a short name (shown with the results and in their files)"),
    "description": Field("str", ""),
    "clock": Field("str", "virtual", choices=CLOCKS),
    "seed": Field("int", 0, lo=0, hi=2**63 - 1),
    "time_scale": Field("float", 1.0, lo=0, hi=1e6, lo_open=True,
                        help="pool seconds per wall second on the real clock is 1/time_scale"),
    "tick": Field("float", 60.0, lo=0, hi=86400.0, lo_open=True, help="pool seconds between policy ticks"),
    "horizon": Field("float", None, lo=0, hi=MAX_SECONDS, lo_open=True, optional=True,
                     help="stop the virtual clock here (default: follows the work)"),
    "fabric": Field("str", None, optional=True, help="catalog fabric (CAE, LLM)"),
    "topology": Field("str", None, optional=True, help="topology preset"),
    "workload": Field("mapping"),
    "pool": Field("mapping", {}),
    "policy": Field("mapping", None, optional=True),
    "cluster": Field("mapping", {}),
}

#: the top-level run settings a workload kind may or may not read (``kind.settings``)
RUN_SETTINGS = ("seed", "time_scale", "tick", "horizon", "policy")

POOL = {
    "types": Field("list[str]", [], help="catalog instance types"),
    "zones": Field("list[str]", [], help="catalog zones (default: the first zone offering the types)"),
    "quota_cores": Field("int", None, lo=1, hi=MAX_CORES, optional=True),
    "min_per_type": Field("map[int]", {}, lo=0, hi=MAX_CORES),
    "max_per_type": Field("map[int]", {}, lo=0, hi=MAX_CORES),
    "slots": Field("map[int]", {}, lo=1, hi=10**6, help="task slots per instance of a type"),
    "boot": Field("map[float]", {}, lo=0, hi=86400.0, help="fixed boot seconds per type"),
    "market": Field("str", "on-demand", choices=("on-demand", "spot")),
    "capacity": Field("float", 1.0, lo=0, hi=1e6, lo_open=True, help="factor on zone capacities"),
    "spot_capacity": Field("float", 1.0, lo=0, hi=1),
    "capacity_noise": Field("float", 0.0, lo=0, hi=MAX_SHORTAGE_SD,
                            help="virtual clock: sd of the seeded capacity shortage (ShortageNoise)"),
    "capacity_interval": Field("float", 3600.0, lo=0, lo_open=True, hi=MAX_SECONDS,
                               help="seconds of one interval of the capacity shortage"),
    "reclaim_rate": Field("float", None, lo=0, hi=1.0, optional=True,
                          help="spot reclaims per instance-second (default: the zones' rates)"),
    "idle_timeout": Field("float", 300.0, lo=0, hi=MAX_SECONDS,
                          help="platform pools: idle seconds before retirement"),
    "spot_market": Field("mapping", None, optional=True,
                         help="hpclab.elastic.faults.SpotMarket fields (model, option, prices, bid, ...)"),
}

POLICY = {
    "name": Field("str", help="a registered policy name or module:Class"),
    "params": Field("mapping", {}),
    "hysteresis": Field("bool", False),
    "wait": Field("float", 60.0, lo=0, hi=MAX_SECONDS),
    "cooldown": Field("float", 120.0, lo=0, hi=MAX_SECONDS),
}

CLUSTER = {
    "kind": Field("str", "local", choices=("local", "address", "file")),
    "address": Field("str", None, optional=True, help="a Dask scheduler address (kind: address)"),
    "file": Field("str", None, optional=True,
                  help="a cluster spec YAML (kind: file; hpclab.elastic._cluster_spec), next to the scenario"),
    "workers": Field("int", 2, lo=1, hi=1024, help="local workers (CAE, screening)"),
    "processes": Field("bool", False, help="local pool workers as processes (else threads)"),
    "interval": Field("float", 0.1, lo=0, hi=60.0, lo_open=True,
                      help="wall seconds between the real pool's policy calls"),
    "timeout": Field("float", 300.0, lo=0, hi=86400.0, lo_open=True, help="wall seconds a real run may take"),
}

# -- workload kinds: name -> "module:Class", imported on first use ------------------------------
_WORKLOADS: dict[str, Any] = {
    "tasks": "hpclab.workloads.tasks:TaskBag",
    "screening": "hpclab.workloads.screening.scenario:ScreeningCampaign",
    "cae": "hpclab.workloads.cae.scenario:CAEScaling",
    "llm": "hpclab.workloads.llm.scenario:LLMPretraining",
    "trace": "hpclab.platform.scenario:JobTrace",
}


def register_workload(name: str, kind) -> None:
    """Register a workload kind (a class or ``"module:Class"``) under ``name``."""
    _WORKLOADS[name] = kind


def workload_kinds() -> tuple[str, ...]:
    return tuple(_WORKLOADS)


def _topology_names() -> list:
    from hpclab.network.topology import _presets

    return sorted(_presets())


def _kind(name: str, where: str = "scenario"):
    if not isinstance(name, str) or name not in _WORKLOADS:
        raise HpclabError(f"{where}: workload.kind: must be one of {', '.join(_WORKLOADS)}, got {name!r}")
    k = _WORKLOADS[name]
    if isinstance(k, str):
        mod, _, attr = k.partition(":")
        k = getattr(importlib.import_module(mod), attr)
        _WORKLOADS[name] = k
    return k


def _read_yaml(path: Path):
    from hpclab._yaml import load_yaml

    if not path.exists():
        raise HpclabError(f"{path}: no such scenario file")
    data = load_yaml(path, source=path.name)  # size, UTF-8, duplicate keys, aliases, depth
    if not isinstance(data, Mapping):
        raise HpclabError(f"{path.name}: must be a mapping of scenario keys (name, workload, pool, "
                          f"policy, ...), got {type(data).__name__}")
    return data


def scenario_dir() -> Path:
    """``data/scenarios`` of the shipped examples."""
    return Path(__file__).resolve().parent.parent / "data" / "scenarios"


def example_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in scenario_dir().glob("*.yaml")))


@dataclass(frozen=True, eq=True)
class Scenario:
    """An experiment: workload, pool, policy, fabric, cluster, clock, seed (see the module doc).

    Sections are plain, validated dicts with every key present (defaults filled in); build one
    with :meth:`load`, :meth:`from_dict`, :meth:`example` or :meth:`replace`.
    """

    name: str
    workload: dict
    pool: dict = field(default_factory=dict)
    policy: dict | None = None
    cluster: dict = field(default_factory=dict)
    clock: str = "virtual"
    seed: int = 0
    time_scale: float = 1.0
    tick: float = 60.0
    horizon: float | None = None
    fabric: str | None = None
    topology: str | None = None
    description: str = ""
    source: str = field(default="scenario", compare=False, repr=False)
    base: str = field(default="", compare=False, repr=False)  # folder of the file it came from

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data, *, source: str = "scenario", base: str = "") -> "Scenario":
        """Validate ``data`` (as read from YAML) into a scenario; errors name ``source``."""
        top = validate_section(source, "", TOP, data)
        if not top["name"].strip() or not top["name"].isprintable():
            raise _fail(source, "name", "must be a non-empty name on one line", top["name"])
        kind_name = top["workload"].get("kind")
        if kind_name is None:
            raise HpclabError(f"{source}: workload.kind: is required (one of {', '.join(_WORKLOADS)})")
        kind = _kind(kind_name, source)
        wl = dict(top["workload"])
        wl.pop("kind")
        workload = {"kind": kind_name, **validate_section(source, "workload", kind.fields, wl)}
        pool = validate_section(source, "pool", POOL, top["pool"])
        pol = top["policy"]
        if pol is not None:
            pol = validate_section(source, "policy", POLICY, pol)
        cluster = validate_section(source, "cluster", CLUSTER, top["cluster"])
        if cluster["kind"] == "address" and not cluster["address"]:
            raise HpclabError(f"{source}: cluster.address: is required with cluster.kind: address")
        if cluster["kind"] == "file" and not cluster["file"]:
            raise HpclabError(f"{source}: cluster.file: is required with cluster.kind: file")
        if cluster["kind"] == "file":  # checked now, before any work
            cls._cluster_spec(source, base, cluster["file"])
        s = cls(name=top["name"], workload=workload, pool=pool, policy=pol, cluster=cluster,
                clock=top["clock"], seed=top["seed"], time_scale=top["time_scale"], tick=top["tick"],
                horizon=top["horizon"], fabric=top["fabric"], topology=top["topology"],
                description=top["description"], source=source, base=base)
        s._check_unread(kind)
        s._check_facts(kind)
        return s

    def _check_unread(self, kind) -> None:
        """A pool key that the workload kind does not read (``kind.pool_keys``; a kind without
        it reads them all) must keep its default: a value set there would change nothing. So
        must a run setting (``seed``, ``time_scale``, ``tick``, ``horizon``, ``policy``) that it
        does not read (``kind.settings``)."""
        reads = getattr(kind, "settings", None)
        if reads is not None:
            for key in RUN_SETTINGS:
                value = getattr(self, key)
                if key not in reads and value != TOP[key].default:
                    hint = f"it reads {', '.join(reads)}" if reads else \
                        f"it reads none of {', '.join(RUN_SETTINGS)}"
                    raise HpclabError(f"{self.source}: {key}: the {kind.name} workload does not read "
                                      f"it ({hint}), got {value!r}")
        if self.pool["capacity_interval"] != POOL["capacity_interval"].default and not self.pool["capacity_noise"]:
            raise HpclabError(f"{self.source}: pool.capacity_interval: read only with pool.capacity_noise > 0, "
                              f"got {self.pool['capacity_interval']!r}")
        reads = getattr(kind, "pool_keys", None)
        if reads is None:
            return
        for key, f in POOL.items():
            if key not in reads and self.pool[key] != f.default:
                hint = f"it reads pool.{', pool.'.join(reads)}" if reads else "it has no pool"
                raise HpclabError(f"{self.source}: pool.{key}: the {kind.name} workload does not read "
                                  f"it ({hint}), got {self.pool[key]!r}")

    def _check_facts(self, kind) -> None:
        """Names that the catalog and the registries must know (one line each)."""
        from hpclab import catalog as _catalog

        cat = _catalog.default()
        where = self.source
        # the top-level network keys: only a workload that reads them may have them (else they
        # would be silently ignored), and they must name what the catalog and presets know
        uses = getattr(kind, "network", ())
        for key in ("fabric", "topology"):
            value = getattr(self, key)
            if value is None:
                continue
            if key not in uses:
                readers = [n for n in _WORKLOADS if key in getattr(_kind(n, where), "network", ())]
                hint = "its fabrics are workload.fabrics" if key == "fabric" and "topology" in uses else \
                    f"only the {' and '.join(readers)} workload{'s read' if len(readers) > 1 else ' reads'} it"
                raise HpclabError(f"{where}: {key}: the {kind.name} workload does not use it ({hint}), got {value!r}")
            known = sorted(cat.fabrics) if key == "fabric" else _topology_names()
            if value not in known:
                what = "a catalog fabric" if key == "fabric" else "a topology preset"
                raise HpclabError(f"{where}: {key}: must be {what} ({', '.join(known)}), got {value!r}")
        for k, t in enumerate(self.pool["types"]):
            if t not in cat.instances:
                raise HpclabError(f"{where}: pool.types[{k}]: must be a catalog instance type "
                                  f"({', '.join(sorted(cat.instances))}), got {t!r}")
        for k, z in enumerate(self.pool["zones"]):
            if z not in cat.zones:
                raise HpclabError(f"{where}: pool.zones[{k}]: must be a catalog zone "
                                  f"({', '.join(sorted(cat.zones))}), got {z!r}")
        for sect in ("min_per_type", "max_per_type", "slots", "boot"):
            for t in self.pool[sect]:
                if t not in self.pool["types"]:
                    raise HpclabError(f"{where}: pool.{sect}.{show_key(t)}: names a type not in pool.types "
                                      f"({', '.join(self.pool['types']) or 'none'})")
        if self.pool["spot_market"] is not None:
            try:
                self.spot_market()
            except (HpclabError, TypeError) as exc:
                raise HpclabError(f"{where}: pool.spot_market: {' '.join(str(exc).split())}") from None
        if self.clock not in kind.clocks:
            raise HpclabError(f"{where}: clock: a {kind.name} workload runs on "
                              f"{' or '.join(kind.clocks)} only, got {self.clock!r}")
        if self.policy is not None:  # built once to check it, and kept for the first run
            try:
                object.__setattr__(self, "_checked_policy", self.make_policy())
            except HpclabError as exc:
                raise HpclabError(f"{where}: policy: {exc}") from None
        check = getattr(kind, "check", None)
        if check is not None:
            check(self)

    @classmethod
    def load(cls, path) -> "Scenario":
        """Read and validate a scenario file (YAML, safe loader)."""
        path = Path(path)
        return cls.from_dict(_read_yaml(path), source=path.name, base=str(path.resolve().parent))

    @classmethod
    def example(cls, name: str) -> "Scenario":
        """A shipped scenario of ``data/scenarios`` by name (see :func:`example_names`)."""
        names = example_names()
        if name not in names:
            raise HpclabError(f"example must be one of {', '.join(names)}, got {name!r}")
        return cls.load(scenario_dir() / f"{name}.yaml")

    def to_dict(self) -> dict:
        """Every key, in a stable order (what :meth:`save` writes)."""
        d = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d.update(clock=self.clock, seed=self.seed, time_scale=self.time_scale, tick=self.tick,
                 horizon=self.horizon, fabric=self.fabric, topology=self.topology,
                 workload=copy.deepcopy(self.workload), pool=copy.deepcopy(self.pool),
                 policy=copy.deepcopy(self.policy), cluster=copy.deepcopy(self.cluster))
        return d

    def to_yaml(self) -> str:
        import yaml

        head = f"# hpclab scenario: run with `hpclab run {self.name}.yaml [--clock real|virtual]`\n"
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                                     allow_unicode=True, width=100)

    def save(self, path, *, overwrite: bool = True) -> Path:
        """Write the scenario as YAML (every default written out, so :meth:`load` gives back an
        equal object). ``overwrite=False`` refuses to replace an existing file."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise HpclabError(f"{path}: exists; not overwritten (choose another name or remove it)")
        if path.is_dir():
            raise HpclabError(f"{path}: is a directory; give a file name ending in .yaml")
        text = self.to_yaml()
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise HpclabError(f"{path}: cannot write the scenario ({exc.strerror or exc})") from None
        return path

    def replace(self, **changes) -> "Scenario":
        """A validated copy with top-level keys or sections changed; a section given as a dict is
        merged key by key into the current one (``replace(workload={"tasks": 10})``)."""
        d = self.to_dict()
        for k, v in changes.items():
            if isinstance(v, Mapping) and isinstance(d.get(k), Mapping):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return Scenario.from_dict(d, source=self.source, base=self.base)

    # -- pieces the workloads use ------------------------------------------------------------
    @property
    def kind(self):
        return _kind(self.workload["kind"], self.source)

    def params(self) -> dict:
        """The workload's parameters (without ``kind``)."""
        return {k: v for k, v in self.workload.items() if k != "kind"}

    def limits(self, *, catalog=None, default_types=()):
        """The pool's :class:`~hpclab.elastic.state.PoolLimits`."""
        from hpclab.catalog import resolve
        from hpclab.elastic.state import PoolLimits

        cat = resolve(catalog)
        types = tuple(self.pool["types"]) or tuple(default_types)
        if not types:
            raise HpclabError(f"{self.source}: pool.types: must name at least one instance type")
        zones = tuple(self.pool["zones"])
        if not zones:
            zones = tuple(z for z, rec in cat.zones.items() if any(rec.capacity.get(t, 0) for t in types))[:1]
            if not zones:
                raise HpclabError(f"{self.source}: pool.types: no catalog zone offers "
                                  f"{', '.join(types)}")
        try:
            return PoolLimits(types=types, zones=zones, min_per_type=self.pool["min_per_type"],
                              max_per_type=self.pool["max_per_type"], quota_cores=self.pool["quota_cores"])
        except HpclabError as exc:  # e.g. a maximum below its minimum
            raise HpclabError(f"{self.source}: pool.{exc}") from None

    def check_policy_limits(self) -> None:
        """Refuse, before any run, a policy that cannot act in the scenario's pool (its ``itype`` or
        ``zone`` outside pool.types or pool.zones): one line naming the file and the parameter
        (:func:`hpclab.elastic.policies.check_limits`). For workload kinds whose pool is
        :meth:`limits`."""
        from hpclab.elastic.policies import check_limits

        policy = self.__dict__.get("_checked_policy")
        if policy is None:
            return
        limits = self.limits()  # its own errors name the pool key
        try:
            check_limits(policy, limits)
        except HpclabError as exc:
            raise HpclabError(f"{self.source}: policy.params.{exc}") from None

    @staticmethod
    def _cluster_spec(source: str, base: str, file: str):
        from hpclab.elastic._cluster_spec import load_cluster_spec

        path = Path(file)
        if not path.is_absolute() and base:
            path = Path(base) / path
        if not path.is_file():
            raise HpclabError(f"{source}: cluster.file: no such cluster spec file, got {file!r}")
        return load_cluster_spec(path)

    def cluster_spec(self):
        """Where a real run's workers come from: None (emulated instances on this machine) or a
        :class:`~hpclab.elastic._cluster_spec.ClusterSpec` (a scheduler address, or a
        dask-jobqueue cluster from the ``cluster.file`` spec, a path next to the scenario)."""
        from hpclab.elastic._cluster_spec import ClusterSpec

        c = self.cluster
        if c["kind"] == "local":
            return None
        if c["kind"] == "address":
            return ClusterSpec("address", address=c["address"], source=self.source)
        return self._cluster_spec(self.source, self.base, c["file"])

    def spot_market(self):
        """The pool's :class:`~hpclab.elastic.faults.SpotMarket` (reclaims and spot prices), the
        same seeded schedule on both clocks (default: the catalog's market model)."""
        from hpclab.elastic.faults import SpotMarket

        return SpotMarket(**(self.pool["spot_market"] or {}))

    def spot_faults(self):
        """The real pool's fault model: reclaims from :meth:`spot_market` at the pool's rate."""
        from hpclab.elastic.faults import SpotFaults

        r = self.pool["reclaim_rate"]
        if r == 0:
            return None
        return SpotFaults(rate="catalog" if r is None else r * 3600.0, market=self.spot_market(),
                          seed=self.seed)

    def make_policy(self, default: str | None = None, *, catalog=None, **defaults):
        """A fresh policy object from the policy section (or ``default`` with ``defaults`` when the
        scenario names none): the same object type drives every clock. Each call gives a new
        object (the first one is the object built when the scenario was checked, never used), so
        no state passes from one run to the next."""
        from hpclab.catalog import resolve
        from hpclab.elastic.policies import make_policy

        p = self.policy
        if p is not None and resolve(catalog) is resolve(None):
            checked = self.__dict__.pop("_checked_policy", None)
            if checked is not None:
                return checked
        if p is None:
            if default is None:
                return None
            p = {"name": default, "params": defaults, "hysteresis": False, "wait": 60.0, "cooldown": 120.0}
        params = {**p["params"], "catalog": resolve(catalog)}
        return make_policy(p["name"], hysteresis=p["hysteresis"], wait=p["wait"],
                           cooldown=p["cooldown"], **params)

    # -- running -----------------------------------------------------------------------------
    def run(self, clock: str | None = None, *, progress: bool = False, cluster: dict | None = None,
            out=None):
        """Run the scenario on ``clock`` (default: its own) and return a :class:`Result`.

        ``cluster`` overrides keys of the cluster section (``{"kind": "address", "address": ...}``);
        ``out`` is a folder for outputs that a workload writes as it goes (a screen's batches).
        """
        s = self
        if clock is not None or cluster:
            s = self.replace(**({"clock": clock} if clock is not None else {}),
                             **({"cluster": cluster} if cluster else {}))
        result = s.kind().run(s, progress=progress, out=out)
        return result
