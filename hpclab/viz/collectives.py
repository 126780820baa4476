"""Views of the collective cost models: figures from Datasets, and an ipywidgets panel.

Every figure takes the model's outputs (a :func:`hpclab.network.sweep` Dataset, or the ping-pong
Dataset of :mod:`hpclab.network.calibrate`) and returns a bokeh figure; the panel
(:func:`collectives_panel`) drives one bokeh figure whose ``ColumnDataSource`` is replaced in
place when a widget changes (no redraw).
"""

from __future__ import annotations

import numpy as np

from hpclab.network import (ALGORITHMS, OPS, algorithm_times, best_algorithm, busbw, collective_time,
                            fabric as _fabric, p2p_time)
from hpclab.viz._common import as_widget, colors_for, format_axis, outside_legend

__all__ = ["alpha_beta_figure", "time_figure", "busbw_figure", "crossover_figure", "pingpong_figure",
           "panel_model", "collectives_panel", "report_part", "DEFAULT_FABRICS", "human_bytes"]

DEFAULT_FABRICS = ("tcp-vpc", "erdma", "rdma-hpn7")
_SIZES = 2.0 ** np.arange(3, 34)  # 8 B .. 8 GiB
_RANKS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


def human_bytes(n) -> str:
    """``1048576 -> '1 MiB'`` (binary units, as nccl-tests sizes are usually given)."""
    n = float(n)
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f:
            v = n / f
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def _fig(title, y_label, y_log=True, x_label="message size nbytes [B]", **kw):
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = figure(title=title, x_axis_type="log", y_axis_type="log" if y_log else "linear",
                 width=kw.pop("width", 720), height=kw.pop("height", 380), x_axis_label=x_label,
                 y_axis_label=y_label, tools="pan,wheel_zoom,box_zoom,reset,save", **kw)
    fig.add_tools(HoverTool(tooltips=[("series", "$name"), ("x", "@x{0.[000]a}"), ("y", "@y{0.000a}")]))
    if x_label.startswith("message size"):
        format_axis(fig.xaxis, "bytes", lo=float(_SIZES[0]), hi=float(_SIZES[-1]))
    if y_log and y_label.endswith("[s]"):  # labelled decades from 10 ns to 1,000 s
        format_axis(fig.yaxis, "seconds", lo=1e-8, hi=1e3)
    return fig



def alpha_beta_figure(fabrics=DEFAULT_FABRICS, nbytes=_SIZES):
    """One plot that explains Hockney's model: ``t(n) = alpha + n*beta`` per fabric, with its two
    asymptotes (the latency floor ``alpha`` and the bandwidth line ``n*beta``) dashed; the knee
    ``n_half = alpha/beta`` (the size at which half the bandwidth is reached) is marked."""
    from bokeh.models import ColumnDataSource

    fig = _fig("Point-to-point time t(n) = alpha + n beta (dashed: alpha and n beta alone)",
               "one-way time [s]")
    n = np.asarray(nbytes, dtype=float)
    colors = colors_for([_fabric(x).name for x in fabrics])
    for i, name in enumerate(fabrics):
        f = _fabric(name)
        c = colors[i]
        t = p2p_time(n, f)
        fig.line("x", "y", source=ColumnDataSource({"x": n, "y": t}), color=c, line_width=3,
                 legend_label=f"{f.name}: alpha {f.alpha * 1e6:.3g} us, {f.bandwidth / 1e9:.3g} GB/s",
                 name=f.name)
        fig.line(n, np.full_like(n, f.alpha), color=c, line_dash="dashed", line_alpha=0.6)
        fig.line(n, n * f.beta, color=c, line_dash="dotted", line_alpha=0.6)
        knee = f.alpha / f.beta
        fig.scatter([knee], [2 * f.alpha], color=c, size=9, marker="diamond")
    fig.y_range.start = float(np.min([_fabric(x).alpha for x in fabrics])) / 3
    return outside_legend(fig, "below", ncols=1)


def _select(ds, **sel):
    sel = {k: v for k, v in sel.items() if v is not None and k in ds.dims}
    return ds.sel(**sel)


