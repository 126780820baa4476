"""Views of the LLM pretraining model: step-time breakdowns, memory, stragglers, goodput,
validation, and an ipywidgets panel that drives them.

Every figure takes a Dataset from :mod:`hpclab.workloads.llm` and returns a bokeh figure; the
panel (:func:`llm_panel`) updates its figures' ``ColumnDataSource`` in place when a widget
changes.
"""

from __future__ import annotations

import numpy as np

from hpclab.viz._common import PALETTE, as_widget, format_axis, outside_legend

__all__ = ["breakdown_figure", "memory_figure", "straggler_figure", "goodput_figure",
           "requirements_figure", "validation_figure", "panel_model", "llm_panel", "report_part",
           "layout_labels"]

_PART_LABELS = {"compute_time": "compute", "tp_comm": "TP comm (NVLink)", "cp_comm": "CP comm", "ep_comm": "EP all-to-all",
                "bubble": "pipeline bubble", "pp_comm": "PP p2p", "dp_comm": "DP comm (exposed)",
                "optimizer_step": "optimizer"}
_MEM_PARTS = ("weights", "gradients", "optimizer_mem", "activations", "reserve")
_MEM_LABELS = {"weights": "weights", "gradients": "gradients", "optimizer_mem": "optimizer states",
               "activations": "activations", "reserve": "reserve"}


def layout_labels(ds) -> list[str]:
    """``"tp8 pp8 dp16 cp1 mb1 v2 z1 full"`` per layout of a step-time Dataset."""
    out = []
    for i in range(ds.sizes["layout"]):
        r = ds.isel(layout=i)
        out.append(f"tp{int(r.tp)} pp{int(r.pp)} dp{int(r.dp)} cp{int(r.cp)} mb{int(r.micro_batch)} "
                   f"v{int(r.interleave)} z{int(r.zero)} {str(r.recompute.values)}")
    return out


def _breakdown_data(ds, by):
    from hpclab.workloads.llm import BREAKDOWN

    labels = [str(x) for x in ds[by].values] if by != "layout" else layout_labels(ds)
    data = {"label": labels}
    for part in BREAKDOWN:
        data[part] = np.asarray(ds[part].values, dtype=float)
    data["step_time"] = np.asarray(ds["step_time"].values, dtype=float)
    data["mfu"] = 100 * np.asarray(ds["mfu"].values, dtype=float)
    return data


def breakdown_figure(ds, by="layout", title="Step time breakdown"):
    """Stacked horizontal bars: compute, exposed communication, bubble, optimizer per row of
    ``by`` (``"layout"`` for a :func:`~hpclab.workloads.llm.search` result, ``"fabric"`` for
    :func:`~hpclab.workloads.llm.compare_fabrics`)."""
    return _breakdown(ds, by, title)[0]


def _breakdown(ds, by="layout", title="Step time breakdown"):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    from hpclab.workloads.llm import BREAKDOWN

    data = _breakdown_data(ds, by)
    source = ColumnDataSource(data)
    # 60 px more for the legend below the bars (two rows of four entries)
    fig = figure(title=title, y_range=list(reversed(data["label"])), height=130 + 36 * len(data["label"]),
                 width=760, x_axis_label="step time", tools="save,reset")
    format_axis(fig.xaxis, "seconds")
    fig.hbar_stack(list(BREAKDOWN), y="label", height=0.7, source=source,
                   color=[PALETTE[i] for i in range(len(BREAKDOWN))],
                   legend_label=[_PART_LABELS[p] for p in BREAKDOWN])
    fig.add_tools(HoverTool(tooltips=[("", "@label"), ("step", "@step_time{0.000} s"),
                                      ("MFU", "@mfu{0.0} %")]))
    outside_legend(fig, "below", ncols=4, font_size="8pt")  # never over the bars: every entry shows
    return fig, source


def _memory_data(ds, by):
    labels = [str(x) for x in ds[by].values] if by != "layout" else layout_labels(ds)
    data = {"label": labels}
    for part in _MEM_PARTS:
        data[part] = np.asarray(ds[part].values, dtype=float) / 1e9
    data["total"] = np.asarray(ds["total_memory"].values, dtype=float) / 1e9
    return data


