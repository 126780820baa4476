"""Views of the virtual clock: cores, instances and cost over time, and a widget panel.

Figures take :class:`~hpclab.elastic.simulate.SimResult` objects (their ``timeseries``
Dataset); :func:`simulate_panel` re-runs a campaign when a widget changes and replaces the data
of its figures' ``ColumnDataSource`` in place.
"""

from __future__ import annotations

import math

import numpy as np

from hpclab.elastic.policies import policy_names
from hpclab.elastic.simulate import campaign
from hpclab.viz._common import COLORS, as_widget, colors_for, format_axis, outside_legend

__all__ = ["cores_figure", "cost_figure", "instances_figure", "panel_model", "simulate_panel",
           "summary_html", "SCALES"]

#: panel scales: cores (tasks are 10 per core)
SCALES = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
_SPOT_POLICIES = ("spot-first", "global-spot")


def _fig(title, y_label, **kw):
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = figure(title=title, width=kw.pop("width", 720), height=kw.pop("height", 300),
                 x_axis_label="virtual time [h]", y_axis_label=y_label,
                 tools="pan,wheel_zoom,box_zoom,reset,save", **kw)
    fig.add_tools(HoverTool(tooltips=[("series", "$name"), ("t [h]", "@x{0.00}"), ("y", "@y{0,0.[00]}")]))
    format_axis(fig.xaxis, "hours")
    return fig



def _width(i: int) -> float:
    """Line width of the i-th result: 5, 3, 1.5, 1.5... (a later line never covers an earlier one)."""
    return (5.0, 3.0)[i] if i < 2 else 1.5


def _label(r, labels, i):
    return labels[i] if labels is not None else r.policy


def cores_figure(results, labels=None):
    """Running physical cores over virtual time, one line per result (dashed: the spot part)."""
    from bokeh.models import ColumnDataSource

    results = results if isinstance(results, (list, tuple)) else [results]
    fig = _fig("Cores running over virtual time (dashed: on spot)", "cores")
    colors = colors_for([r.policy for r in results])
    for i, r in enumerate(results):
        ts = r.timeseries
        x = ts["time"].values / 3600.0
        c = colors[i]
        name = _label(r, labels, i)
        # each later result a thinner line: where two results coincide (global and global-spot
        # often do) the earlier one shows as a border around the later one, not hidden under it
        fig.line("x", "y", source=ColumnDataSource({"x": x, "y": ts["cores"].sum("market").values}),
                 color=c, line_width=_width(i), legend_label=name, name=name)
        fig.line("x", "y", source=ColumnDataSource({"x": x, "y": ts["cores"].sel(market="spot").values}),
                 color=c, line_width=1.5, line_dash="dashed", name=f"{name} (spot)")
    format_axis(fig.yaxis, "si")
    return outside_legend(fig, "below", ncols=2)


def cost_figure(results, labels=None):
    """Cost accrued over virtual time (USD), one line per result."""
    from bokeh.models import ColumnDataSource

    results = results if isinstance(results, (list, tuple)) else [results]
    fig = _fig("Cost accrued over virtual time", "cost [USD]")
    colors = colors_for([r.policy for r in results])
    for i, r in enumerate(results):
        ts = r.timeseries
        name = _label(r, labels, i)
        fig.line("x", "y", source=ColumnDataSource({"x": ts["time"].values / 3600.0, "y": ts["cost"].values}),
                 color=colors[i], line_width=_width(i), legend_label=name, name=name)
    format_axis(fig.yaxis, "usd")
    return outside_legend(fig, "below", ncols=2)