def time_figure(ds, op="allreduce", algorithm="auto", ranks=None, variable="time"):
    """Lines of ``variable`` (``time`` or ``busbw``) against ``nbytes`` from a :func:`sweep`
    Dataset, one per fabric and rank count."""
    from bokeh.models import ColumnDataSource

    sub = _select(ds, op=op, algorithm=algorithm)
    ranks = list(sub["ranks"].values) if ranks is None else list(np.atleast_1d(ranks))
    label = {"time": "time [s]", "busbw": "bus bandwidth [B/s]", "algbw": "algorithm bandwidth [B/s]"}
    fig = _fig(f"{op} ({algorithm}): {variable} vs message size", label.get(variable, variable),
               y_log=(variable == "time"))
    dashes = ["solid", "dashed", "dotted", "dotdash", "dashdot"]
    fabs = [str(f) for f in sub["fabric"].values]
    colors = colors_for(fabs)
    for i, fab in enumerate(fabs):
        for j, r in enumerate(ranks):
            y = sub[variable].sel(fabric=fab, ranks=r).values
            src = ColumnDataSource({"x": sub["nbytes"].values, "y": y})
            fig.line("x", "y", source=src, color=colors[i], line_width=2.5,
                     line_dash=dashes[j % len(dashes)], legend_label=f"{fab}, {int(r)} ranks",
                     name=f"{fab} {int(r)}")
    if variable != "time":
        format_axis(fig.yaxis, "si", unit="B/s")
    return outside_legend(fig, "below", ncols=3)


def busbw_figure(ds, op="allreduce", algorithm="auto", ranks=None):
    """Bus bandwidth (nccl-tests definition) against message size from a :func:`sweep`."""
    return time_figure(ds, op=op, algorithm=algorithm, ranks=ranks, variable="busbw")


