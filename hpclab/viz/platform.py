"""Views of the unified platform: waiting time, cost and utilisation side by side, nodes over time,
and a widget panel for the workload mix and the cluster size.

Figures take the Dataset of :func:`hpclab.platform.replay_each` (dims ``run``, ``kind``,
``quantile``, ``pool``) or a :class:`hpclab.platform.PlatformResult`. :func:`platform_panel`
replays a mixed workload on separate clusters and on the unified platform for the chosen mix,
cluster size, load, backfill and placement, and replaces the figures'
``ColumnDataSource.data`` in place.
"""

from __future__ import annotations

import numpy as np

from hpclab.viz._common import COLORS, as_widget, colors_for, format_axis, outside_legend

__all__ = ["wait_figure", "cost_figure", "nodes_figure", "panel_model", "platform_panel", "report_part",
           "SCENARIO_COLORS"]

SCENARIO_COLORS = {"separate": COLORS["separate"], "unified": COLORS["unified"]}
_KINDS = ("hpc", "train", "infer", "data")
#: waiting times are drawn on a log axis from this floor (hours; 0.36 s): a zero wait is a stub
_WAIT_FLOOR_H = 1e-4


def _color(name, i):
    return SCENARIO_COLORS.get(name) or colors_for([name])[0]


def _runs(ds):
    """The Dataset along ``run`` (:func:`hpclab.result.compare`; the deprecated
    ``platform.compare`` stacked along ``scenario``)."""
    return ds.rename(scenario="run") if "scenario" in ds.dims else ds


def _wait_data(ds):
    ds = _runs(ds)
    scen = [str(s) for s in ds["run"].values]
    x, mean, p90, color, jobs, names = [], [], [], [], [], []
    for k in _KINDS:
        for i, s in enumerate(scen):
            names.append(s)
            d = ds.sel(run=s, kind=k)
            x.append((k, s))
            m = float(d["wait_mean"])
            q = float(d["wait"].sel(quantile=0.9))
            mean.append(m / 3600.0 if np.isfinite(m) else 0.0)
            p90.append(q / 3600.0 if np.isfinite(q) else 0.0)
            color.append(_color(s, i))
            jobs.append(int(d["jobs"]))
    floor = _WAIT_FLOOR_H
    return {"x": x, "mean": mean, "p90": p90, "color": color, "jobs": jobs, "scenario": names,
            "top": [max(m, floor) for m in mean], "p90_top": [max(q, floor) for q in p90],
            "bottom": [floor] * len(x)}


def wait_figure(ds, width: int = 720, height: int = 300):
    """Mean waiting time per job kind and scenario (bars; dashes: 90th percentile), in hours on a
    log axis (waits span seconds to hours: every job kind stays visible). A wait below 0.36 s
    (including none) is drawn as a stub at that floor."""
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    data = _wait_data(ds)
    src = ColumnDataSource(data)
    fig = figure(title="Waiting time per job kind (bar: mean, dash: 90th percentile; log axis)", width=width,
                 height=height, x_range=FactorRange(*data["x"]), y_axis_type="log",
                 y_axis_label="waiting time [h]", tools="pan,wheel_zoom,reset,save,hover",
                 tooltips=[("kind, scenario", "@x"), ("mean [h]", "@mean{0.000}"), ("p90 [h]", "@p90{0.000}"),
                           ("jobs", "@jobs")])
    fig.vbar(x="x", top="top", bottom="bottom", width=0.8, source=src, fill_color="color", line_color="color",
             legend_field="scenario")
    fig.scatter(x="x", y="p90_top", source=src, marker="dash", size=20, color="black",
                legend_label="90th percentile")
    fig.xaxis.major_label_orientation = 0.6
    # fixed decade ticks from 0.36 s to 1,000 h: the panel's new data stays labelled
    format_axis(fig.yaxis, "plain", lo=_WAIT_FLOOR_H, hi=1e3)
    outside_legend(fig, "right")
    fig._hpclab_sources = {"wait": src}
    return fig


def _cost_data(ds):
    ds = _runs(ds)
    scen = [str(s) for s in ds["run"].values]
    return {"scenario": scen,
            "cost": [float(ds["total_cost"].sel(run=s)) for s in scen],
            "util": [float(ds["utilisation_total"].sel(run=s)) for s in scen],
            "color": [_color(s, i) for i, s in enumerate(scen)]}


