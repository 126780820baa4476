"""One meaning per verb (docs/glossary.md): the old names are thin aliases that warn, and nothing
in hpclab, its notebooks, benchmarks, scripts or tests uses them."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from hpclab._deprecated import ALIASES

ROOT = Path(__file__).resolve().parent.parent


def _import_all() -> None:
    """Every module of hpclab, so that every alias has registered itself in ALIASES."""
    import pkgutil

    import hpclab

    for m in pkgutil.walk_packages(hpclab.__path__, "hpclab."):
        importlib.import_module(m.name)


_import_all()
#: (module, old name) of every deprecated name, and where packages re-export them
OLD = {(m, n) for m, n, _ in ALIASES if "." not in n} | {
    ("hpclab.platform", "compare"), ("hpclab.platform", "summarise"),
    ("hpclab.workloads.screening", "campaign")}
#: the one import of an alias that stays: the package re-export whose name is also its submodule's
ALLOWED = {("hpclab/workloads/screening/__init__.py", "hpclab.workloads.screening.campaign", "campaign")}


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _uses(rel: str, source: str) -> list[str]:
    """Uses of a deprecated name in ``source``: imported by name, or read off a module."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> module it is bound to (any scope)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                if (node.module, a.name) in OLD and (rel, node.module, a.name) not in ALLOWED:
                    found.append(f"{rel}:{node.lineno}: from {node.module} import {a.name}")
                elif node.module.startswith("hpclab") and _is_module(f"{node.module}.{a.name}"):
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = bound.get(node.value.id)
            if mod is not None and (mod, node.attr) in OLD:
                found.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr}")
    found += [f"{rel}: report.summary()" for _ in re.finditer(r"\breport\.summary\(\)", source)]
    return found


def _sources():
    for folder in ("hpclab", "tests", "benchmarks", "scripts"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            if p.name != "test_names.py":
                yield str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        yield str(p.relative_to(ROOT)), code


def test_nothing_uses_a_deprecated_name():
    found = [use for rel, src in _sources() for use in _uses(rel, src)]
    assert not found, "deprecated names in use:\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_use():
    """The scan above can fail: it finds an alias imported by name, read off a module bound by
    ``import ... as`` or ``from ... import module``, and the old report method."""
    src = ("from hpclab.elastic.simulate import compare\n"
           "import hpclab.platform as P\nP.compare(1)\n"
           "from hpclab.workloads import screening as scr\nscr.campaign(1)\n"
           "from hpclab.elastic import policies\npolicies.summarise(1)\nreport.summary()\n")
    assert len(_uses("x.py", src)) == 5
    assert _uses("x.py", "from hpclab.elastic.simulate import campaign\nP.replay_each(1)\n") == []


def _calls():
    """Each alias called as an old caller would, with what the new name gives."""
    import hpclab.platform as P
    from hpclab.elastic import policies
    from hpclab.elastic.simulate import campaign
    from hpclab.elastic.state import InstanceView, PoolLimits, PoolState
    from hpclab.report import Report, Section
    from hpclab.result import compare
    from hpclab.workloads.screening import campaign as screening_campaign

    runs = [campaign(200, 1000, policy=p, progress=False) for p in ("global", "global-spot")]
    jobs = P.lublin_feitelson(40, max_nodes=8, seed=1)
    res = P.replay(jobs, cpu_nodes=16, gpu_nodes=4)
    snap = PoolState(time=0.0, queued=3, running=0, limits=PoolLimits(("ecs.c8i.8xlarge",), ("cn-hangzhou-h",)),
                     instances=(InstanceView("i-0", "ecs.c8i.8xlarge", "cn-hangzhou-h", "on-demand",
                                             "running", cores=32, launched_at=0.0, idle_since=0.0),))
    report = Report([Section("a", "?", "ok")])
    return [
        (lambda: __import__("hpclab.elastic.simulate", fromlist=["x"]).compare(runs),
         lambda: compare(runs).to_dataframe()[["cost_usd"]]),
        (lambda: P.compare(jobs, cpu_nodes=16, gpu_nodes=4),
         lambda: P.replay_each(jobs, cpu_nodes=16, gpu_nodes=4).rename(run="scenario")),
        (lambda: P.summarise(res), res.summary),
        (lambda: policies.summarise(snap), lambda: policies.aggregate(snap)),
        (lambda: policies.attach_summary(snap, policies.Aggregates.of(snap)),
         lambda: policies.attach_aggregates(snap, policies.Aggregates.of(snap))),
        (lambda: policies.StateSummary, lambda: policies.Aggregates),
        (report.summary, report.status_text),
        (lambda: screening_campaign(None), None),  # warns, then the estimate refuses None
    ]


def test_every_alias_warns_and_gives_what_the_new_name_gives():
    import xarray as xr

    calls = _calls()
    assert len(calls) == len(ALIASES)
    for old, new in calls:
        with pytest.warns(DeprecationWarning, match=r"deprecated since hpclab .*; use ") as rec:
            try:
                got = old()
            except (AttributeError, TypeError, KeyError):
                assert new is None
                got = None
        assert all(w.filename == __file__ for w in rec), [w.filename for w in rec]  # stacklevel
        if new is None:
            continue
        want = new()
        if isinstance(want, xr.Dataset):
            xr.testing.assert_identical(got, want)
        elif hasattr(want, "columns"):
            assert list(want.columns)[0] in got.columns
            assert (got[want.columns[0]] == want[want.columns[0]]).all()
        else:
            assert got == want or got is want


def test_the_screening_alias_is_the_estimate():
    from hpclab.workloads import screening as scr

    assert scr.campaign.__wrapped__ is scr.estimate_campaign