def crossover_figure(op="allreduce", fabric="erdma", ranks=64, nbytes=_SIZES, **options):
    """Every algorithm of ``op`` on one fabric and rank count, relative to the fastest, with the
    algorithm ``auto`` picks per size shaded: where the lines cross, the choice changes."""
    from bokeh.models import ColumnDataSource

    n = np.asarray(nbytes, dtype=float)
    times = algorithm_times(op, n, ranks, fabric, **options)
    best = np.min(np.stack(list(times.values())), axis=0)
    chosen = best_algorithm(op, n, ranks, fabric, **options)
    fig = _fig(f"{op} on {_fabric(fabric).name}, {ranks} ranks: time / fastest (1 = picked by auto)",
               "time relative to the fastest algorithm")
    colors = colors_for(list(times))
    top = 1.0
    for i, (alg, t) in enumerate(times.items()):
        c = colors[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = t / best
        finite = rel[np.isfinite(rel)]
        top = max(top, float(finite.max()) if finite.size else 1.0)
        fig.line("x", "y", source=ColumnDataSource({"x": n, "y": rel}), color=c, line_width=2.5,
                 legend_label=alg, name=alg)
        mask = chosen == alg
        if mask.any():
            fig.scatter(n[mask], np.ones(mask.sum()), color=c, size=8)
    # labelled ticks between 1 and 10 (1, 2, 5, ...): where the curves cross matters most
    format_axis(fig.yaxis, "plain", lo=1.0, hi=max(top, 10.0) if top <= 1e3 else top)
    return outside_legend(fig, "right")


def pingpong_figure(live, fabrics=DEFAULT_FABRICS, fitted=None):
    """The live Dask ping-pong (points), its alpha-beta fit (line) and catalog fabrics (thin)."""
    from bokeh.models import ColumnDataSource

    n = live["nbytes"].values
    fig = _fig("Live ping-pong between two Dask workers (points) vs catalog fabrics (lines)",
               "one-way time [s]")
    fig.scatter("x", "y", source=ColumnDataSource({"x": n, "y": live["time"].values}), size=9,
                color="black", legend_label="measured: Dask comm on 127.0.0.1", name="measured")
    if fitted is not None or "time_fit" in live:
        y = (fitted.alpha + n * fitted.beta) if fitted is not None else live["time_fit"].values
        a = fitted.alpha if fitted is not None else live.attrs.get("alpha", np.nan)
        b = fitted.beta if fitted is not None else live.attrs.get("beta", np.nan)
        fig.line("x", "y", source=ColumnDataSource({"x": n, "y": y}), color="black", line_width=2,
                 legend_label=f"fit: alpha {a * 1e6:.0f} us, {1 / b / 1e9:.2f} GB/s", name="fit")
    grid = np.geomspace(max(n.min(), 1.0), n.max(), 60)
    colors = colors_for([_fabric(x).name for x in fabrics])
    for i, name in enumerate(fabrics):
        f = _fabric(name)
        fig.line("x", "y", source=ColumnDataSource({"x": grid, "y": p2p_time(grid, f)}),
                 color=colors[i], line_width=2, legend_label=f"catalog {f.name}", name=f.name)
    return outside_legend(fig, "below", ncols=2)


# --------------------------------------------------------------------------------------------
# The panel


def panel_model(op, fabric, algorithm, ranks, nbytes, sizes=_SIZES, **options) -> dict:
    """Everything the panel draws, computed in one vectorised call per algorithm.

    Returns a dict with ``curves`` (columns for a multi-line source: one line per algorithm of
    ``op`` over ``sizes``), ``point`` (the selected size on the selected algorithm), ``time``,
    ``busbw`` (B/s), ``algorithm`` (the one used: ``auto`` resolved) and ``summary`` (HTML).
    """
    n = np.asarray(sizes, dtype=float)
    times = algorithm_times(op, n, ranks, fabric, **options)
    best = np.min(np.stack(list(times.values())), axis=0)
    if algorithm == "auto":
        used = best_algorithm(op, nbytes, ranks, fabric, **options)
    else:
        used = algorithm
    t_sel = collective_time(op, nbytes, ranks, fabric, algorithm=used, **options)
    names = list(times)
    xs = [n] * (len(names) + 1)
    ys = [times[a] for a in names] + [best]
    labels = names + ["auto (fastest)"]
    colors = colors_for(names + ["auto (fastest)"])
    widths = [5.0 if a == used else 2.0 for a in names] + [1.5]
    alphas = [1.0 if a == used else 0.45 for a in names] + [0.9]
    bw = busbw(op, nbytes, ranks, t_sel) if t_sel > 0 else float("nan")
    fab = _fabric(fabric)
    bw_text = "" if not np.isfinite(bw) else f"; bus bandwidth <b>{bw / 1e9:.3g} GB/s</b>"
    what = f"<b>{op}</b>" if op == "barrier" else f"<b>{op}</b> of {human_bytes(nbytes)}"
    summary = (f"{what} on <b>{int(ranks)}</b> ranks over "
               f"<b>{fab.name}</b>: <b>{_fmt_time(t_sel)}</b> with <b>{used}</b>"
               f"{' (picked by auto)' if algorithm == 'auto' else ''}{bw_text}.")
    return {"curves": {"xs": xs, "ys": ys, "name": labels, "color": colors, "width": widths,
                       "alpha": alphas},
            "point": {"x": [float(nbytes)], "y": [t_sel]},
            "time": t_sel, "busbw": bw, "algorithm": used, "summary": summary}


def _fmt_time(t) -> str:
    if t >= 1:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} us"


