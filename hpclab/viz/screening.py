"""Views of a virtual screen: throughput, per-stage cost, enrichment, and the campaign's cost
against its deadline (with the Pareto front), plus two widget panels.

Figure factories take the Datasets of :mod:`hpclab.workloads.screening` and return bokeh figures;
panels return an ipywidgets container whose bokeh figure is updated in place through its
``ColumnDataSource`` (so they are tested by setting widget values).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from bokeh.core.property.vectorization import value
from bokeh.models import ColumnDataSource, HoverTool, Span
from bokeh.plotting import figure

from hpclab.viz._common import COLORS, as_widget, colors_for, format_axis, outside_legend
from hpclab.workloads import screening as scr

__all__ = ["throughput_figure", "stage_cost_figure", "enrichment_figure", "cost_deadline_figure",
           "campaign_timeline_figure", "campaign_panel", "screen_panel", "report_part"]

_STAGE_COLOURS = dict(zip(scr.STAGES, colors_for(scr.STAGES)))
_SCORE_COLOURS = dict(zip(scr.SCORING_STAGES, colors_for(scr.SCORING_STAGES)))


def throughput_figure(tp: xr.Dataset, *, title: str = "Screen throughput") -> figure:
    """Molecules finished per second over the run, total and per worker (:func:`~.throughput`)."""
    fig = figure(title=title, height=300, width=620, x_axis_label="time since first result (s)",
                 y_axis_label="molecules / s", tools="pan,wheel_zoom,box_zoom,reset,save")
    t = tp["time"].values
    workers = [str(w) for w in tp["worker"].values]
    for w, c in zip(workers, colors_for([f"worker {w}" for w in workers])):
        fig.step(t, tp["per_worker"].sel(worker=w).values, mode="center", alpha=0.6,
                 color=c, legend_label=f"worker {w}")
    fig.step(t, tp["molecules_per_second"].values, mode="center", line_width=2, color=COLORS["total"],
             legend_label="total")  # black: COLORS["total"]
    format_axis(fig.xaxis, "plain")
    format_axis(fig.yaxis, "plain")
    return outside_legend(fig, "right")


def _log_hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = values[np.isfinite(values) & (values > 0)]
    return np.histogram(v, edges)[0] / max(v.size, 1)


def stage_cost_figure(costs: xr.Dataset, *, title: str = "Per-molecule cost of each stage") -> figure:
    """Histograms of each stage's per-molecule time on a log axis (:func:`~.stage_costs`): the 3D
    stage's heavy tail shows to the right."""
    sec = costs["seconds"].values
    finite = sec[np.isfinite(sec) & (sec > 0)]
    lo, hi = np.log10(finite.min()) - 0.05, np.log10(finite.max()) + 0.05
    edges = np.logspace(lo, hi, 40)
    fig = figure(title=title, height=300, width=620, x_axis_type="log",
                 x_axis_label="seconds per molecule (one core)", y_axis_label="share of molecules",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    for stage in costs["stage"].values:
        h = _log_hist(costs["seconds"].sel(stage=stage).values, edges)
        mean = float(costs["mean_seconds"].sel(stage=stage))
        label = f"{stage}: mean {mean * 1e3:.2f} ms, {float(costs['ran_fraction'].sel(stage=stage)):.0%} ran"
        fig.quad(left=edges[:-1], right=edges[1:], bottom=0, top=h, alpha=0.45,
                 color=_STAGE_COLOURS.get(str(stage), "grey"), legend_label=label)
    format_axis(fig.xaxis, "seconds", lo=float(edges[0]), hi=float(edges[-1]))
    format_axis(fig.yaxis, "fraction")
    return outside_legend(fig, "below", ncols=2)


def _enrichment_data(q: xr.Dataset) -> dict:
    out = {}
    for stage in q["stage"].values:
        auc = float(q["roc_auc"].sel(stage=stage))
        ef = float(q["ef"].sel(stage=stage).isel(fraction=0))
        out[str(stage)] = dict(x=q["screened"].values * 100, y=q["recovered"].sel(stage=stage).values * 100,
                               label=[f"{stage}: AUC {auc:.2f}, EF{q['fraction'].values[0]:.0%} {ef:.1f}"]
                               * q["screened"].size)
    return out


def enrichment_figure(q: xr.Dataset, *, title: str | None = None):
    """Actives recovered against the share of the library screened, per scoring stage
    (:func:`~.quality`); the diagonal is a random ranking. Returns the figure; its sources are
    in ``fig.select(type=ColumnDataSource)`` named by stage."""
    title = title or f"Enrichment ({q.attrs.get('n_actives', '?')} hidden actives among {q.attrs.get('n_scored', '?')})"
    fig = figure(title=title, height=320, width=620, x_axis_type="log", x_range=(0.1, 100),
                 y_range=(0, 102), x_axis_label="library screened, best first (%)",
                 y_axis_label="actives found (%)", tools="pan,wheel_zoom,box_zoom,reset,save")
    xs = np.geomspace(0.1, 100, 50)
    fig.line(xs, xs, color="grey", line_dash="dashed", legend_label="random")
    for stage, data in _enrichment_data(q).items():
        src = ColumnDataSource(data, name=f"enrichment-{stage}")
        fig.line("x", "y", source=src, line_width=2, color=_SCORE_COLOURS.get(stage, "black"),
                 legend_label=data["label"][0], name=f"curve-{stage}")
    fig.add_layout(Span(location=1.0, dimension="height", line_dash="dotted", line_color="grey"))
    format_axis(fig.xaxis, "plain", lo=0.1, hi=100.0)
    format_axis(fig.yaxis, "plain")
    outside_legend(fig, "right")
    fig.add_tools(HoverTool(tooltips=[("screened %", "@x{0.0}"), ("found %", "@y{0.0}")]))
    return fig


def _campaign_points(camp: xr.Dataset) -> dict:
    """Flatten a campaign Dataset to one row per (zones, n_molecules, deadline, spot_share)."""
    df = camp[["makespan", "cost", "cores", "feasible"]].to_dataframe().reset_index()
    df["series"] = [f"{z} zone{'s' if z != 'one' else ''}, {s:.0%} spot" for z, s in zip(df["zones"], df["spot_share"])]
    return df


def cost_deadline_figure(camp: xr.Dataset, *, title: str = "Campaign cost against makespan"):
    """Cost against makespan for each zone scope and spot share (:func:`~.campaign` swept over
    deadlines), with the Pareto front (no other setup is both faster and cheaper)."""
    df = _campaign_points(camp)
    fig = figure(title=title, height=340, width=620, x_axis_type="log", y_axis_type="log",
                 x_axis_label="makespan (h)", y_axis_label="cost (USD)",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    groups = list(df.groupby("series", sort=False))
    colours = colors_for([name for name, _ in groups])
    for (name, g), colour in zip(groups, colours):
        src = ColumnDataSource(dict(x=g["makespan"].values, y=g["cost"].values, cores=g["cores"].values,
                                    deadline=g["deadline"].values,
                                    feasible=np.where(g["feasible"].values, "yes", "no")))
        fig.scatter("x", "y", source=src, size=6, color=colour, legend_label=name, alpha=0.8)
    front = scr.pareto_front(df["makespan"].values, df["cost"].values)
    fig.line(df["makespan"].values[front], df["cost"].values[front], color="black", line_width=2,
             legend_label="Pareto front")
    fig.add_tools(HoverTool(tooltips=[("makespan h", "@x{0.00}"), ("cost USD", "@y{0,0}"),
                                      ("cores", "@cores{0,0}"), ("deadline h", "@deadline{0.00}"),
                                      ("met", "@feasible")]))
    format_axis(fig.xaxis, "hours", lo=float(np.nanmin(df["makespan"])), hi=float(np.nanmax(df["makespan"])))
    format_axis(fig.yaxis, "usd", lo=float(np.nanmin(df["cost"])), hi=float(np.nanmax(df["cost"])))
    return outside_legend(fig, "right")


def campaign_timeline_figure(sim: xr.Dataset, *, title: str | None = None):
    """A simulated campaign (:func:`~.simulate_campaign`) over time: cores by market and
    molecules screened per second, with the deadline marked."""
    from bokeh.models import DataRange1d, LinearAxis, Range1d

    a = sim.attrs
    title = title or (f"Simulated campaign ({a['policy']}): makespan {a['makespan_h']:.2f} h, "
                      f"cost ${a['cost_usd']:,.0f}, peak {a['peak_cores']:,} cores")
    t = sim["time"].values
    fig = figure(title=title, height=320, width=620, x_axis_label="time (h)",
                 y_axis_label="cores running", tools="pan,wheel_zoom,box_zoom,reset,save")
    bottom = np.zeros_like(t, dtype=float)
    areas = []
    for m in sim["market"].values:
        top = bottom + sim["cores"].sel(market=m).values
        areas.append(fig.varea(x=t, y1=bottom, y2=top, alpha=0.4, color=COLORS.get(str(m), "grey"),
                               legend_label=f"{m} cores"))
        bottom = top
    fig.y_range = DataRange1d(renderers=areas, start=0)  # the cores axis scales to the cores only
    peak = float(np.nanmax(sim["throughput"].values)) if sim["throughput"].size else 1.0
    fig.extra_y_ranges = {"rate": Range1d(0, max(peak, 1.0) * 1.1)}
    right = LinearAxis(y_range_name="rate", axis_label="molecules / s")
    format_axis(right, "si")
    fig.add_layout(right, "right")
    fig.line(t, sim["throughput"].values, y_range_name="rate", color="black", line_width=1.5,
             legend_label="molecules / s")
    fig.add_layout(Span(location=a["deadline_h"], dimension="height", line_dash="dashed",
                        line_color=COLORS["tcp-vpc"]))
    format_axis(fig.xaxis, "hours")
    format_axis(fig.yaxis[0], "si")
    return outside_legend(fig, "below", ncols=3)


# ------------------------------------------------------------------------------------- panels

def _fmt_usd(x: float) -> str:
    return f"${x:,.0f}"


def campaign_panel(inputs: xr.Dataset, *, n_molecules: float = 1e8, deadline_hours: float = 1.5,
                   spot_share: float = 0.9, zones: str = "global", conformers: int = 300,
                   survivor_fraction: float = 1.0):
    """Widgets (library size, deadline, spot share, zones, conformers) over :func:`~.campaign`.

    The figure shows cost against deadline for the chosen setup and for on-demand in one zone
    (the baseline), with a marker at the chosen deadline; the text gives cores, makespan, cost.
    """
    import ipywidgets as w

    size = w.FloatLogSlider(value=n_molecules, base=10, min=5, max=10, step=0.1,
                            description="molecules", readout_format=".2g")
    deadline = w.FloatLogSlider(value=deadline_hours, base=10, min=-1, max=np.log10(168), step=0.05,
                                description="deadline h", readout_format=".3g")
    spot = w.FloatSlider(value=spot_share, min=0, max=1, step=0.05, description="spot share")
    scope = w.ToggleButtons(options=list(scr.ZONE_SCOPES), value=zones, description="zones")
    confs = w.IntSlider(value=conformers, min=1, max=1000, step=1, description="conformers")
    text = w.HTML()
    grid = np.geomspace(0.1, 168, 60)
    src_sel = ColumnDataSource(dict(x=[], y=[]))
    src_base = ColumnDataSource(dict(x=[], y=[]))
    src_pt = ColumnDataSource(dict(x=[], y=[]))
    fig = figure(title="Cost of the campaign against its deadline", height=320, width=620,
                 x_axis_type="log", y_axis_type="log", x_axis_label="deadline (h)",
                 y_axis_label="cost (USD)", tools="pan,wheel_zoom,box_zoom,reset,save")
    fig.line("x", "y", source=src_sel, line_width=2, color=COLORS["global-spot"], legend_label="chosen setup")
    fig.line("x", "y", source=src_base, line_width=2, color=COLORS["on-demand"], line_dash="dashed",
             legend_label="on-demand, one zone")
    fig.scatter("x", "y", source=src_pt, size=10, color="black", legend_label="chosen deadline")
    format_axis(fig.xaxis, "hours", lo=0.1, hi=168.0)
    format_axis(fig.yaxis, "usd")
    outside_legend(fig, "below", ncols=3)

    def update(*_):
        kw = dict(conformers=int(confs.value), survivor_fraction=survivor_fraction)
        sel = scr.estimate_campaign(inputs, size.value, grid, spot.value, scope.value, **kw)
        base = scr.estimate_campaign(inputs, size.value, grid, 0.0, "one", **kw)
        pt = scr.estimate_campaign(inputs, size.value, deadline.value, spot.value, scope.value, **kw)
        met = sel["feasible"].values[0, 0, :, 0]
        src_sel.data = dict(x=grid[met], y=sel["cost"].values[0, 0, met, 0])
        bmet = base["feasible"].values[0, 0, :, 0]
        src_base.data = dict(x=grid[bmet], y=base["cost"].values[0, 0, bmet, 0])
        p = pt.isel(zones=0, n_molecules=0, deadline=0, spot_share=0)
        src_pt.data = dict(x=[deadline.value], y=[float(p["cost"])])
        verdict = "meets the deadline" if bool(p["feasible"]) else "<b>cannot meet the deadline</b> (capacity)"
        text.value = (f"{size.value:,.0f} molecules, {float(pt['work'][0]):,.0f} core-hours of work: "
                      f"<b>{float(p['cores']):,.0f} cores</b> ({float(p['cores_spot']):,.0f} spot), "
                      f"makespan {float(p['makespan']):.2f} h, cost <b>{_fmt_usd(float(p['cost']))}</b> "
                      f"(all on-demand: {_fmt_usd(float(p['cost_on_demand_same']))}); {verdict}.")

    for widget in (size, deadline, spot, scope, confs):
        widget.observe(update, names="value")
    update()
    panel = w.VBox([w.HBox([w.VBox([size, deadline, spot]), w.VBox([scope, confs])]), text,
                    as_widget(fig)])
    panel.figure = fig
    panel.controls = dict(size=size, deadline=deadline, spot=spot, zones=scope, conformers=confs)
    panel.summary = text
    return panel


def screen_panel(size: int = 600, *, target: str = "cdk2", client=None, workers: int = 2,
                 result: xr.Dataset | None = None):
    """A button that runs the real screen on ``size`` library molecules (slider up to the whole
    library) and redraws the enrichment curves and the summary in place.

    ``client``: any Dask client (an ElasticPool's); None starts a LocalCluster per run.
    ``result``: a screen already run, shown until the button is pressed.
    """
    import ipywidgets as w

    slider = w.IntSlider(value=size, min=50, max=4999, step=50, description="library size")
    button = w.Button(description="Run screen", button_style="primary")
    text = w.HTML()
    placeholder = {"screened": np.array([0.001, 1.0]), "recovered": np.zeros((3, 2)),
                   "roc_auc": np.full(3, np.nan), "ef": np.full((3, 1), np.nan)}
    q0 = scr.quality(result) if result is not None else xr.Dataset(
        {"roc_auc": ("stage", placeholder["roc_auc"]), "ef": (("stage", "fraction"), placeholder["ef"]),
         "recovered": (("stage", "screened"), placeholder["recovered"])},
        coords={"stage": list(scr.SCORING_STAGES), "fraction": [0.01], "screened": placeholder["screened"]})
    fig = enrichment_figure(q0, title="Enrichment of the screen")
    sources = {s.name.split("-", 1)[1]: s for s in fig.select(type=ColumnDataSource)
               if s.name and s.name.startswith("enrichment-")}
    labels = {}
    for item in fig.legend[0].items:
        stage = item.renderers[0].name.split("-", 1)[1] if item.renderers[0].name else ""
        if stage:
            labels[stage] = item
    state = {"result": result}

    def show(ds):
        q = scr.quality(ds, fractions=(0.01,))
        for stage, data in _enrichment_data(q).items():
            sources[stage].data = data
            labels[stage].label = value(data["label"][0])
        run = ds.attrs.get("run", "{}")
        import json

        wall = json.loads(run).get("wall_seconds", float("nan"))
        text.value = (f"{ds.attrs['n_molecules']} molecules ({ds.attrs['n_actives']} hidden actives, "
                      f"{ds.attrs['n_invalid_smiles']} invalid SMILES), {ds.attrs['n_3d']} went to 3D; "
                      f"{wall:.1f} s wall. ROC AUC 2D {float(q.roc_auc.sel(stage='2d')):.2f}, "
                      f"3D funnel {float(q.roc_auc.sel(stage='3d')):.2f}.")

    def run(_=None):
        button.disabled = True
        text.value = f"screening {slider.value} molecules ..."
        try:
            ds = scr.screen("nci5k", target, size=int(slider.value), client=client, workers=workers,
                            progress=False)
            state["result"] = ds
            show(ds)
        finally:
            button.disabled = False

    button.on_click(run)
    if result is not None:
        show(result)
    panel = w.VBox([w.HBox([slider, button]), text, as_widget(fig)])
    panel.figure, panel.button, panel.slider, panel.summary = fig, button, slider, text
    panel.state = state
    return panel


def report_part(size: int = 400, workers: int = 2):
    """The screening section of ``hpclab report``: a real small screen and the article scenario."""
    import pandas as pd

    from hpclab.viz._common import Part

    ds = scr.screen("nci5k", "cdk2", size=size, workers=workers, progress=False)
    q = scr.quality(ds)
    costs = scr.stage_costs(ds)
    inputs = scr.campaign_inputs(ds)
    camp = scr.estimate_campaign(inputs, 1e8, np.geomspace(0.5, 72, 16), [0.0, 0.9], list(scr.ZONE_SCOPES),
                        conformers=300, survivor_fraction=1.0)
    art = scr.article_scenario(inputs)
    table = pd.DataFrame({
        "ROC AUC": q.roc_auc.to_series(),
        "EF 1%": q.ef.sel(fraction=0.01).to_series(),
    })
    text = (f"Real RDKit screen of {ds.attrs['n_molecules']} molecules (CDK2 actives hidden in the "
            f"NCI set) on a local Dask cluster; then the campaign model fed by its measured costs. "
            f"Article scenario (1e8 molecules, 300 conformers, 1.5 h): elastic "
            f"{float(art.cores.sel(setup='elastic')):,.0f} cores at {art.attrs['cost_ratio']:.2f} "
            f"of the on-demand one-zone cost.")
    return Part(figures=[enrichment_figure(q), stage_cost_figure(costs),
                         throughput_figure(scr.throughput(ds, 0.5)), cost_deadline_figure(camp)],
                table=table, text=text)