def cost_figure(ds, width: int = 720, height: int = 260):
    """Total bill (USD) and utilisation (busy / paid capacity, weighted by cost) per scenario."""
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    data = _cost_data(ds)
    src = ColumnDataSource(data)
    w = width // 2
    cost = figure(title="Cost of the replay", x_range=data["scenario"], width=w, height=height,
                  y_axis_label="cost [USD]", tools="save,hover", tooltips=[("USD", "@cost{$0,0}")])
    cost.vbar(x="scenario", top="cost", width=0.7, source=src, fill_color="color", line_color="color")
    util = figure(title="Utilisation of paid nodes", x_range=data["scenario"], width=w, height=height,
                  y_range=(0, 1.05), y_axis_label="busy / paid", tools="save,hover",
                  tooltips=[("utilisation", "@util{0.00}")])
    util.vbar(x="scenario", top="util", width=0.7, source=src, fill_color="color", line_color="color")
    cost.y_range.start = 0
    format_axis(cost.yaxis, "usd")
    format_axis(util.yaxis, "fraction")
    lay = row(cost, util)
    lay._hpclab_sources = {"cost": src}
    lay._hpclab_figures = (cost, util)
    return lay


def _nodes_data(results: dict, max_points: int = 1500):
    xs, ys, names, colors = [], [], [], []
    for i, (label, res) in enumerate(results.items()):
        inst = res.instances
        for j, pool in enumerate(res.pools.index):
            sel = inst[inst["pool"] == pool]
            if not len(sel):
                continue
            t = np.concatenate([sel["launch"].to_numpy(), sel["end"].to_numpy()])
            d = np.concatenate([np.ones(len(sel)), -np.ones(len(sel))])
            order = np.lexsort((d, t))  # at one instant, ends before launches
            t, n = t[order], np.cumsum(d[order])
            if t.size > max_points:
                keep = np.unique(np.linspace(0, t.size - 1, max_points).astype(int))
                t, n = t[keep], n[keep]
            t0 = float(res.jobs["submit"].min()) if len(res.jobs) else 0.0
            xs.append(((t - t0) / 86400.0).tolist())
            ys.append(n.tolist())
            names.append(f"{label}: {pool}")
    colors = colors_for(names)
    return {"xs": xs, "ys": ys, "name": names, "color": colors}


