"""Views of the CAE workload: the solved field and its error, scaling curves, and a widget panel.

Figures take the Datasets of :mod:`hpclab.workloads.cae` (``run_heat``, ``scaling``) and return
bokeh figures. :func:`scaling_panel` drives two figures from grid size, cores, fabric, temporal
blocking, placement, dimension and scaling mode; a change replaces the figures'
``ColumnDataSource.data`` in place.
"""

from __future__ import annotations

import numpy as np

from hpclab.viz._common import COLORS, as_widget, colors_for, format_axis, outside_legend
from hpclab.workloads import cae
from hpclab.workloads.cae import model

__all__ = ["field_figure", "scaling_figure", "breakdown_figure", "panel_model", "scaling_panel", "report_part",
           "FABRIC_COLORS"]

FABRIC_COLORS = {f: COLORS[f] for f in ("tcp-vpc", "erdma", "rdma-hpn7")}
_GRIDS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_CORES = tuple(int(c) for c in model.smooth_cores(1, 100_000, 41))


def _color(name, i):
    return FABRIC_COLORS.get(name) or colors_for([name])[0]


def field_figure(ds, width: int = 330):
    """Two images side by side: the solved field ``u`` and its error against the analytical
    solution (``error``), from a :func:`hpclab.workloads.cae.run_heat` Dataset (2-D; a 3-D field
    shows its middle ``z`` slice)."""
    from bokeh.layouts import row
    from bokeh.models import ColorBar, LinearColorMapper
    from bokeh.palettes import RdBu11, Viridis256
    from bokeh.plotting import figure

    figs = []
    for var, palette, title in (("u", Viridis256, "u after the solve"),
                                ("error", RdBu11, "error: u - analytical")):
        da = ds[var]
        if "z" in da.dims:
            da = da.isel(z=da.sizes["z"] // 2)
        x, y = da["x"].values, da["y"].values
        img = da.transpose("y", "x").values
        lim = float(np.max(np.abs(img))) or 1.0
        lo, hi = (-lim, lim) if var == "error" else (float(img.min()), float(img.max()) or 1.0)
        mapper = LinearColorMapper(palette=list(palette), low=lo, high=hi)
        fig = figure(title=title, width=width, height=width, x_range=(x[0], x[-1]), y_range=(y[0], y[-1]),
                     x_axis_label="x", y_axis_label="y", tools="pan,wheel_zoom,reset,save,hover",
                     tooltips=[("x", "$x"), ("y", "$y"), (var, "@image{0.000e}")])
        fig.image(image=[img], x=x[0], y=y[0], dw=x[-1] - x[0], dh=y[-1] - y[0], color_mapper=mapper)
        format_axis([fig.xaxis[0], fig.yaxis[0]], "plain")
        fig.add_layout(ColorBar(color_mapper=mapper, width=8), "right")
        figs.append(fig)
    return row(*figs)


def _curves(ds, y):
    names = [str(f) for f in ds.fabric.values]
    ys = []
    for f in names:
        v = ds[y].sel(fabric=f).values.astype(float)
        ys.append(np.where(np.isfinite(v), v, np.nan).tolist())
    return {"xs": [ds.cores.values.astype(float).tolist()] * len(names), "ys": ys, "name": names,
            "color": [_color(f, i) for i, f in enumerate(names)]}


def _saturation(ds, y):
    names = [str(f) for f in ds.fabric.values]
    xs, ys = [], []
    for f in names:
        c = float(ds.saturation_cores.sel(fabric=f))
        xs.append(c)
        ys.append(float(ds[y].sel(fabric=f, cores=c)) if c > 0 else np.nan)
    return {"x": xs, "y": ys, "name": names, "color": [_color(f, i) for i, f in enumerate(names)]}


def scaling_figure(ds, y: str = "efficiency", width: int = 720, height: int = 360):
    """Scaling curves per fabric from :func:`hpclab.workloads.cae.scaling`: ``efficiency``
    (default), ``speedup`` or ``time_per_step`` over cores (log axes), with each fabric's
    saturation point (last core count still >= 50 % efficient) marked."""
    from bokeh.models import ColumnDataSource, HoverTool, Span
    from bokeh.plotting import figure

    log_y = y != "efficiency"
    label = {"efficiency": "parallel efficiency", "speedup": "speed-up T(1)/T(P)",
             "time_per_step": "time per step [s]"}.get(y, y)
    fig = figure(title=f"{ds.attrs.get('mode', 'strong')} scaling: {label} (diamonds: where adding cores stops "
                       "helping, efficiency < 50 %)", width=width, height=height, x_axis_type="log",
                 y_axis_type="log" if log_y else "linear", x_axis_label="cores", y_axis_label=label,
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    curves = ColumnDataSource(_curves(ds, y))
    marks = ColumnDataSource(_saturation(ds, y))
    fig.multi_line("xs", "ys", source=curves, line_color="color", line_width=3, legend_field="name")
    fig.scatter("x", "y", source=marks, color="color", size=12, marker="diamond")
    fig.add_tools(HoverTool(tooltips=[("fabric", "@name"), ("cores", "$x{0,0}"), (label, "$y{0.000}")]))
    cores = ds.cores.values.astype(float)
    format_axis(fig.xaxis, "count", lo=float(cores.min()), hi=float(cores.max()))
    if y == "efficiency":
        fig.y_range.start, fig.y_range.end = 0, 1.05
        fig.add_layout(Span(location=0.5, dimension="width", line_dash="dashed", line_color="gray"))
        format_axis(fig.yaxis, "fraction")
    elif y == "time_per_step":
        format_axis(fig.yaxis, "seconds", lo=1e-8, hi=1e3)
    else:
        format_axis(fig.yaxis, "si", lo=1.0, hi=max(float(cores.max()), 10.0))
    outside_legend(fig, "right")
    fig._hpclab_sources = {"curves": curves, "marks": marks}
    return fig


def _breakdown(ds, fabric):
    sel = ds.sel(fabric=fabric)
    x = sel.cores.values.astype(float).tolist()

    def clean(v):
        v = np.asarray(v, dtype=float)
        return np.where(np.isfinite(v) & (v > 0), v, np.nan).tolist()

    return {"xs": [x] * 4, "ys": [clean(sel.time_per_step), clean(sel.compute_time), clean(sel.halo_time),
                                  clean(sel.reduction_time)],
            "name": ["total", "compute", "halo exchange", "allreduce"],
            "color": colors_for(["total", "compute", "halo exchange", "allreduce"]),
            "dash": ["solid", "dashed", "dashed", "dotted"]}


def breakdown_figure(ds, fabric="erdma", width: int = 720, height: int = 300):
    """Time per step on one fabric split into compute, halo exchange and allreduce, over cores."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    fig = figure(title=f"Where a step's time goes on {fabric}", width=width, height=height, x_axis_type="log",
                 y_axis_type="log", x_axis_label="cores", y_axis_label="seconds per step",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    src = ColumnDataSource(_breakdown(ds, fabric))
    fig.multi_line("xs", "ys", source=src, line_color="color", line_dash="dash", line_width=2, legend_field="name")
    cores = ds.cores.values.astype(float)
    format_axis(fig.xaxis, "count", lo=float(cores.min()), hi=float(cores.max()))
    format_axis(fig.yaxis, "seconds", lo=1e-9, hi=1e3)
    outside_legend(fig, "right")
    fig._hpclab_sources = {"breakdown": src}
    return fig


def panel_model(grid=4096, cores=1024, fabric="erdma", steps_per_exchange=1, placement="placement-group",
                ndim=2, mode="strong", reductions_per_step=0.0, *, cost_per_cell):
    """What the panel shows, as plain data: the sweep Dataset, the figures' source data and a
    one-paragraph HTML summary (time per step split at the chosen cores, saturation per fabric)."""
    ds = model.scaling(grid=grid, cost_per_cell=cost_per_cell, mode=mode, ndim=ndim,
                       steps_per_exchange=steps_per_exchange, placement=placement,
                       reductions_per_step=reductions_per_step)
    fabric = fabric if fabric in [str(f) for f in ds.fabric.values] else str(ds.fabric.values[0])
    cores = int(cores)
    g = grid if mode == "strong" else int(round(grid * cores ** (1.0 / ndim)))
    one = model.step_time(cores, g, fabric, cost_per_cell=cost_per_cell, ndim=ndim,
                          steps_per_exchange=steps_per_exchange, placement=placement,
                          reductions_per_step=reductions_per_step)
    t = float(one.time_per_step)
    sat = ", ".join(f"<b>{f}</b> {int(ds.saturation_cores.sel(fabric=f)):,}" for f in ds.fabric.values)
    if np.isfinite(t):
        red = float(one.reduction_time)
        reduction = (f", allreduce {red * 1e6:,.1f} us ({reductions_per_step:g} per step)" if red > 0 else
                     " (no allreduce: reductions per step = 0, as for an explicit solver)")
        point = (f"On <b>{cores:,}</b> cores over <b>{fabric}</b> a step takes <b>{t * 1e6:,.1f} us</b>: compute "
                 f"{float(one.compute_time) * 1e6:,.1f} us ({int(one.cells_per_core):,} cells per core), halo "
                 f"{float(one.halo_time) * 1e6:,.1f} us ({int(one.halo_messages)} messages, "
                 f"{int(one.halo_nbytes):,} B per exchange, every {int(steps_per_exchange)} step(s)){reduction}.")
    else:
        point = (f"On <b>{cores:,}</b> cores a sub-domain of a {g}-point grid is thinner than the halo of "
                 f"{int(steps_per_exchange)}: not feasible.")
    summary = (f"<p>{point}<br>Adding cores stops helping (efficiency below 50 %) beyond: {sat}. "
               f"Calibrated compute cost {cost_per_cell * 1e9:.2f} ns per cell and step.</p>")
    y = "efficiency"
    return {"dataset": ds, "curves": _curves(ds, y), "marks": _saturation(ds, y),
            "point": {"x": [float(cores)], "y": [float(ds.efficiency.sel(fabric=fabric).sel(cores=float(cores), method="nearest"))]},
            "breakdown": _breakdown(ds, fabric), "summary": summary}


def scaling_panel(cost_per_cell=None, grid=4096, cores=1024, fabric="erdma", steps_per_exchange=1,
                  placement="placement-group", ndim=2, mode="strong", reductions_per_step=0.0):
    """An ipywidgets panel: grid size, cores, fabric, temporal blocking, placement, dimension and
    scaling mode drive an efficiency figure and a time-breakdown figure, updated in place.

    Parameters
    ----------
    cost_per_cell : float, optional
        Seconds per cell and step; default measured here with
        :func:`hpclab.workloads.cae.measure_cost_per_cell` (a fraction of a second) on the 2-D
        (5-point) kernel. The ``ndim`` widget keeps this cost: for 3-D, the 7-point kernel costs
        more per cell (about 2x here); pass its measured cost if 3-D is what you study.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets`` (the controls), ``sources`` (``curves``, ``marks``, ``point``,
        ``breakdown``), ``figures`` and ``summary`` (HTML widget), for scripting and tests.
    """
    import ipywidgets as w
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource

    if cost_per_cell is None:
        cost_per_cell = cae.measure_cost_per_cell(n=256, steps=10, repeat=2)
    grids = sorted(set(_GRIDS) | {int(grid)})
    core_opts = sorted(set(_CORES) | {int(cores)})
    controls = {
        "grid": w.SelectionSlider(options=grids, value=int(grid), description="grid / axis", continuous_update=False),
        "cores": w.SelectionSlider(options=core_opts, value=int(cores), description="cores", continuous_update=False),
        "fabric": w.Dropdown(options=list(model.FABRICS), value=fabric, description="fabric"),
        "steps_per_exchange": w.IntSlider(value=int(steps_per_exchange), min=1, max=16, description="steps/exch.",
                                          continuous_update=False),
        "placement": w.Dropdown(options=list(model.PLACEMENT_HOPS), value=placement, description="placement"),
        "ndim": w.ToggleButtons(options=[2, 3], value=int(ndim), description="dimensions"),
        "mode": w.ToggleButtons(options=["strong", "weak"], value=mode, description="scaling"),
    }
    first = panel_model(grid, cores, fabric, steps_per_exchange, placement, ndim, mode, reductions_per_step,
                        cost_per_cell=cost_per_cell)
    eff = scaling_figure(first["dataset"], "efficiency", height=330)
    point = ColumnDataSource(first["point"])
    eff.scatter("x", "y", source=point, size=14, color="black", marker="circle_x", fill_alpha=0.2)
    brk = breakdown_figure(first["dataset"], first["dataset"].fabric.values[0] if fabric not in model.FABRICS
                           else fabric, height=280)
    sources = {**eff._hpclab_sources, **brk._hpclab_sources, "point": point}
    summary = w.HTML(first["summary"])

    def update(_change=None):
        v = {k: c.value for k, c in controls.items()}
        try:
            m = panel_model(v["grid"], v["cores"], v["fabric"], v["steps_per_exchange"], v["placement"], v["ndim"],
                            v["mode"], reductions_per_step, cost_per_cell=cost_per_cell)
        except ValueError as exc:  # an HpclabError: show it, keep the last curves
            summary.value = f"<p style='color:#b00'>{exc}</p>"
            return
        for key in ("curves", "marks", "point", "breakdown"):
            sources[key].data = m[key]
        brk.title.text = f"Where a step's time goes on {v['fabric']}"
        eff.title.text = (f"{v['mode']} scaling: parallel efficiency (diamonds: where adding cores stops helping, "
                          "efficiency < 50 %)")
        summary.value = m["summary"]

    for c in controls.values():
        c.observe(update, names="value")
    box = w.VBox([w.HBox([controls["grid"], controls["cores"], controls["fabric"]]),
                  w.HBox([controls["steps_per_exchange"], controls["placement"]]),
                  w.HBox([controls["ndim"], controls["mode"]]), summary, as_widget(column(eff, brk))])
    box.widgets = controls
    box.sources = sources
    box.figures = {"efficiency": eff, "breakdown": brk}
    box.summary = summary
    box.cost_per_cell = cost_per_cell
    return box


def report_part():
    """The CAE section of ``hpclab report``: a small real solve checked against the analytical
    solution, and strong-scaling efficiency per fabric calibrated from the measured kernel."""
    import dask
    import pandas as pd

    from hpclab.viz._common import Part

    with dask.config.set(scheduler="threads", num_workers=2):
        u0 = cae.sine_mode(65, 2, 1.0, (2, 2))
        dt = 0.9 * cae.stable_dt(u0, 1.0)
        u = cae.heat(u0, 1.0, dt, 200, steps_per_exchange=5).compute()
        exact = cae.heat_analytic(u0, u.attrs["time"], 1.0).compute()
    import xarray as xr

    ds = xr.Dataset({"u": u, "error": u - exact})
    from hpclab.scenario import Scenario

    c = cae.measure_cost_per_cell(n=256, steps=10, repeat=2)
    study = Scenario.example("cae_scaling").replace(workload={"cost_per_cell": c})  # the kernel measured here
    sweep = study.run().data["scaling"]
    at = sweep.efficiency.sel(cores=1000.0, method="nearest")
    table = pd.DataFrame({"fabric": [str(f) for f in sweep.fabric.values],
                          "saturation cores (eff >= 50%)": sweep.saturation_cores.values.astype(int),
                          f"efficiency at {int(at.cores):,} cores": at.values})
    return Part(figures=[field_figure(ds), scaling_figure(sweep)], table=table,
                text=(f"Real 2-D heat solve, 65 x 65 grid in 4 sub-domains, 200 steps, 5 per halo exchange: "
                      f"max error against exp(-2 pi^2 kappa t) decay {float(abs(ds.error).max()):.2e}. "
                      f"Strong scaling of a {study.workload['grid']}^2 grid (data/scenarios/cae_scaling.yaml) with "
                      f"the kernel's measured {c * 1e9:.2f} ns per cell-step, "
                      "halo exchange by the alpha-beta point-to-point model."))