def instances_figure(result):
    """Instances by lifecycle state (booting, running, draining) on the left axis and queued tasks
    on the right axis; each axis is scaled to its own series only (the instance counts are never
    drawn on the scale of the queue)."""
    from bokeh.models import ColumnDataSource, DataRange1d, LinearAxis, Range1d

    ts = result.timeseries
    x = ts["time"].values / 3600.0
    fig = _fig(f"{result.policy}: instances by state (left axis), queued tasks (grey, right axis)",
               "instances")
    by_state = ts["instances"].sum(("itype", "zone"))
    states = [str(s) for s in by_state["state"].values]
    lines = []
    for state, c in zip(states, colors_for(states)):
        lines.append(fig.line("x", "y", source=ColumnDataSource({"x": x, "y": by_state.sel(state=state).values}),
                              color=c, line_width=2.5, legend_label=state, name=state))
    fig.y_range = DataRange1d(renderers=lines, start=0)
    q = ts["queued"].values
    fig.extra_y_ranges = {"tasks": Range1d(0, max(1.0, float(q.max()) * 1.05))}
    right = LinearAxis(y_range_name="tasks", axis_label="queued tasks")
    format_axis(right, "si")
    fig.add_layout(right, "right")
    fig.line("x", "y", source=ColumnDataSource({"x": x, "y": q}), y_range_name="tasks", color=COLORS["single-zone"],
             line_width=1.5, line_dash="dashed", legend_label="queued tasks (right axis)", name="queued")
    format_axis(fig.yaxis[0], "count")
    return outside_legend(fig, "below", ncols=4)


def summary_html(s: dict, deadline_h: float | None = None) -> str:
    """One paragraph of the summary of a run."""
    done = s["completed"] == s["tasks"]
    mk = s["makespan_s"] / 3600.0 if math.isfinite(s["makespan_s"]) else math.nan
    met = ""
    if deadline_h is not None and done:
        met = (" <b style='color:#2ca02c'>meets</b>" if mk <= deadline_h else
               " <b style='color:#d62728'>misses</b>") + f" the {deadline_h:g} h deadline;"
    finished = f"makespan <b>{mk:.2f} h</b>;{met}" if done else \
        f"<b>{s['completed']:,} of {s['tasks']:,}</b> tasks done;"
    return (f"<b>{s['policy']}</b>: {finished} cost <b>{s['cost_usd']:,.0f} USD</b>; peak "
            f"<b>{s['peak_cores']:,}</b> cores; utilisation {s['utilisation']:.0%}; "
            f"{s['refusals']:,} instances refused; {s['reclaims']:,} spot reclaims, work redone "
            f"{s['work_redone'] / 3600:,.0f} core-h; simulated in {s['wall_s']:.2f} s.")


def panel_model(policy="global-spot", cores=2000, deadline_h=8.0, spot_share=1.0, capacity=1.0,
                tasks_per_core=10, mean_work=1800.0, seed=0, **kw) -> dict:
    """Run one campaign for the panel and return the columns its figures draw.

    Returns a dict with ``cores`` (x in hours, total, spot), ``cost`` (x, y), ``deadline``
    (x, y of a vertical marker), ``summary`` (HTML) and ``result`` (the SimResult).
    """
    params = dict(policy=policy, mean_work=mean_work, window=2 * 3600.0, seed=seed, capacity=capacity,
                  tick=60.0, horizon=max(3 * deadline_h, 24.0) * 3600.0)
    if policy in _SPOT_POLICIES:
        params["spot_share"] = spot_share
    if policy == "deadline-budget":
        params.update(deadline=deadline_h * 3600.0, budget=1e12)
    params.update(kw)
    r = campaign(int(cores), int(cores * tasks_per_core), **params)
    ts = r.timeseries
    x = ts["time"].values / 3600.0
    total = ts["cores"].sum("market").values
    top = float(max(total.max() if total.size else 0.0, 1.0))
    return {"cores": {"x": x, "total": total, "spot": ts["cores"].sel(market="spot").values},
            "cost": {"x": x, "y": ts["cost"].values},
            "deadline": {"x": [deadline_h, deadline_h], "y": [0.0, top]},
            "summary": summary_html(r.summary, deadline_h), "result": r}