def memory_figure(ds, by="layout", title="Memory per GPU (first pipeline stage)"):
    """Stacked bars of weights, gradients, optimizer states, activations and reserve per layout,
    with the GPU's memory as a line."""
    from bokeh.models import ColumnDataSource, HoverTool, Span
    from bokeh.plotting import figure

    data = _memory_data(ds, by)
    source = ColumnDataSource(data)
    fig = figure(title=title, y_range=list(reversed(data["label"])), height=130 + 36 * len(data["label"]),
                 width=760, x_axis_label="GB per GPU", tools="save,reset")
    format_axis(fig.xaxis, "plain")
    fig.hbar_stack(list(_MEM_PARTS), y="label", height=0.7, source=source,
                   color=[PALETTE[i + 3] for i in range(len(_MEM_PARTS))],
                   legend_label=[_MEM_LABELS[p] for p in _MEM_PARTS])
    cap = ds.attrs.get("gpu_memory")
    if cap:
        fig.add_layout(Span(location=cap / 1e9, dimension="height", line_color="black",
                            line_dash="dashed", line_width=2))
    fig.add_tools(HoverTool(tooltips=[("", "@label"), ("total", "@total{0.0} GB")]))
    outside_legend(fig, "below", ncols=5, font_size="8pt")
    return fig


def straggler_figure(ds, title="Synchronous step vs scale: the slowest rank sets the pace"):
    """Expected step time against the number of ranks (analytic line, sampled means with
    error bars if the Dataset has them)."""
    return _straggler(ds, title)[0]


def _straggler(ds, title="Synchronous step vs scale: the slowest rank sets the pace"):
    from bokeh.models import ColumnDataSource, Whisker
    from bokeh.plotting import figure

    fig = figure(title=title, x_axis_type="log", width=760, height=360, x_axis_label="ranks (GPUs)",
                 y_axis_label="expected step time", tools="pan,wheel_zoom,box_zoom,reset,save")
    format_axis(fig.xaxis, "count")  # decades (the panel's ranks span 3-5 of them)
    format_axis(fig.yaxis, "seconds")
    src = ColumnDataSource({"x": ds.ranks.values.astype(float), "y": ds.expected_step.values})
    fig.line("x", "y", source=src, line_width=3, color=PALETTE[0], legend_label="analytic E[max]")
    fig.line([float(ds.ranks.min()), float(ds.ranks.max())], [ds.attrs["step_time"]] * 2,
             color="gray", line_dash="dashed", legend_label="one rank alone")
    if "sampled_step" in ds:
        s = ds.sampled_step.values
        e = 2 * ds.sampled_stderr.values
        pts = ColumnDataSource({"x": ds.ranks.values.astype(float), "y": s, "lo": s - e, "hi": s + e})
        fig.scatter("x", "y", source=pts, size=8, color=PALETTE[1], legend_label="sampled (±2 s.e.)")
        fig.add_layout(Whisker(source=pts, base="x", lower="lo", upper="hi", line_color=PALETTE[1]))
    outside_legend(fig, "right")
    return fig, src


def _goodput_data(ds):
    lines = {"xs": [], "ys": [], "color": [], "name": []}
    marks = {"x": [], "y": [], "color": [], "name": []}
    for i, s in enumerate(ds.storage.values):
        g = ds.sel(storage=s)
        c = PALETTE[i % len(PALETTE)]
        lines["xs"].append(ds.interval.values / 60.0)
        lines["ys"].append(100 * g.goodput.values)
        lines["color"].append(c)
        lines["name"].append(f"{s}: checkpoint {float(g.checkpoint_time):.1f} s")
        marks["x"].append(float(g.optimal_interval) / 60.0)
        marks["y"].append(100 * float(g.optimal_goodput))
        marks["color"].append(c)
        marks["name"].append(f"{s} Young/Daly: {float(g.optimal_interval) / 60:.1f} min, "
                             f"{100 * float(g.optimal_goodput):.2f}%")
    return lines, marks


def goodput_figure(ds, title="Effective training time vs checkpoint interval", target=0.99):
    """Goodput (%) against the checkpoint interval for each storage, the Young/Daly optimum
    marked, Monte-Carlo points if present, and the ``target`` line."""
    return _goodput(ds, title, target)[0]