def nodes_figure(results: dict, width: int = 720, height: int = 280):
    """Nodes paid for over time (days), one line per scenario and pool, from
    ``{label: PlatformResult}``."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    src = ColumnDataSource(_nodes_data(results))
    fig = figure(title="Nodes paid for over time", width=width, height=height, x_axis_label="days",
                 y_axis_label="nodes", tools="pan,wheel_zoom,box_zoom,reset,save")
    fig.multi_line("xs", "ys", source=src, line_color="color", line_width=2, legend_field="name")
    format_axis(fig.xaxis, "plain")
    format_axis(fig.yaxis, "count")
    outside_legend(fig, "right")
    fig._hpclab_sources = {"nodes": src}
    return fig


def panel_model(n_jobs=2000, ai_share=0.3, cpu_nodes=64, gpu_nodes=16, load=0.6, backfill=True,
                placement="topology", seed=1):
    """What the panel shows, as plain data: a mixed workload replayed on separate fixed clusters
    and on the unified elastic platform; the compare Dataset, the figures' source data and an
    HTML summary."""
    from hpclab import platform as P

    jobs = P.mixed_workload(int(n_jobs), ai_share=float(ai_share), cpu_nodes=int(cpu_nodes),
                            gpu_nodes=int(gpu_nodes), load=float(load), seed=int(seed))
    common = dict(cpu_nodes=int(cpu_nodes), gpu_nodes=int(gpu_nodes), backfill=bool(backfill),
                  placement=placement)
    from hpclab.result import compare

    results = {label: P.replay(jobs, policy=label, **common) for label in ("separate", "unified")}
    ds = compare(results)
    sep, uni = ds.sel(run="separate"), ds.sel(run="unified")
    hpc_one = int(uni["in_one_segment"].sel(kind="hpc"))
    hpc_n = int(uni["gangs"].sel(kind="hpc"))
    summary = (f"<p>{int(n_jobs):,} jobs ({100 * float(ai_share):.0f} % AI), offered load {float(load):.2f} on "
               f"{int(cpu_nodes)} CPU + {int(gpu_nodes)} GPU nodes. Cost: separate <b>{float(sep['total_cost']):,.0f} "
               f"USD</b>, unified <b>{float(uni['total_cost']):,.0f} USD</b>; utilisation "
               f"{float(sep['utilisation_total']):.2f} vs {float(uni['utilisation_total']):.2f}. Mean HPC wait "
               f"{float(sep['wait_mean'].sel(kind='hpc')) / 60:,.1f} vs "
               f"{float(uni['wait_mean'].sel(kind='hpc')) / 60:,.1f} min; HPC gangs in one segment (unified): "
               f"{hpc_one}/{hpc_n}.</p>")
    return {"dataset": ds, "results": results, "wait": _wait_data(ds), "cost": _cost_data(ds),
            "nodes": _nodes_data(results), "summary": summary}


def platform_panel(n_jobs=2000, ai_share=0.3, cpu_nodes=64, gpu_nodes=16, load=0.6, backfill=True,
                   placement="topology", seed=1):
    """An ipywidgets panel: AI share, CPU and GPU cluster size, load, jobs, backfill and placement
    drive the waiting-time, cost/utilisation and nodes-over-time figures, updated in place.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets`` (the controls), ``sources`` (``wait``, ``cost``, ``nodes``),
        ``figures`` and ``summary`` (HTML widget), for scripting and tests.
    """
    import ipywidgets as w
    from bokeh.layouts import column

    controls = {
        "ai_share": w.FloatSlider(value=float(ai_share), min=0.0, max=1.0, step=0.05, description="AI share",
                                  continuous_update=False),
        "cpu_nodes": w.IntSlider(value=int(cpu_nodes), min=8, max=1024, step=8, description="CPU nodes",
                                 continuous_update=False),
        "gpu_nodes": w.IntSlider(value=int(gpu_nodes), min=2, max=256, step=2, description="GPU nodes",
                                 continuous_update=False),
        "load": w.FloatSlider(value=float(load), min=0.1, max=1.2, step=0.05, description="load",
                              continuous_update=False),
        "n_jobs": w.IntSlider(value=int(n_jobs), min=200, max=100_000, step=200, description="jobs",
                              continuous_update=False),
        "backfill": w.Checkbox(value=bool(backfill), description="EASY backfill"),
        "placement": w.Dropdown(options=["topology", "linear"], value=placement, description="placement"),
    }
    first = panel_model(n_jobs, ai_share, cpu_nodes, gpu_nodes, load, backfill, placement, seed)
    wait = wait_figure(first["dataset"])
    cost = cost_figure(first["dataset"])
    nodes = nodes_figure(first["results"])
    sources = {**wait._hpclab_sources, **cost._hpclab_sources, **nodes._hpclab_sources}
    summary = w.HTML(first["summary"])

    def update(_change=None):
        v = {k: c.value for k, c in controls.items()}
        try:
            m = panel_model(v["n_jobs"], v["ai_share"], v["cpu_nodes"], v["gpu_nodes"], v["load"], v["backfill"],
                            v["placement"], seed)
        except ValueError as exc:  # an HpclabError: show it, keep the last figures
            summary.value = f"<p style='color:#b00'>{exc}</p>"
            return
        for key in ("wait", "cost", "nodes"):
            sources[key].data = m[key]
        summary.value = m["summary"]

    for c in controls.values():
        c.observe(update, names="value")
    box = w.VBox([w.HBox([controls["ai_share"], controls["load"], controls["n_jobs"]]),
                  w.HBox([controls["cpu_nodes"], controls["gpu_nodes"]]),
                  w.HBox([controls["backfill"], controls["placement"]]), summary,
                  as_widget(column(wait, cost, nodes))])
    box.widgets = controls
    box.sources = sources
    box.figures = {"wait": wait, "cost": cost, "nodes": nodes}
    box.summary = summary
    return box


def report_part():
    """The platform section of ``hpclab report``: a mixed HPC + AI workload replayed on two
    separate fixed clusters and on the unified elastic platform."""
    import pandas as pd

    from hpclab.viz._common import Part

    m = panel_model(n_jobs=2000, ai_share=0.3, cpu_nodes=64, gpu_nodes=16, load=0.6, seed=1)
    ds = m["dataset"]
    rows = {}
    for s in ds["run"].values:
        d = ds.sel(run=s)
        rows[str(s)] = {"cost [USD]": float(d["total_cost"]), "utilisation": float(d["utilisation_total"]),
                        "HPC mean wait [min]": float(d["wait_mean"].sel(kind="hpc")) / 60,
                        "HPC mean bounded slowdown": float(d["bsld_mean"].sel(kind="hpc")),
                        "AI training mean wait [min]": float(d["wait_mean"].sel(kind="train")) / 60,
                        "HPC gangs in one segment": int(d["in_one_segment"].sel(kind="hpc")),
                        "jobs done": int(d["jobs"].sum())}
    return Part(figures=[wait_figure(ds), cost_figure(ds), nodes_figure(m["results"])],
                table=pd.DataFrame(rows).T,
                text="2,000 jobs (70 % Lublin-Feitelson HPC gangs, 30 % AI training, inference and data "
                     "pods) offering a load of 0.6 to 64 CPU and 16 GPU nodes, replayed on the virtual "
                     "clock: two separate fixed clusters (Slurm-like EASY backfill for HPC, Kubernetes-like "
                     "gang scheduling and bin packing for AI) against one front routing both onto elastic "
                     "pools that boot on demand and are billed per second.")