def simulate_panel(policy="global-spot", cores=2000, deadline_h=8.0, spot_share=1.0, capacity=1.0,
                   **kw):
    """An ipywidgets panel: policy, scale, deadline, spot share and zone capacity drive a campaign
    on the virtual clock; cores over time (total, spot) and cost over time are redrawn in place.

    ``scale`` is the core quota (tasks: 10 per core, lognormal, mean 30 reference core-minutes,
    arriving over 2 h); ``deadline`` is the target of ``deadline-budget`` and a marker for the
    others; ``spot share`` applies to ``spot-first`` and ``global-spot``; ``zone capacity`` scales
    every zone's catalog capacity. Other keywords go to :func:`panel_model`.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets``, ``sources`` (``cores``, ``cost``, ``deadline``), ``figures``,
        ``summary`` (HTML widget) and ``last`` (the latest SimResult).
    """
    import ipywidgets as w
    from bokeh.models import ColumnDataSource

    scales = sorted(set(SCALES) | {int(cores)})
    controls = {
        "policy": w.Dropdown(options=list(policy_names()), value=policy, description="policy"),
        "cores": w.SelectionSlider(options=[(f"{c:,}", c) for c in scales], value=int(cores),
                                   description="scale (cores)", continuous_update=False,
                                   style={"description_width": "initial"}),
        "deadline_h": w.FloatSlider(value=deadline_h, min=1.0, max=24.0, step=0.5, description="deadline [h]",
                                    continuous_update=False, style={"description_width": "initial"}),
        "spot_share": w.FloatSlider(value=spot_share, min=0.0, max=1.0, step=0.05, description="spot share",
                                    continuous_update=False, style={"description_width": "initial"}),
        "capacity": w.FloatLogSlider(value=capacity, base=10, min=-3, max=0, step=0.25,
                                     description="zone capacity", continuous_update=False,
                                     style={"description_width": "initial"}),
    }
    first = panel_model(policy, cores, deadline_h, spot_share, capacity, **kw)
    src = {"cores": ColumnDataSource(first["cores"]), "cost": ColumnDataSource(first["cost"]),
           "deadline": ColumnDataSource(first["deadline"])}
    f_cores = _fig("Cores running (dashed: on spot; red: deadline)", "cores", height=280)
    f_cores.line("x", "total", source=src["cores"], color=COLORS["on-demand"], line_width=2.5,
                 legend_label="all markets", name="all")
    f_cores.line("x", "spot", source=src["cores"], color=COLORS["spot"], line_width=2, line_dash="dashed",
                 legend_label="spot", name="spot")
    f_cores.line("x", "y", source=src["deadline"], color=COLORS["tcp-vpc"], line_width=2, line_dash="dotted",
                 legend_label="deadline", name="deadline")
    format_axis(f_cores.yaxis, "si")
    outside_legend(f_cores, "right")
    f_cost = _fig("Cost accrued", "cost [USD]", height=240)
    f_cost.line("x", "y", source=src["cost"], color=COLORS["on-demand"], line_width=2.5, name="cost")
    format_axis(f_cost.yaxis, "usd")
    f_cost.min_border_right = 120  # lines its frame up with the cores figure (legend on the right)
    summary = w.HTML(first["summary"])
    box = w.VBox([w.HBox([controls["policy"], controls["cores"]]),
                  w.HBox([controls["deadline_h"], controls["spot_share"], controls["capacity"]]),
                  summary, as_widget(f_cores), as_widget(f_cost)])
    box.last = first["result"]

    def update(_change=None):
        v = {k: c.value for k, c in controls.items()}
        controls["spot_share"].disabled = v["policy"] not in _SPOT_POLICIES
        m = panel_model(v["policy"], v["cores"], v["deadline_h"], v["spot_share"], v["capacity"], **kw)
        src["cores"].data = m["cores"]
        src["cost"].data = m["cost"]
        src["deadline"].data = m["deadline"]
        summary.value = m["summary"]
        box.last = m["result"]

    for c in controls.values():
        c.observe(update, names="value")
    controls["spot_share"].disabled = policy not in _SPOT_POLICIES
    box.widgets, box.sources, box.figures, box.summary = controls, src, (f_cores, f_cost), summary
    return box
