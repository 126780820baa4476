"""Shared plumbing for views: offline bokeh in notebooks, figures as ipywidgets, and the one
figure style every view uses.

The style (STYLE.md, "Figures people read"):

- :data:`COLORS` gives one colour per named thing (fabric, policy, market, lifecycle state, job
  kind, scenario, pool, pipeline stage, step-time part, storage): ``tcp-vpc`` is red and ``erdma``
  blue in every figure and in the report. :func:`colors_for` colours a list of names, taking the
  map's colour where there is one and a free palette colour otherwise, so that no two series of
  one figure share a colour.
- :func:`outside_legend` moves a figure's legend out of the data (right of the frame, or below it
  in columns), clickable to hide a series.
- :func:`format_axis` sets tick formatters a person reads: SI prefixes with units (``100k``,
  ``10 µs``, ``380 GB/s``), dollars (``$1.2M``), thousands separators and integer ticks for counts,
  binary sizes (``1 MiB``), and labelled 1-2-5 ticks on log axes whose data span few decades.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

#: the base palette (Tableau 10 then its light variants); named things take fixed entries below
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ff9896", "#98df8a", "#ffbb78", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#dbdb8d", "#9edae5")
_BLUE, _RED, _GREEN, _ORANGE, _PURPLE, _BROWN, _PINK, _GREY, _OLIVE, _CYAN = PALETTE[:10]
_LBLUE, _LRED, _LGREEN, _LORANGE, _LPURPLE, _LBROWN, _LPINK, _LOLIVE, _LCYAN = PALETTE[10:]

#: one colour per named thing, the same in every figure. Names of different kinds may share a
#: colour (they never meet in one figure); within one kind every colour is different.
COLORS: dict[str, str] = {
    # fabrics
    "tcp-vpc": _RED, "erdma": _BLUE, "rdma-hpn7": _GREEN, "ib-ndr400": _PURPLE,
    "ib-hdr200": _LPURPLE, "nvlink": _ORANGE, "nvlink3": _LORANGE, "shm": _BROWN,
    # autoscaling policies
    "target-duration": _CYAN, "single-zone": _GREY, "spot-first": _ORANGE, "global": _BLUE,
    "global-spot": _GREEN, "deadline-budget": _PURPLE,
    # markets
    "on-demand": _BLUE, "spot": _ORANGE,
    # lifecycle states
    "requested": "#c7c7c7", "booting": _ORANGE, "running": _GREEN, "draining": _RED,
    "terminated": "#ffffff",
    # job kinds of the platform
    "hpc": _BLUE, "train": _RED, "infer": _GREEN, "data": _ORANGE,
    # platform scenarios and their pools
    "separate": _RED, "unified": _BLUE,
    "separate: hpc-cpu": _RED, "separate: ai-gpu": _ORANGE, "separate: ai-cpu": _LRED,
    "unified: cpu": _BLUE, "unified: gpu": _CYAN,
    # screening stages and zone scopes
    "prepare": _GREY, "filter": _OLIVE, "2d": _BLUE, "filters+2d": _CYAN, "3d": _PURPLE,
    # LLM step-time parts (the order hpclab.viz.llm draws them in)
    "compute_time": _BLUE, "tp_comm": _RED, "cp_comm": _GREEN, "ep_comm": _ORANGE,
    "bubble": _PURPLE, "pp_comm": _BROWN, "dp_comm": _PINK, "optimizer_step": _GREY,
    # LLM memory parts
    "weights": _ORANGE, "gradients": _PURPLE, "optimizer_mem": _BROWN, "activations": _PINK,
    "reserve": _GREY,
    # checkpoint storage
    "cpfs": _BLUE, "oss": _RED,
    # CAE step parts
    "total": "#000000", "compute": _BLUE, "halo exchange": _ORANGE, "allreduce": _PURPLE,
    # collective algorithms
    "ring": _BLUE, "recursive_doubling": _ORANGE, "rabenseifner": _GREEN,
    "double_binary_tree": _PURPLE, "hierarchical": _BROWN, "bruck": _CYAN, "pairwise": _PINK,
    "recursive_halving": _OLIVE, "binomial": _LBLUE, "scatter_allgather": _LRED,
    "auto (fastest)": "#000000",
}

# Never reach a CDN: bokeh's JS and CSS go inline into the notebook or the HTML file.
os.environ.setdefault("BOKEH_RESOURCES", "inline")


def color(name) -> str | None:
    """The fixed colour of a named thing (a fabric, policy, market, state, job kind...), or None.

    A policy name with a suffix (``global-spot+hysteresis``) takes its policy's colour.
    """
    name = str(name)
    if name in COLORS:
        return COLORS[name]
    base = name.split("+", 1)[0].strip()
    return COLORS.get(base)


def colors_for(names) -> list[str]:
    """A colour for each name, all different: the fixed colour of :data:`COLORS` where a name has
    one (and it is not taken already in this list), else the first free colour of :data:`PALETTE`."""
    names = [str(n) for n in names]
    out: list[str | None] = [None] * len(names)
    used = set()
    for i, n in enumerate(names):
        c = color(n)
        if c is not None and c not in used:
            out[i] = c
            used.add(c)
    free = (c for c in PALETTE if c not in used)
    for i in range(len(names)):
        if out[i] is None:
            c = next(free, None) or PALETTE[i % len(PALETTE)]
            used.add(c)
            out[i] = c
    return out


def setup_notebook() -> None:
    """Load bokeh into the notebook with inline resources (works with no network)."""
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)


def outside_legend(fig, where: str = "right", ncols: int | None = None, font_size: str = "9pt"):
    """Move the figure's legend(s) out of the data area: ``"right"`` of the frame (one column) or
    ``"below"`` it (``ncols`` columns, default 3), clickable to hide a series. Returns ``fig``."""
    from bokeh.models import Legend

    if where not in ("right", "below", "left", "above"):
        raise ValueError(f"where must be right, below, left or above; got {where!r}")
    legends = [r for r in fig.center if isinstance(r, Legend)]
    if not legends:
        return fig
    fig.center = [r for r in fig.center if not isinstance(r, Legend)]
    for lg in legends:
        lg.click_policy = "hide"
        lg.label_text_font_size = font_size
        lg.spacing = 1
        lg.padding = 4
        lg.glyph_width = 18
        if where in ("below", "above"):
            lg.orientation = "horizontal"
            lg.ncols = ncols or min(3, max(1, len(lg.items)))
            lg.location = "top_left"
        else:
            lg.location = "top_left"
        fig.add_layout(lg, where)
    return fig


def legend(fig, location: str = "right"):
    """Style a figure's legend the hpclab way: outside the data (``"right"`` or ``"below"``),
    small, clickable to hide a series. (Kept for callers; see :func:`outside_legend`.)"""
    where = location if location in ("right", "below", "left", "above") else "right"
    return outside_legend(fig, where)


# --- tick formatters ---------------------------------------------------------------------------

_SI_JS = """
const units = %s;
const v = tick;
if (v === 0) { return '0' + (unit ? ' ' + unit : ''); }
const a = Math.abs(v);
const prefixes = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k'], [1, ''], [1e-3, 'm'],
                  [1e-6, '\u00b5'], [1e-9, 'n']];
