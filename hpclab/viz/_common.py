"""Shared plumbing for views: offline bokeh in notebooks, figures as ipywidgets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

# Never reach a CDN: bokeh's JS and CSS go inline into the notebook or the HTML file.
os.environ.setdefault("BOKEH_RESOURCES", "inline")


def setup_notebook() -> None:
    """Load bokeh into the notebook with inline resources (works with no network)."""
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)


def legend(fig, location: str = "top_left"):
    """Style a figure's legend the hpclab way: small, clickable to hide a series."""
    fig.legend.location = location
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "9pt"
    return fig


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