def _goodput(ds, title="Effective training time vs checkpoint interval", target=0.99):
    from bokeh.models import ColumnDataSource, HoverTool, Span
    from bokeh.plotting import figure

    lines, marks = _goodput_data(ds)
    fig = figure(title=title, x_axis_type="log", width=760, height=380,
                 x_axis_label="checkpoint interval [min]", y_axis_label="goodput [%]",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    iv = ds.interval.values / 60.0
    format_axis(fig.xaxis, "plain", lo=float(iv.min()), hi=float(iv.max()))
    format_axis(fig.yaxis, "percent")
    lsrc, msrc = ColumnDataSource(lines), ColumnDataSource(marks)
    fig.multi_line("xs", "ys", source=lsrc, line_color="color", line_width=3, legend_field="name")
    r = fig.scatter("x", "y", source=msrc, size=13, marker="star", color="color")
    fig.add_tools(HoverTool(renderers=[r], tooltips=[("", "@name")]))
    if "goodput_mc" in ds:
        for i, s in enumerate(ds.storage.values):
            g = ds.sel(storage=s)
            fig.scatter(ds.interval.values / 60.0, 100 * g.goodput_mc.values, size=5,
                        color=PALETTE[i % len(PALETTE)], fill_alpha=0.3, legend_label=f"{s} Monte-Carlo")
    fig.add_layout(Span(location=100 * target, dimension="width", line_dash="dashed", line_color="black"))
    fig.y_range.start = max(0.0, 100 * float(np.nanmin(ds.goodput.values)) - 1)
    fig.y_range.end = 100.5
    outside_legend(fig, "below", ncols=2, font_size="8pt")
    return fig, (lsrc, msrc)


def requirements_figure(ds, target=0.99, title=None):
    """Goodput at the Young/Daly interval against restart time, one line per failure-rate
    multiplier (from :func:`~hpclab.workloads.llm.goodput_requirements`), with the target."""
    from bokeh.models import Span
    from bokeh.plotting import figure

    title = title or (f"What it takes: goodput at the optimum ({ds.attrs['nodes']} nodes, "
                      f"checkpoint {ds.attrs['checkpoint_time']:.1f} s on {ds.attrs['storage']})")
    fig = figure(title=title, x_axis_type="log", width=760, height=360, x_axis_label="restart time",
                 y_axis_label="goodput [%]", tools="pan,wheel_zoom,box_zoom,reset,save")
    format_axis(fig.xaxis, "seconds", lo=float(ds.restart.min()), hi=float(ds.restart.max()))
    format_axis(fig.yaxis, "percent")
    for i, f in enumerate(ds.failure_scale.values):
        fig.line(ds.restart.values, 100 * ds.goodput.sel(failure_scale=f).values, line_width=3,
                 color=PALETTE[i % len(PALETTE)], legend_label=f"failure rate x {f:g}")
    fig.add_layout(Span(location=100 * target, dimension="width", line_dash="dashed", line_color="black"))
    outside_legend(fig, "right", font_size="8pt")
    return fig


def validation_figure(ds, title=None):
    """Predicted against published (one point per reference row, the calibration rows starred),
    with y = x and the tolerance band; MFU rows and TFLOP/s rows both shown as % of peak-like
    ratios to the published value."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    tol = ds.attrs["tolerance"]
    title = title or (f"Model vs published runs (FLOP/s efficiency {ds.attrs['efficiency_by_generation']}, "
                      f"HBM {ds.attrs['memory_efficiency']:.3f}, {ds.attrs['fitted_settings']}, fitted on "
                      f"{int(ds.calibration.sum())} rows; band ±{100 * tol:.0f}%)")
    fig = figure(title=title, width=760, height=380, x_axis_label="reference row",
                 y_axis_label="predicted / published", x_range=list(ds.row.values),
                 tools="save,reset")
    format_axis(fig.yaxis, "fraction")
    ratio = ds.predicted.values / ds.published.values
    src = ColumnDataSource({"row": list(ds.row.values), "ratio": ratio, "layout": list(ds.layout.values),
                            "published": ds.published.values, "predicted": ds.predicted.values})
    fig.varea(x=list(ds.row.values), y1=[1 - tol] * ds.sizes["row"], y2=[1 + tol] * ds.sizes["row"],
              color="lightgray", alpha=0.5)
    fig.line(list(ds.row.values), [1.0] * ds.sizes["row"], color="black", line_dash="dashed")
    r = fig.scatter("row", "ratio", source=src, size=10, color=PALETTE[0])
    cal = ds.calibration.values
    fig.scatter(list(ds.row.values[cal]), ratio[cal], size=18, marker="star", color=PALETTE[1])
    fig.add_tools(HoverTool(renderers=[r], tooltips=[("", "@row"), ("layout", "@layout"),
                                                     ("published", "@published"),
                                                     ("predicted", "@predicted{0.000}")]))
    fig.xaxis.major_label_orientation = 0.9
    return fig


# --- panel ----------------------------------------------------------------------------------

def panel_model(model="gpt3-175b", gpus=1024, fabric="rdma-hpn7", node="lingjun.8xh800",
                restart_min=10.0, failure_scale=1.0, top=5):
    """Everything the panel shows for one choice of controls (no widgets, so it is testable):
    the top layouts (a Dataset), their breakdown data, the goodput curves, the straggler curve
    and a one-paragraph HTML summary."""
    from hpclab.workloads import llm

    plan = llm.plan(model, gpus, fabric=fabric, node=node, top=top)
    lay, cl = plan["layouts"], plan["cluster"]
    good = llm.goodput_curve(model, cl, gpus, restart=60.0 * restart_min)
    if failure_scale != 1.0:  # same curves at a scaled failure rate
        M = good.attrs["mtbf"] / failure_scale
        good["goodput"] = (("storage", "interval"),
                           np.vstack([llm.goodput(good.interval.values, d, M, good.attrs["restart"])
                                      for d in good.checkpoint_time.values]))
        tau, g = llm.goodput_at_optimum(good.checkpoint_time.values, M, good.attrs["restart"])
        good["optimal_interval"] = ("storage", np.asarray(tau))
        good["optimal_goodput"] = ("storage", np.asarray(g))
        good.attrs["mtbf"] = M
    ranks = np.unique(np.geomspace(8, max(8, gpus * 16), 12).astype(int))
    strag = llm.straggler_step_time(float(lay.step_time[0]), ranks)
    best = lay.isel(layout=0)
    summary = (f"<b>{model}</b> on {gpus} GPUs ({cl.describe()}): best layout "
               f"<code>{layout_labels(lay)[0]}</code>, step {float(best.step_time):.2f} s, "
               f"MFU {100 * float(best.mfu):.1f}%, {float(best.tokens_per_s):,.0f} tokens/s; "
               f"with stragglers at {gpus} GPUs "
               f"{float(llm.straggler_step_time(float(best.step_time), gpus).expected_step[0]):.2f} s. "
               f"MTBF {good.attrs['mtbf'] / 3600:.1f} h: effective training time "
               + ", ".join(f"{s} {100 * float(good.optimal_goodput.sel(storage=s)):.2f}%"
                           for s in good.storage.values) + ".")
    return {"layouts": lay, "breakdown": _breakdown_data(lay, "layout"), "goodput": good,
            "goodput_data": _goodput_data(good), "stragglers": strag,
            "straggler_data": {"x": strag.ranks.values.astype(float), "y": strag.expected_step.values},
            "summary": summary}


def llm_panel(model="gpt3-175b", gpus=1024, fabric="rdma-hpn7", node="lingjun.8xh800",
              gpu_options=(64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
              fabrics=("rdma-hpn7", "erdma", "tcp-vpc", "ib-ndr400")):
    """An ipywidgets panel: model, GPUs, fabric, restart time and failure-rate multiplier drive
    three bokeh figures (best layouts' breakdown, goodput vs checkpoint interval, stragglers)
    updated in place through their ``ColumnDataSource``.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``widgets`` (the controls), ``figures``, ``sources`` and ``summary``.
    """
    import ipywidgets as w

    from hpclab.workloads import llm

    gpu_options = sorted(set(gpu_options) | {int(gpus)})
    controls = {
        "model": w.Dropdown(options=llm.model_names(), value=model, description="model"),
        "gpus": w.SelectionSlider(options=gpu_options, value=int(gpus), description="GPUs",
                                  continuous_update=False),
        "fabric": w.Dropdown(options=list(dict.fromkeys([*fabrics, fabric])), value=fabric,
                             description="fabric"),
        "restart_min": w.FloatSlider(value=10.0, min=0.5, max=60.0, step=0.5, description="restart [min]",
                                     continuous_update=False),
        "failure_scale": w.FloatLogSlider(value=1.0, base=10, min=-1.5, max=1, step=0.1,
                                          description="failures x", continuous_update=False),
    }
    first = panel_model(model, gpus, fabric, node)
    bfig, bsrc = _breakdown(first["layouts"], title="Best layouts: step time breakdown")
    gfig, gsrc = _goodput(first["goodput"])
    sfig, ssrc = _straggler(first["stragglers"])
    summary = w.HTML(first["summary"])
    status = w.HTML("")

    def update(_change=None):
        v = {k: c.value for k, c in controls.items()}
        try:
            m = panel_model(v["model"], v["gpus"], v["fabric"], node, v["restart_min"], v["failure_scale"])
        except (ValueError, KeyError) as exc:  # e.g. no layout fits: say so, keep the last plots
            status.value = f"<span style='color:#d62728'>{exc}</span>"
            return
        status.value = ""
        bfig.y_range.factors = list(reversed(m["breakdown"]["label"]))
        bsrc.data = m["breakdown"]
        gsrc[0].data, gsrc[1].data = m["goodput_data"]
        ssrc.data = m["straggler_data"]
        summary.value = m["summary"]

    for c in controls.values():
        c.observe(update, names="value")
    box = w.VBox([w.HBox([controls["model"], controls["fabric"], controls["gpus"]]),
                  w.HBox([controls["restart_min"], controls["failure_scale"]]), summary, status,
                  as_widget(bfig), as_widget(gfig), as_widget(sfig)])
    box.widgets = controls
    box.figures = {"breakdown": bfig, "goodput": gfig, "stragglers": sfig}
    box.sources = {"breakdown": bsrc, "goodput": gsrc, "stragglers": ssrc}
    box.summary = summary
    box.status = status
    return box


def report_part():
    """The LLM section of ``hpclab report``: the shipped scenario ``llm_16k`` (GPT-3 175B on 16,384
    GPUs), the three fabrics, goodput on CPFS vs OSS, and the validation against published runs."""
    import pandas as pd

    from hpclab.scenario import Scenario
    from hpclab.viz._common import Part
    from hpclab.workloads import llm

    s = Scenario.example("llm_16k")
    w = s.workload
    model, gpus = llm.transformer(w["model"]), w["gpus"]
    fab = llm.compare_fabrics(model, gpus, w["global_batch"], node=w["node"])
    cl = llm.cluster(w["node"], s.fabric or "rdma-hpn7", storage=w["storage"])
    good = llm.goodput_curve(model, cl, gpus)
    val = llm.validate()
    table = pd.DataFrame({
        "fabric": fab.fabric.values, "layout": layout_labels(fab.rename(fabric="layout")),
        "step [s]": fab.step_time.values.round(2), "MFU [%]": (100 * fab.mfu.values).round(1),
        "goodput CPFS [%]": round(100 * float(good.optimal_goodput.sel(storage="cpfs")), 2),
        "goodput OSS [%]": round(100 * float(good.optimal_goodput.sel(storage="oss")), 2)})
    text = (f"{model.name} on {gpus:,} {cl.node.gpu_model} GPUs (data/scenarios/llm_16k.yaml), global "
            f"batch {fab.attrs['global_batch']} sequences; "
            f"{int(val.within_tolerance.sum())}/{val.sizes['row']} published runs within "
            f"±{100 * val.attrs['tolerance']:.0f}% after fitting {len(val.attrs['calibration_rows'].split(', '))} "
            f"numbers on as many rows.")
    return Part(figures=[breakdown_figure(fab, by="fabric", title="Best layout per fabric"),
                         goodput_figure(good), validation_figure(val)], table=table, text=text)
