"""Views of elastic pools: a timeline of instances by lifecycle state, the running cost, a live
view refreshed while work runs, and a widget panel to run a burst again.

Figures read the pool's event log (an ``xarray.Dataset``, see :mod:`hpclab.elastic.events`) or
the pool itself; :class:`PoolView` updates its ``ColumnDataSource``\\ s in place, so in JupyterLab
the plot changes while the work runs, without a redraw.
"""

from __future__ import annotations

import html

import numpy as np

from hpclab.elastic.events import events_from_dataset
from hpclab.elastic.state import LIFECYCLE
from hpclab.viz._common import COLORS, as_widget, format_axis, outside_legend

__all__ = ["timeline_data", "cost_data", "timeline_figure", "cost_figure", "PoolView",
           "pool_panel", "STATE_COLORS"]

#: colour of each lifecycle state on the timeline
STATE_COLORS = {s: COLORS[s] for s in LIFECYCLE}
_SHOWN = ("requested", "booting", "running", "draining")


def _events(source):
    """(event table, pool time now, catalog) from a pool, an EventLog, a Dataset or a frame."""
    if hasattr(source, "log") and hasattr(source, "now"):  # a pool
        return source.log.to_frame(), source.now(), source.catalog
    now = None
    df = events_from_dataset(source)
    return df, now, None


def timeline_data(source, now: float | None = None) -> dict:
    """Columns of the timeline: one bar per instance and state it was in.

    Returns a dict of equal-length lists: ``y`` (instance row, first launched at the bottom),
    ``left``/``right`` (pool seconds; an instance still in a state ends at ``now``), ``state``,
    ``color``, ``instance``, ``itype``, ``zone``, ``market``, ``reason``.
    """
    df, pool_now, _ = _events(source)
    now = pool_now if now is None else now
    if now is None:
        now = float(df["time"].max()) if len(df) else 0.0
    cols = {k: [] for k in ("y", "left", "right", "state", "color", "instance", "itype", "zone",
                            "market", "reason", "alpha")}
    order = {inst: k for k, inst in enumerate(dict.fromkeys(df["instance"]))}
    for inst, g in df.groupby("instance", sort=False):
        g = g.sort_values("time", kind="stable")
        times, states, reasons = list(g["time"]), list(g["state"]), list(g["reason"])
        for k, (t, s, r) in enumerate(zip(times, states, reasons)):
            if s == "terminated":
                continue
            end = times[k + 1] if k + 1 < len(times) else now
            cols["y"].append(order[inst])
            cols["left"].append(float(t))
            cols["right"].append(float(max(end, t)))
            cols["state"].append(s)
            cols["color"].append(STATE_COLORS[s])
            cols["instance"].append(inst)
            cols["itype"].append(str(g["itype"].iloc[0]))
            cols["zone"].append(str(g["zone"].iloc[0]))
            cols["market"].append(str(g["market"].iloc[0]))
            cols["reason"].append(str(r))
            cols["alpha"].append(0.55 if g["market"].iloc[0] == "spot" else 0.95)
    return cols


def cost_data(source, catalog=None, now: float | None = None, points: int = 200) -> dict:
    """The running cost (USD) over pool time, metered as :mod:`hpclab.elastic.billing` does.

    For each instance, billed from ``start`` (first booting/running/draining event) to ``end``:
    cost(t) = price * max(ceil(min(t, end) - start), min_charge) for t >= start, else 0.
    """
    from hpclab.elastic import billing

    df, pool_now, pool_cat = _events(source)
    from hpclab.catalog import resolve

    cat = resolve(catalog or pool_cat)
    now = pool_now if now is None else now
    if now is None:
        now = float(df["time"].max()) if len(df) else 0.0
    if not len(df):
        return {"x": [0.0, now], "y": [0.0, 0.0]}
    iv = billing.intervals_from_log(df)
    if not len(iv):
        return {"x": [0.0, now], "y": [0.0, 0.0]}
    per = billing.bill_instances(iv, cat, until=now)
    start = per["start"].to_numpy(float)
    end = per["end"].to_numpy(float)
    minc = np.array([cat.instance(t).min_charge for t in per["itype"]])
    price = per["price"].to_numpy(float)
    t = np.linspace(0.0, max(now, 1e-9), points)
    elapsed = np.minimum(t[:, None], end[None, :]) - start[None, :]
    return {"x": t, "y": billing.charge(elapsed, price[None, :], minc[None, :]).sum(axis=1)}