def collectives_panel(op="allreduce", fabric="erdma", algorithm="auto", ranks=64, nbytes=2**20,
                      fabrics=("tcp-vpc", "erdma", "rdma-hpn7", "ib-ndr400", "nvlink", "shm"), **options):
    """An ipywidgets panel: fabric, op, algorithm, ranks and message size drive one bokeh figure.

    The figure shows every algorithm of the op over message sizes (the one in use thick, the
    ``auto`` envelope in black) and a marker at the chosen size; a line of text gives the time,
    the algorithm and the bus bandwidth. Changing a widget replaces the figure's
    ``ColumnDataSource.data`` in place. ``options`` (``ranks_per_node``, ``intra_fabric``,
    ``topology``) pass to the model.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets`` (dict of the controls), ``sources`` (``curves``, ``point``),
        ``figure`` and ``summary`` (the HTML widget), for scripting and tests.
    """
    import ipywidgets as w
    from bokeh.models import ColumnDataSource

    size_options = [(human_bytes(s), float(s)) for s in _SIZES]
    if float(nbytes) not in dict((v, k) for k, v in size_options):
        size_options = sorted(size_options + [(human_bytes(nbytes), float(nbytes))], key=lambda kv: kv[1])
    rank_options = sorted(set(_RANKS) | {int(ranks)})
    fabrics = list(dict.fromkeys([*fabrics, fabric] if isinstance(fabric, str) else fabrics))
    controls = {
        "fabric": w.Dropdown(options=fabrics, value=fabric, description="fabric"),
        "op": w.Dropdown(options=list(OPS), value=op, description="op"),
        "algorithm": w.Dropdown(options=["auto", *ALGORITHMS[op]], value=algorithm, description="algorithm"),
        "ranks": w.SelectionSlider(options=rank_options, value=int(ranks), description="ranks",
                                   continuous_update=False),
        "nbytes": w.SelectionSlider(options=size_options, value=float(nbytes), description="message",
                                    continuous_update=False),
    }
    first = panel_model(op, fabric, algorithm, ranks, nbytes, **options)
    curves = ColumnDataSource(first["curves"])
    point = ColumnDataSource(first["point"])
    fig = _fig("Collective time by algorithm (thick: in use; black: fastest)", "time [s]", height=360)
    fig.multi_line("xs", "ys", source=curves, line_color="color", line_width="width", line_alpha="alpha",
                   legend_field="name")
    fig.scatter("x", "y", source=point, size=14, color="black", marker="circle_x", fill_alpha=0.2)
    outside_legend(fig, "right")
    summary = w.HTML(first["summary"])

    def update(_change=None):
        v = {k: c.value for k, c in controls.items()}
        if v["algorithm"] not in ("auto", *ALGORITHMS[v["op"]]):
            return  # the algorithm list is being swapped for the new op
        m = panel_model(v["op"], v["fabric"], v["algorithm"], v["ranks"], v["nbytes"], **options)
        curves.data = m["curves"]
        point.data = m["point"]
        summary.value = m["summary"]

    def on_op(change):
        algs = ["auto", *ALGORITHMS[change["new"]]]
        keep = controls["algorithm"].value if controls["algorithm"].value in algs else "auto"
        with controls["algorithm"].hold_trait_notifications():
            controls["algorithm"].options = algs
            controls["algorithm"].value = keep
        update()

    controls["op"].observe(on_op, names="value")
    for key in ("fabric", "algorithm", "ranks", "nbytes"):
        controls[key].observe(update, names="value")
    box = w.VBox([w.HBox([controls["fabric"], controls["op"], controls["algorithm"]]),
                  w.HBox([controls["ranks"], controls["nbytes"]]), summary, as_widget(fig)])
    box.widgets = controls
    box.sources = {"curves": curves, "point": point}
    box.figure = fig
    box.summary = summary
    return box


def report_part():
    """The collectives section of ``hpclab report``: alpha-beta, TCP vs eRDMA vs HPN, crossover."""
    from hpclab.network import sweep
    from hpclab.viz._common import Part

    ds = sweep(op="allreduce", algorithm="auto", fabric=list(DEFAULT_FABRICS), ranks=[16, 256],
               nbytes=_SIZES)
    table = (ds["time"].sel(op="allreduce", algorithm="auto", nbytes=[8.0, 2.0**20, 2.0**30])
             .to_series().unstack("fabric") * 1e6)
    table.columns = [f"{c} [us]" for c in table.columns]
    return Part(figures=[alpha_beta_figure(), time_figure(ds, ranks=[16, 256]),
                         busbw_figure(ds, ranks=[256]), crossover_figure("allreduce", "erdma", 256)],
                table=table.reset_index(),
                text="Hockney alpha-beta-gamma model (Thakur, Rabenseifner & Gropp 2005) of allreduce on "
                     "the catalog's TCP VPC, eRDMA and HPN 7.0 fabrics; 'auto' picks the fastest "
                     "algorithm per point.")
