"""The figures a person reads: every figure factory and panel of ``hpclab.viz`` built with default
(small) inputs, and the style rules of STYLE.md ("Figures people read") checked on the bokeh models:

- legends sit outside the data (in the figure's right/below/left/above panel), never in the frame;
- every numeric axis has a readable tick formatter (SI, dollars, bytes, thousands), and log axes
  whose data span few decades get labelled 1-2-5 ticks;
- a named thing (fabric, policy, market, state, job kind...) has ONE colour in every figure, the
  one of :data:`hpclab.viz._common.COLORS`; within a figure, no two legend entries look alike
  (same colour and dash);
- a panel's figures have data on their first render (no empty source: bokeh would log "could
  not set initial ranges" and draw nothing);
- the JavaScript tick formatters print what a person expects (run in node when it is installed).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr
from bokeh.models import (BasicTickFormatter, CategoricalAxis, ColumnDataSource, FixedTicker,
                          GlyphRenderer, Legend, LogAxis, LogTickFormatter, Plot)

from hpclab.viz import _common as C

pytestmark = pytest.mark.timeout(600)


# --- collecting what the figures draw --------------------------------------------------------------

def _plots(obj) -> list[Plot]:
    """Every bokeh Plot inside a figure, a layout, a BokehModel widget or an ipywidgets box."""
    if isinstance(obj, Plot):
        return [obj]
    if hasattr(obj, "references"):  # any bokeh model (a layout)
        return [m for m in obj.references() if isinstance(m, Plot)]
    if hasattr(obj, "_model"):  # jupyter_bokeh.BokehModel
        return _plots(obj._model)
    if hasattr(obj, "children"):
        return [p for c in obj.children for p in _plots(c)]
    return []


def _prop(glyph, name, source, row=None):
    """A glyph's visual property as a plain value (a field is read from the source's row)."""
    v = getattr(glyph, name, None)
    if isinstance(v, dict):
        v = v.get("value", v.get("field"))
    field = getattr(v, "field", None)
    if field is None and hasattr(v, "value"):
        return v.value
    if field is not None:
        col = source.data.get(field, [])
        return col[row] if row is not None and len(col) > row else None
    if isinstance(v, str) and source is not None and v in source.data and row is not None:
        return source.data[v][row]
    return v


def _look(renderer, row=None):
    g = renderer.glyph
    src = renderer.data_source
    bar = type(g).__name__ in ("VBar", "HBar", "Quad", "VArea", "HArea", "Patch", "Patches")
    colour = _prop(g, "fill_color" if bar else "line_color", src, row)
    if colour is None:
        colour = _prop(g, "fill_color", src, row)
    dash = _prop(g, "line_dash", src, row) if hasattr(g, "line_dash") else None
    dash = tuple(dash) if isinstance(dash, (list, tuple)) else dash
    return (str(colour).lower() if colour is not None else None, dash if dash not in ([], ()) else "solid",
            type(g).__name__)


def _entries(fig: Plot) -> list[tuple[str, tuple]]:
    """(label, (colour, dash, glyph type)) of every legend entry (a field label: one per row)."""
    out = []
    for lg in fig.select(type=Legend):
        for item in lg.items:
            r = item.renderers[0]
            label = item.label
            field = getattr(label, "field", None) or (label.get("field") if isinstance(label, dict) else None)
            if field is not None:
                names = r.data_source.data[field]
                seen = set()
                for i, name in enumerate(names):
                    if name in seen:
                        continue
                    seen.add(name)
                    out.append((str(name), _look(r, i)))
            else:
                text = getattr(label, "value", None) or (label.get("value") if isinstance(label, dict) else label)
                out.append((str(text), _look(r)))
    return out


def _named(label: str) -> str:
    """The named thing a legend label is about: ``"erdma, 16 ranks"`` -> ``erdma``,
    ``"global-spot+hysteresis"`` -> ``global-spot``; a label that is itself a name stays whole."""
    if label in C.COLORS:
        return label
    for sep in (":", ",", " (", "+"):
        label = label.split(sep)[0]
    return label.strip()


# --- building every figure with default inputs -------------------------------------------------------

@pytest.fixture(scope="module")
def burst():
    from hpclab.elastic import run_burst

    return run_burst(200, policy="spot-first", types=("ecs.c8i.8xlarge", "ecs.c8a.8xlarge"),
                     zones=("cn-hangzhou-h", "cn-shanghai-m"), preemptions=1, max_instances=1)


@pytest.fixture(scope="module")
def screen():
    from hpclab.workloads import screening as scr

    return scr.screen("nci5k", "cdk2", size=60, workers=1, progress=False)


def _pool_figures(burst):
    from hpclab.viz import pools

    panel = pools.pool_panel(burst, types=("ecs.c8i.8xlarge", "ecs.c8a.8xlarge"),
                             zones=("cn-hangzhou-h", "cn-shanghai-m"))
    return {"pools.timeline": pools.timeline_figure(burst.events),
            "pools.cost": pools.cost_figure(burst.events),
            "pools.view": pools.PoolView(burst.events).figure,
            "pools.panel": panel.view.figure}


def _simulate_figures():
    from hpclab.elastic.simulate import campaign
    from hpclab.viz import simulate as view

    runs = [campaign(500, 5000, policy=p, seed=0, progress=False) for p in ("global", "global-spot")]
    panel = view.simulate_panel(cores=500)
    return {"simulate.cores": view.cores_figure(runs), "simulate.cost": view.cost_figure(runs),
            "simulate.instances": view.instances_figure(runs[1]),
            "simulate.panel.cores": panel.figures[0], "simulate.panel.cost": panel.figures[1]}


def _collective_figures():
    from hpclab.network import p2p_time, sweep
    from hpclab.viz import collectives as view

    ds = sweep(op="allreduce", algorithm="auto", fabric=list(view.DEFAULT_FABRICS), ranks=[16, 256],
               nbytes=2.0 ** np.arange(3, 34))
    n = 2.0 ** np.arange(3, 24)
    live = xr.Dataset({"time": ("nbytes", p2p_time(n, "tcp-vpc"))}, coords={"nbytes": n})
    return {"collectives.alpha_beta": view.alpha_beta_figure(), "collectives.time": view.time_figure(ds),
            "collectives.busbw": view.busbw_figure(ds, ranks=[256]),
            "collectives.crossover": view.crossover_figure(),
            "collectives.pingpong": view.pingpong_figure(live),
            "collectives.panel": view.collectives_panel().figure}


def _cae_figures():
    from hpclab.viz import cae as view
    from hpclab.workloads import cae

    ds = cae.run_heat(32, steps=20, workers=1)
    sweep = cae.scaling(grid=4096, cost_per_cell=2e-9)
    panel = view.scaling_panel(cost_per_cell=2e-9)
    return {"cae.scaling": view.scaling_figure(sweep), "cae.speedup": view.scaling_figure(sweep, "speedup"),
            "cae.breakdown": view.breakdown_figure(sweep), "cae.field": view.field_figure(ds),
            **{f"cae.panel.{k}": f for k, f in panel.figures.items()}}


def _platform_figures():
    from hpclab.viz import platform as view

    m = view.panel_model(n_jobs=400, cpu_nodes=32, gpu_nodes=8)
    panel = view.platform_panel(n_jobs=400, cpu_nodes=32, gpu_nodes=8)
    return {"platform.wait": view.wait_figure(m["dataset"]), "platform.cost": view.cost_figure(m["dataset"]),
            "platform.nodes": view.nodes_figure(m["results"]),
            **{f"platform.panel.{k}": f for k, f in panel.figures.items()}}


def _screening_figures(screen):
    from hpclab.viz import screening as view
    from hpclab.workloads import screening as scr

    inputs = scr.campaign_inputs(screen)
    camp = scr.estimate_campaign(inputs, 1e8, [1, 4, 24], [0, 0.9], ["one", "global"], conformers=300,
                        survivor_fraction=1.0)
    sim = scr.simulate_campaign(inputs, 1e8, 24.0, 0.9, "global", batch_size=None, max_tasks=500)
    return {"screening.enrichment": view.enrichment_figure(scr.quality(screen)),
            "screening.stage_cost": view.stage_cost_figure(scr.stage_costs(screen)),
            "screening.throughput": view.throughput_figure(scr.throughput(screen, 0.5)),
            "screening.cost_deadline": view.cost_deadline_figure(camp),
            "screening.timeline": view.campaign_timeline_figure(sim),
            "screening.campaign_panel": view.campaign_panel(inputs).figure,
            "screening.screen_panel": view.screen_panel(60, result=screen).figure}


def _llm_figures():
    from hpclab.viz import llm as view
    from hpclab.workloads import llm

    fab = llm.compare_fabrics("gpt3-175b", 1024)
    panel = view.llm_panel()
    model = llm.transformer("gpt3-175b")
    cluster = llm.cluster("lingjun.8xh800", "rdma-hpn7", storage="cpfs", reliability="h100-llama3")
    mem = llm.step_time(model, cluster, tp=8, pp=4, dp=32, micro_batch=2,
                        global_batch=llm.default_global_batch(model), zero=[0, 1, 2, 3])
    return {"llm.breakdown": view.breakdown_figure(fab, by="fabric", title="Best layout per fabric"),
            "llm.memory": view.memory_figure(mem),
            "llm.stragglers": view.straggler_figure(llm.straggler_step_time(10.0, [8, 64, 512], samples=10, seed=1)),
            "llm.requirements": view.requirements_figure(llm.goodput_requirements(model, cluster, 1024)),
            "llm.validation": view.validation_figure(llm.validate()),
            **{f"llm.panel.{k}": f for k, f in panel.figures.items()}}


@pytest.fixture(scope="module")
def figures(burst, screen):
    figs = {}
    for build in (_simulate_figures, _collective_figures, _cae_figures, _platform_figures, _llm_figures):
        figs.update(build())
    figs.update(_pool_figures(burst))
    figs.update(_screening_figures(screen))
    return {name: _plots(f) for name, f in figs.items()}


# --- the rules ---------------------------------------------------------------------------------------------

def test_every_figure_builds_a_plot(figures):
    assert len(figures) >= 30
    for name, plots in figures.items():
        assert plots, name


def test_legends_sit_outside_the_data(figures):
    for name, plots in figures.items():
        for p in plots:
            assert not [r for r in p.center if isinstance(r, Legend)], f"{name}: a legend inside the frame"
            for lg in p.select(type=Legend):
                assert lg in p.right + p.below + p.left + p.above, name
                assert lg.click_policy == "hide", name


# no figure is exempt any more (the LLM views were, until their axes got formatters)
_FORMATTER_EXEMPT: tuple[str, ...] = ()


def test_numeric_axes_have_readable_tick_formatters(figures):
    for name, plots in figures.items():
        if name.startswith(_FORMATTER_EXEMPT):
            continue
        for p in plots:
            for ax in p.xaxis + p.yaxis + [a for a in p.right + p.left if hasattr(a, "formatter")]:
                if isinstance(ax, CategoricalAxis):
                    continue
                assert type(ax.formatter) not in (BasicTickFormatter, LogTickFormatter), \
                    f"{name}: {ax.axis_label!r} keeps bokeh's default formatter"


def test_log_axes_with_few_decades_get_labelled_ticks():
    from bokeh.plotting import figure

    assert C.log_ticks(1.0, 3.0) == [1.0, 2.0]
    assert C.log_ticks(60.0, 3600.0) == [100.0, 200.0, 500.0, 1000.0, 2000.0]
    assert C.log_ticks(1e-6, 1.0) == [10.0 ** k for k in range(-6, 1)]
    fig = figure(x_axis_type="log")
    C.format_axis(fig.xaxis, "seconds", lo=60.0, hi=3600.0)
    assert isinstance(fig.xaxis[0].ticker, FixedTicker) and 500.0 in fig.xaxis[0].ticker.ticks
    # the crossover plot (all algorithms relative to the fastest) labels 1, 2, 5, 10
    from hpclab.viz.collectives import crossover_figure

    ticks = crossover_figure().yaxis[0].ticker.ticks
    assert {1.0, 2.0, 5.0, 10.0} <= set(ticks)


def test_count_axes_have_integer_ticks(figures):
    for name in ("pools.timeline", "simulate.instances", "platform.nodes"):
        ax = figures[name][0].yaxis[0]
        assert getattr(ax.ticker, "min_interval", 0) >= 1, name


def test_one_colour_per_named_thing_across_all_figures(figures):
    seen: dict[str, dict[str, str]] = {}
    for name, plots in figures.items():
        for p in plots:
            for label, (colour, _dash, _glyph) in _entries(p):
                thing = _named(label)
                if thing in C.COLORS:
                    assert colour == C.COLORS[thing].lower(), f"{name}: {thing} drawn {colour}"
                    seen.setdefault(thing, {})[name] = colour
    # the fabrics keep their colours across the collectives and CAE plots
    assert {"tcp-vpc", "erdma", "rdma-hpn7"} <= set(seen)
    for thing in ("tcp-vpc", "erdma"):
        assert len(set(seen[thing].values())) == 1
        assert any(k.startswith("collectives") for k in seen[thing])
        assert any(k.startswith("cae") for k in seen[thing])


def test_no_two_legend_entries_of_a_figure_look_alike(figures):
    for name, plots in figures.items():
        for p in plots:
            looks = [look for _label, look in _entries(p)]
            assert len(looks) == len(set(looks)), f"{name}: two legend entries share colour and dash"


def test_global_is_not_hidden_under_global_spot(figures):
    looks = {_named(label): look for label, look in _entries(figures["simulate.cores"][0])}
    assert looks["global"][0] != looks["global-spot"][0]


def test_instances_are_not_drawn_on_the_scale_of_the_queue(figures):
    fig = figures["simulate.instances"][0]
    queue = [r for r in fig.renderers if isinstance(r, GlyphRenderer) and r.name == "queued"]
    assert queue and queue[0].y_range_name == "tasks"
    assert queue[0] not in fig.y_range.renderers and fig.y_range.renderers  # left axis: instances only


def test_panels_have_data_on_first_render(figures):
    for name, plots in figures.items():
        if ".panel" not in name and not name.endswith("_panel") and name != "pools.view":
            continue
        for p in plots:
            for r in p.renderers:
                if not isinstance(r, GlyphRenderer) or not isinstance(r.data_source, ColumnDataSource):
                    continue
                data = r.data_source.data
                if not data:
                    continue
                n = max(len(v) for v in data.values())
                assert n > 0, f"{name}: an empty source on first render ({type(r.glyph).__name__})"


def test_pool_panel_shows_the_run_it_was_given(burst):
    from hpclab.viz import pools

    panel = pools.pool_panel(burst)
    timeline = panel.view.sources["timeline"].data
    assert len(set(timeline["instance"])) == burst.instances
    assert panel.view.sources["cost"].data["y"][-1] == pytest.approx(burst.total_cost, rel=1e-9)
    assert f"{burst.n_tasks:,} tasks" in panel.summary.value and panel.last is burst


def test_colors_for_keeps_names_and_never_repeats():
    names = ["erdma", "tcp-vpc", "worker 0", "worker 1", "erdma-like"]
    cols = C.colors_for(names)
    assert cols[0] == C.COLORS["erdma"] and cols[1] == C.COLORS["tcp-vpc"]
    assert len(set(cols)) == len(cols)
    assert C.color("global-spot+hysteresis") == C.COLORS["global-spot"]
    with pytest.raises(ValueError, match="kind must be one of"):
        C.format_axis([], "furlongs")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_tick_formatters_print_what_a_person_reads():
    def run(fmt, ticks):
        names = "".join(", " + json.dumps(k) for k in fmt.args)
        vals = "".join(", " + json.dumps(v) for v in fmt.args.values())
        js = (f"const f = new Function('tick'{names}, {json.dumps(fmt.code)});\n"
              f"console.log(JSON.stringify({json.dumps(ticks)}.map(t => f(t{vals}))));")
        out = subprocess.run(["node", "-e", js], capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    assert run(C.si_formatter(), [0, 0.5, 1000, 25_000, 100_000, 1.5e6]) == ["0", "0.5", "1k", "25k", "100k", "1.5M"]
    assert run(C.si_formatter("s"), [1e-5, 2.5e-4, 0.5, 3600]) == ["10 µs", "250 µs", "500 ms", "3,600 s"]
    assert run(C.si_formatter("B/s"), [3.8e11, 1.25e9]) == ["380 GB/s", "1.25 GB/s"]
    assert run(C.usd_formatter(), [0, 0.02, 0.5, 12, 120_000, 1.2e6, 2.417e5]) == \
        ["$0", "$0.02", "$0.50", "$12", "$120k", "$1.2M", "$242k"]
    assert run(C.bytes_formatter(), [8, 1024, 2**20, 8 * 2**30]) == ["8 B", "1 KiB", "1 MiB", "8 GiB"]


def test_llm_step_parts_keep_the_colours_of_the_map(figures):
    from hpclab.workloads.llm import BREAKDOWN

    fig = figures["llm.breakdown"][0]
    drawn = {r.name: str(r.glyph.fill_color).lower() for r in fig.renderers if r.name in BREAKDOWN}
    assert set(drawn) == set(BREAKDOWN)
    for part, colour in drawn.items():
        assert colour == C.COLORS[part].lower(), part