let p = prefixes[prefixes.length - 1];
for (const q of prefixes) { if (a >= q[0] * 0.9999999) { p = q; break; } }
if (!units && p[1] !== '' && p[0] < 1) { p = [1, '']; }
if (unit === 's' && p[0] > 1) { p = [1, '']; }
let m = v / p[0];
let s = Math.abs(m) >= 100 ? m.toFixed(0) : Math.abs(m) >= 10 ? m.toFixed(1) : m.toFixed(2);
s = s.indexOf('.') >= 0 ? s.replace(/0+$/, '').replace(/\\.$/, '') : s;
if (p[1] === '' && Math.abs(m) >= 1000) { s = Math.round(m).toLocaleString('en-US'); }
return s + (unit ? ' ' + p[1] + unit : p[1]);
"""

_USD_JS = """
const v = tick;
const a = Math.abs(v);
const sign = v < 0 ? '-' : '';
const prefixes = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']];
for (const q of prefixes) {
  if (a >= q[0] * 0.9999999) {
    let s = (a / q[0]).toFixed(a / q[0] >= 100 ? 0 : a / q[0] >= 10 ? 1 : 2);
    if (s.indexOf('.') >= 0) { s = s.replace(/0+$/, '').replace(/\\.$/, ''); }
    return sign + '$' + s + q[1];
  }
}
if (a >= 1) { return sign + '$' + a.toFixed(2).replace(/\\.00$/, ''); }
if (a >= 0.1) { return sign + '$' + a.toFixed(2); }
if (a === 0) { return '$0'; }
return sign + '$' + String(Number(a.toPrecision(2)));
"""

_BYTES_JS = """
const v = tick;
const units = [[2 ** 40, 'TiB'], [2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
for (const q of units) {
  if (v >= q[0]) {
    const m = v / q[0];
    return (Number.isInteger(m) ? m.toFixed(0) : String(Number(m.toPrecision(3)))) + ' ' + q[1];
  }
}
return v.toFixed(0) + ' B';
"""


def si_formatter(unit: str = ""):
    """Ticks with SI prefixes: ``100k`` cores; with a unit, ``10 µs``, ``380 GB/s``, ``2 ks``.

    With no unit, sub-unit values keep decimals (``0.5``) rather than a milli prefix."""
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(args={"unit": unit}, code=_SI_JS % ("true" if unit else "false"))


def usd_formatter():
    """Ticks in dollars: ``$0.02``, ``$12``, ``$120k``, ``$1.2M``."""
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(code=_USD_JS)


def bytes_formatter():
    """Ticks in binary sizes: ``8 B``, ``1 KiB``, ``1 MiB``, ``8 GiB``."""
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(code=_BYTES_JS)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions for a log axis from ``lo`` to ``hi``: 1-2-5 per decade when the data span
    at most three decades, every decade up to 12 decades, else every other decade."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= lo:
        return []
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    span = k1 - k0
    if span <= 3:
        ticks = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in (1, 2, 5)]
    else:
        step = 1 if span <= 12 else 2
        ticks = [10.0 ** k for k in range(k0, k1 + 1, step)]
    return [t for t in ticks if lo / 1.0001 <= t <= hi * 1.0001] or [10.0 ** k0, 10.0 ** k1]


_KINDS = ("count", "si", "usd", "seconds", "bytes", "percent", "fraction", "hours", "plain")


def format_axis(axis, kind: str = "si", unit: str = "", lo: float | None = None,
                hi: float | None = None):
    """Set a readable tick formatter (and ticker) on one axis or a splat of axes (``fig.xaxis``).

    ``kind``: ``count`` (integers with thousands separators, no half ticks), ``si`` (SI prefix and
    ``unit``), ``usd`` (dollars), ``seconds`` (SI seconds: ``10 µs``, ``2 ms``), ``bytes`` (binary
    sizes; on a log axis ticks at powers of 1024), ``percent`` (``0.0`` with a % sign),
    ``fraction`` (``0.00``), ``hours`` (``0,0.[0]``), ``plain`` (``0,0.[00]``). On a log axis,
    pass the data's ``lo`` and ``hi`` to get labelled 1-2-5 or decade ticks (:func:`log_ticks`).
    """
    from bokeh.models import BasicTicker, FixedTicker, LogAxis, NumeralTickFormatter

    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}; got {kind!r}")
    axes = list(axis) if isinstance(axis, (list, tuple)) or hasattr(axis, "__iter__") else [axis]
    for ax in axes:
        log = isinstance(ax, LogAxis)
        if kind == "count":
            ax.formatter = si_formatter(unit) if log else NumeralTickFormatter(format="0,0")
            if not log:
                ax.ticker = BasicTicker(min_interval=1, desired_num_ticks=6)
        elif kind == "si":
            ax.formatter = si_formatter(unit)
        elif kind == "usd":
            ax.formatter = usd_formatter()
        elif kind == "seconds":
            ax.formatter = si_formatter("s")
        elif kind == "bytes":
            ax.formatter = bytes_formatter()
        elif kind == "percent":
            ax.formatter = NumeralTickFormatter(format="0.[0]") if not unit else si_formatter(unit)
        elif kind == "fraction":
            ax.formatter = NumeralTickFormatter(format="0.00")
        elif kind == "hours":
            ax.formatter = NumeralTickFormatter(format="0,0.[0]")
        else:
            ax.formatter = NumeralTickFormatter(format="0,0.[00]")
        if log and lo is not None and hi is not None:
            if kind == "bytes":
                k0, k1 = math.floor(math.log2(max(lo, 1))), math.ceil(math.log2(max(hi, 2)))
                ticks = [2.0 ** k for k in range(k0, k1 + 1) if k % 5 == 0 or k == k0 or
                         (k1 - k0 <= 12 and k % 2 == 0)]
            else:
                ticks = log_ticks(lo, hi)
            if ticks:
                ax.ticker = FixedTicker(ticks=ticks)
    return axis


def as_widget(fig):
    """Wrap a bokeh figure as an ipywidget (``jupyter_bokeh.BokehModel``) so that changes to its
    data sources show up in place in JupyterLab, with no redraw."""
    from jupyter_bokeh import BokehModel

    return BokehModel(fig)


@dataclass
class Part:
    """What a workflow's report builder returns.

    Parameters
    ----------
    figures : list
        Bokeh figures (or layouts) made by :mod:`hpclab.viz`.
    table : pandas.DataFrame, optional
        Key numbers of the run, shown under the plots.
    text : str
        One or two sentences: what was run, at what size, on which clock.
    """

    figures: list = field(default_factory=list)
    table: object = None
    text: str = ""


# --- tables for people ---------------------------------------------------------------------------

def _number(v, digits: int = 3) -> str:
    """``28379.01796 -> '28,379'``, ``0.005 -> '0.005'``, ``2.417e5 -> '241,700'``; NaN -> '–'."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "–" if math.isnan(v) else ("∞" if v > 0 else "-∞")
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10 ** (digits - 1) or float(v).is_integer():
        return f"{v:,.0f}"
    if a < 1e-3:
        return f"{v:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(a)))
    text = f"{v:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _usd(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 100:
        return f"${v:,.0f}"
    if a >= 0.01 or a == 0:
        return f"${v:,.2f}"
    return f"${v:.2g}"


def readable(df, digits: int = 3, yes_no=(), usd=None, index: bool = True):
    """A table as a person reads it: a pandas ``Styler`` of ``df`` whose numbers have thousands
    separators and ``digits`` significant figures (``28,379``, ``5.00e-03`` becomes ``0.005``),
    money in dollars (columns whose name says ``USD`` or ``cost``: ``$241,700``, ``$0.0042``),
    booleans (and the columns named in ``yes_no``) as yes/no. Units belong in the column names
    (``makespan [h]``); the data are not changed, only how they are shown.
    """
    import pandas as pd

    if isinstance(df, pd.Series):
        df = df.to_frame()
    fmt = {}
    for c in df.columns:
        s = df[c]
        name = str(c).lower()
        is_usd = usd(c) if callable(usd) else ("usd" in name or "cost" in name or "$" in name)
        if c in yes_no or pd.api.types.is_bool_dtype(s):
            fmt[c] = lambda v: "yes" if bool(v) else "no"
        elif pd.api.types.is_numeric_dtype(s):
            fmt[c] = _usd if is_usd else (lambda v, d=digits: _number(v, d))
    styler = df.style.format(fmt)
    if pd.api.types.is_numeric_dtype(df.index) and not isinstance(df.index, pd.RangeIndex):
        styler = styler.format_index(lambda v, d=digits: _number(v, d))
    if not index:
        styler = styler.hide(axis="index")
    return styler