def _timeline_fig(height=260, width=720):
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = figure(title="Instances by lifecycle state (faded: spot)", width=width, height=height,
                 x_axis_label="pool time [s]", y_axis_label="instance (launch order)",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    format_axis(fig.xaxis, "plain")
    format_axis(fig.yaxis, "count")
    # an invisible anchor at (0, 0): the ranges have a start before the first event arrives
    # (an empty plot would log bokeh's "could not set initial ranges")
    fig.scatter([0.0], [0.0], alpha=0.0, size=1)
    fig.add_tools(HoverTool(tooltips=[("instance", "@instance"), ("type", "@itype"),
                                      ("zone", "@zone"), ("market", "@market"),
                                      ("state", "@state"), ("from", "@left{0.0} s"),
                                      ("to", "@right{0.0} s"), ("why", "@reason")]))
    return fig


def _draw_timeline(fig, src):
    fig.hbar(y="y", left="left", right="right", height=0.8, color="color", fill_alpha="alpha",
             line_color=None, source=src)
    # a legend from invisible glyphs, one per state
    for s in _SHOWN:
        fig.scatter([np.nan], [np.nan], color=STATE_COLORS[s], marker="square", size=10,
                    legend_label=s)
    return outside_legend(fig, "right")


def timeline_figure(source, now: float | None = None):
    """A bokeh figure: one row per instance, bars coloured by lifecycle state over pool time."""
    from bokeh.models import ColumnDataSource

    fig = _timeline_fig()
    return _draw_timeline(fig, ColumnDataSource(timeline_data(source, now)))


def cost_figure(source, catalog=None, now: float | None = None):
    """A bokeh figure: the running cost (USD) over pool time."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    fig = figure(title="Cost accrued (per-second billing, minimum charge)", width=720, height=200,
                 x_axis_label="pool time [s]", y_axis_label="cost [USD]",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    fig.line("x", "y", source=ColumnDataSource(cost_data(source, catalog, now)), color=COLORS["spot"],
             line_width=2.5)
    format_axis(fig.xaxis, "plain")
    format_axis(fig.yaxis, "usd")
    return fig


class PoolView:
    """A live view of a pool: the instance timeline and the running cost.

    ``update(pool)`` (or an event Dataset) replaces the data of the figures' ``ColumnDataSource``
    in place; pass it as ``on_update`` to :func:`hpclab.elastic.run_burst`, or call it from your
    own loop. ``widget`` is the figure wrapped for JupyterLab (``jupyter_bokeh``).

    Attributes
    ----------
    figure : bokeh layout (timeline above cost)
    sources : dict of ColumnDataSource (``timeline``, ``cost``)
    updates : int
        How many times the view was refreshed.
    """

    def __init__(self, source=None, width: int = 720):
        from bokeh.layouts import column
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure

        empty_t = {k: [] for k in ("y", "left", "right", "state", "color", "instance", "itype",
                                   "zone", "market", "reason", "alpha")}
        # filled at construction when a run is given (the plots show it on first render)
        self.sources = {"timeline": ColumnDataSource(empty_t if source is None else timeline_data(source)),
                        "cost": ColumnDataSource({"x": [0.0], "y": [0.0]} if source is None else
                                                 cost_data(source))}
        self.timeline = _draw_timeline(_timeline_fig(width=width), self.sources["timeline"])
        self.cost = figure(title="Cost accrued (per-second billing)", width=width, height=190,
                           x_axis_label="pool time [s]", y_axis_label="cost [USD]",
                           x_range=self.timeline.x_range, tools="pan,wheel_zoom,box_zoom,reset,save")
        self.cost.line("x", "y", source=self.sources["cost"], color=COLORS["spot"], line_width=2.5)
        format_axis(self.cost.xaxis, "plain")
        format_axis(self.cost.yaxis, "usd")
        # the cost frame lines up with the timeline's (whose legend sits on the right)
        self.cost.min_border_right = 110
        self.figure = column(self.timeline, self.cost)
        self.updates = 0 if source is None else 1
        self._widget = None

    @property
    def widget(self):
        if self._widget is None:
            self._widget = as_widget(self.figure)
        return self._widget

    def update(self, source) -> None:
        """Redraw from a pool (live) or an event log (after the fact), in place."""
        self.sources["timeline"].data = timeline_data(source)
        self.sources["cost"].data = cost_data(source)
        self.updates += 1


def _bill_html(run) -> str:
    t = run.bill_table()
    rows = "".join(
        f"<tr><td>{html.escape(str(r.itype))}</td><td>{html.escape(str(r.zone))}</td>"
        f"<td>{html.escape(str(r.market))}</td><td style='text-align:right'>{r.instances}</td>"
        f"<td style='text-align:right'>{r.billed_seconds:,.0f}</td>"
        f"<td style='text-align:right'>{r.cost_usd:.4f}</td></tr>" for r in t.itertuples())
    return ("<table><tr><th>type</th><th>zone</th><th>market</th><th>instances</th>"
            "<th>billed s</th><th>USD</th></tr>" + rows + "</table>")


def _summary_html(run) -> str:
    ok = "<b style='color:#2ca02c'>all correct</b>" if run.correct else \
        "<b style='color:#d62728'>WRONG results</b>"
    return (f"{run.n_tasks:,} tasks in <b>{run.wall_seconds:.1f} s</b> wall "
            f"({run.tasks_per_second:,.0f} tasks/s, {run.pool_seconds:,.0f} pool s): {ok}; "
            f"<b>{run.instances}</b> instances, <b>{run.preemptions}</b> spot reclaims; "
            f"cost <b>{run.total_cost:.4f} USD</b>.")


def pool_panel(initial=None, *, n_tasks: int = 2000, policy: str = "spot-first",
               types=("ecs.c8i.8xlarge", "ecs.c8a.8xlarge"), zones=("cn-hangzhou-h", "cn-shanghai-m"),
               spot_share: float = 0.5, fault_rate: float = 0.0, **run_kwargs):
    """An ipywidgets panel to run a burst on an ElasticPool again with other settings.

    Controls: policy, instance mix (types allowed), spot share, fault rate (random reclaims per
    spot instance-hour), number of tasks; "run" starts a burst (:func:`run_burst`) whose
    timeline and cost update in place while it runs; the summary and the bill follow.

    Parameters
    ----------
    initial : BurstRun, optional
        A run to show before the first click.
    run_kwargs
        More arguments for :func:`hpclab.elastic.run_burst` (``max_instances``, ``time_scale``...).

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets`` (dict), ``view`` (:class:`PoolView`), ``summary`` and
        ``bill`` (HTML widgets), ``output`` (Dask's progress bar goes there) and ``last`` (the
        latest BurstRun).
    """
    import ipywidgets as w

    from hpclab import catalog
    from hpclab.elastic import run_burst
    from hpclab.elastic.policies import policy_names

    cat = catalog.default()
    cpu_types = [n for n, i in cat.instances.items() if not i.gpus and
                 any(n in cat.zone(z).capacity for z in zones)]
    style = {"description_width": "initial"}
    controls = {
        "policy": w.Dropdown(options=list(policy_names()), value=policy,
                             description="policy"),
        "types": w.SelectMultiple(options=cpu_types, value=tuple(types), rows=4,
                                  description="instance mix", style=style),
        "spot_share": w.FloatSlider(value=spot_share, min=0.0, max=1.0, step=0.1,
                                    description="spot share", style=style,
                                    continuous_update=False),
        "fault_rate": w.FloatLogSlider(value=max(fault_rate, 1.0), base=10, min=0, max=2.5,
                                       step=0.25, description="reclaims / inst-h", style=style,
                                       continuous_update=False),
        "faults_on": w.Checkbox(value=fault_rate > 0, description="random reclaims"),
        "n_tasks": w.IntSlider(value=n_tasks, min=100, max=20000, step=100, description="tasks",
                               continuous_update=False),
    }
    button = w.Button(description="run", button_style="primary", icon="play")
    # built with the run already shown, so that its plots have data on first render
    view = PoolView(initial.events if initial is not None else None)
    summary = w.HTML("press <b>run</b>")
    bill = w.HTML("")
    output = w.Output()
    box = w.VBox([w.HBox([controls["policy"], controls["n_tasks"]]),
                  w.HBox([controls["types"], w.VBox([controls["spot_share"],
                                                     w.HBox([controls["faults_on"],
                                                             controls["fault_rate"]])])]),
                  button, output, summary, view.widget, bill])
    box.widgets, box.view, box.summary, box.bill, box.output = controls, view, summary, bill, output
    box.button = button
    box.last = None

    def show(run):
        box.last = run
        view.update(run.events)
        summary.value = _summary_html(run)
        bill.value = _bill_html(run)

    def on_run(_b=None):
        v = {k: c.value for k, c in controls.items()}
        if not v["types"]:
            summary.value = "<b style='color:#d62728'>choose at least one instance type</b>"
            return
        button.disabled = True
        summary.value = "running..."
        output.clear_output()
        try:
            with output:
                run = run_burst(v["n_tasks"], policy=v["policy"], types=v["types"], zones=zones,
                                spot_share=v["spot_share"],
                                fault_rate=v["fault_rate"] if v["faults_on"] else 0.0,
                                on_update=view.update, progress=True, **run_kwargs)
            show(run)
        except Exception as exc:  # shown in the panel, one line
            summary.value = f"<b style='color:#d62728'>{html.escape(str(exc))}</b>"
        finally:
            button.disabled = False

    button.on_click(on_run)
    box.run = on_run
    if initial is not None:
        box.last = initial
        summary.value = _summary_html(initial)
        bill.value = _bill_html(initial)
    return box
